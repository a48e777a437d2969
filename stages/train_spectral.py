"""Stage train_spectral (and sweep_spectral with --lr): one run of saln or one of its graph
variants, on the per-image features of stage features."""

import _common

from saln.errors import one_line_errors
from saln.features import load_features
from saln.launch import run
from saln.selection import spectral


def attach(inputs, selector, dataset: str) -> None:
    inputs.features = load_features(f"data/features/{dataset}")


@one_line_errors
def main() -> None:
    run(_common.train_args(__doc__), spectral, blocks=("saln",), attach=attach)


if __name__ == "__main__":
    main()
