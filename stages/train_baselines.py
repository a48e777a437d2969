"""Stage train_baselines (and sweep_baselines with --lr): one run of standard or random, which read
nothing but the data."""

import _common

from saln.errors import one_line_errors
from saln.launch import run
from saln.selection import baselines


@one_line_errors
def main() -> None:
    run(_common.train_args(__doc__), baselines)


if __name__ == "__main__":
    main()
