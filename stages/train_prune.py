"""Stage train_prune (and sweep_prune with --lr): one run of prune_easy, prune_hard or prune_auto,
standard training on the subset of the training split kept by stage prune."""

import _common

from saln.errors import one_line_errors
from saln.launch import run
from saln.prune import load_kept
from saln.selection import prune


def attach(inputs, selector, dataset: str) -> None:
    inputs.train_subset = load_kept(f"data/prune/{dataset}", selector.train_subset,
                                    inputs.prepared.splits["train"])


@one_line_errors
def main() -> None:
    run(_common.train_args(__doc__), prune, attach=attach)


if __name__ == "__main__":
    main()
