"""Stage train_uncertainty (and sweep_uncertainty with --lr): one run of maxent or infodensity
(which also reads the features of stage features)."""

import _common

from saln.errors import one_line_errors
from saln.features import load_features
from saln.launch import run
from saln.selection import uncertainty


def attach(inputs, selector, dataset: str) -> None:
    if selector.needs_features:
        inputs.features = load_features(f"data/features/{dataset}")


@one_line_errors
def main() -> None:
    run(_common.train_args(__doc__), uncertainty, blocks=("uncertainty",), attach=attach)


if __name__ == "__main__":
    main()
