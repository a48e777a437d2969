"""Stage train_jest (and sweep_jest with --lr): one run of jest, jest_joint or rholoss, scored
against the reference model of stage reference."""

import _common

from saln.errors import one_line_errors
from saln.launch import run
from saln.reference import load_reference
from saln.selection import jest


def attach(inputs, selector, dataset: str) -> None:
    inputs.reference_losses, inputs.reference_embeddings = load_reference(
        f"data/reference/{dataset}", selector.needs_reference_embeddings)


@one_line_errors
def main() -> None:
    run(_common.train_args(__doc__), jest, blocks=("jest",), attach=attach)


if __name__ == "__main__":
    main()
