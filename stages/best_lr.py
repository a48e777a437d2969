"""Stage best_lr: per method, the rate of train.lrs with the best mean validation accuracy. Fails
with one line when every rate of a method diverged."""

import _common
import json
from pathlib import Path

from saln.config import listed_methods, load_params, seeds
from saln.errors import one_line_errors
from saln.rates import check_every_method_trained, choose_best, learning_rates


@one_line_errors
def main() -> None:
    args = _common.stage_args(__doc__, "train", "out")
    params = load_params(args.params)
    summary = choose_best(args.dataset, listed_methods(params), seeds(params), learning_rates(params),
                          Path(args.train))
    check_every_method_trained(summary)  # before writing: a failed stage leaves no fresh-looking output
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    edge = [m for m, v in summary["methods"].items() if v["at_edge"]]
    picks = ", ".join(f"{m} {v['best_lr']}" for m, v in summary["methods"].items())
    print(f"{args.dataset}: best lr per method (of {summary['lrs']}): {picks}"
          + (f"; at the grid's edge (widen train.lrs): {', '.join(edge)}" if edge else ""))


if __name__ == "__main__":
    main()
