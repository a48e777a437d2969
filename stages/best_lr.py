"""Stage best_lr: per method, the learning rate (train.lr or one of sweep.lrs) with the best
mean validation accuracy, written to results/lr/<dataset>/best.json for the report."""

import _common
import json
from pathlib import Path

from saln.config import listed_methods, load_params, seeds
from saln.errors import one_line_errors
from saln.sweep import choose_best, sweep_lrs


@one_line_errors
def main() -> None:
    args = _common.dataset_args(__doc__)
    params = load_params(args.params)
    summary = choose_best(args.dataset, listed_methods(params), seeds(params), params["train"]["lr"],
                          sweep_lrs(params))
    out = Path(f"results/lr/{args.dataset}/best.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    picks = ", ".join(f"{m} {v['best_lr']}" for m, v in summary["methods"].items())
    print(f"{args.dataset}: best lr per method (of {summary['lrs']}): {picks}")


if __name__ == "__main__":
    main()
