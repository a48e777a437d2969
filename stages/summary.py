"""Stage summary: one metrics file per dataset (per method and rate: mean, std and n over seeds of
accuracy, seconds, all-in seconds and images back-propagated; each method's best rate) and its
validation curves overlaid per method at each method's best rate (one CSV per x-axis under --plots,
read by dvc.yaml's top-level plots)."""

import _common
import json
from pathlib import Path

from saln.config import listed_methods, load_params, seeds
from saln.costs import read_one_offs
from saln.errors import SalnError, one_line_errors
from saln.files import write_json
from saln.rates import learning_rates
from saln.schedule import budget_fractions
from saln.summary import method_curves, summarise, write_curves


@one_line_errors
def main() -> None:
    args = _common.stage_args(__doc__, "train", "best_lr", "probe", "reference", "out", "plots")
    params = load_params(args.params)
    methods, run_seeds, lrs = listed_methods(params), seeds(params), learning_rates(params)
    best_file = Path(args.best_lr)
    if not best_file.is_file():
        raise SalnError(f"{best_file} not found: run stage best_lr first")
    one_off = read_one_offs(args.probe, args.reference)
    summary = summarise(args.dataset, methods, run_seeds, lrs, json.loads(best_file.read_text()),
                        Path(args.train), one_off, budget_fractions(params["train"]))
    curves = {m: method_curves(Path(args.train), args.dataset, m, run_seeds, summary[m]["best_lr"])
              for m in methods}
    # everything is computed before anything is written: a failed stage leaves no fresh-looking output
    write_curves(Path(args.plots), args.dataset, curves)
    write_json(args.out, summary)
    picks = ", ".join(f"{m} {summary[m]['best']['test_acc']['mean']:.3f} at lr {summary[m]['best_lr']:g}"
                      for m in methods)
    print(f"{args.dataset}: mean test accuracy at each method's best rate: {picks}")


if __name__ == "__main__":
    main()
