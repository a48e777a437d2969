"""Stage train_prune: one (dataset, method, seed) of prune_easy, prune_hard or prune_auto at every
rate of train.lrs: standard training on the subset of the training split kept by stage prune."""

import _common  # noqa: F401

from saln.errors import one_line_errors
from saln.launch import run, train_parser
from saln.prune import load_kept
from saln.selection import prune


def attach(inputs, selector, args) -> None:
    inputs.train_subset = load_kept(args.prune, selector.train_subset, inputs.prepared.splits["train"])


@one_line_errors
def main() -> None:
    run(train_parser(__doc__, "prune").parse_args(), prune, attach=attach)


if __name__ == "__main__":
    main()
