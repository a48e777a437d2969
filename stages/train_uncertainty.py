"""Stage train_uncertainty (and sweep_uncertainty with --lr): one run of maxent or infodensity
(which also reads the features of stage features)."""

import _common

from saln.errors import one_line_errors
from saln.launch import run
from saln.selection import uncertainty


@one_line_errors
def main() -> None:
    run(_common.train_args(__doc__), uncertainty, blocks=("uncertainty",))


if __name__ == "__main__":
    main()
