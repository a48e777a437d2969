"""Stage train_uncertainty: one (dataset, method, seed) of maxent or infodensity at every rate of
train.lrs (infodensity also reads the features of stage features)."""

import _common  # noqa: F401

from saln.errors import one_line_errors
from saln.launch import run, train_parser
from saln.selection import uncertainty


@one_line_errors
def main() -> None:
    run(train_parser(__doc__, "features").parse_args(), uncertainty)


if __name__ == "__main__":
    main()
