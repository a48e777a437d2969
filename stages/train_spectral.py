"""Stage train_spectral (and sweep_spectral with --lr): one run of saln or one of its graph
variants, on the per-image features of stage features."""

import _common

from saln.errors import one_line_errors
from saln.launch import run
from saln.selection import spectral


@one_line_errors
def main() -> None:
    run(_common.train_args(__doc__), spectral, blocks=("saln",))


if __name__ == "__main__":
    main()
