"""Stage train_jest: one (dataset, method, seed) of jest, jest_joint or rholoss at every rate of
train.lrs, scored against the reference model of stage reference."""

import _common  # noqa: F401

from saln.errors import one_line_errors
from saln.launch import run, train_parser
from saln.reference import load_reference
from saln.selection import jest


def attach(inputs, selector, args) -> None:
    inputs.reference_losses, inputs.reference_embeddings = load_reference(
        args.reference, selector.needs_reference_embeddings)


@one_line_errors
def main() -> None:
    run(train_parser(__doc__, "reference").parse_args(), jest, attach=attach)


if __name__ == "__main__":
    main()
