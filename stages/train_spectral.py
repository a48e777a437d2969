"""Stage train_spectral: one (dataset, method, seed) of saln or one of its graph variants at every
rate of train.lrs, on the per-image features of stage features."""

import _common  # noqa: F401

from saln.errors import one_line_errors
from saln.launch import run, train_parser
from saln.selection import spectral


@one_line_errors
def main() -> None:
    run(train_parser(__doc__, "features").parse_args(), spectral)


if __name__ == "__main__":
    main()
