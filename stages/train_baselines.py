"""Stage train_baselines: one (dataset, method, seed) of standard or random at every rate of
train.lrs; they read nothing but the data."""

import _common  # noqa: F401

from saln.errors import one_line_errors
from saln.launch import run, train_parser
from saln.selection import baselines


@one_line_errors
def main() -> None:
    run(train_parser(__doc__).parse_args(), baselines)


if __name__ == "__main__":
    main()
