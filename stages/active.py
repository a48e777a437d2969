"""Stage active: simulated pool-based active learning (MaxEnt, Information Density; full vs SEALS pools)."""

import _common
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from saln.active import active_config, check_budget, run_active_learning, split_strategy
from saln.config import load_params
from saln.data import load_prepared
from saln.errors import one_line_errors
from saln.selection.uncertainty import uncertainty_options


@one_line_errors
def main() -> None:
    args = _common.stage_args(__doc__, "prepared", "features", "out")
    params = load_params(args.params)
    cfg, beta = active_config(params), uncertainty_options(params)["beta"]
    prepared = load_prepared(args.prepared)
    train, test = prepared.splits["train"], prepared.splits["test"]
    check_budget(len(train), cfg.seed_size, cfg.per_round, cfg.rounds, cfg.k_neighbours)
    features = np.load(args.features).astype(np.float64)
    labels = prepared.labels

    curves = {}
    for name in cfg.strategies:
        score, pool = split_strategy(name)
        run = run_active_learning(features[train], labels[train], features[test], labels[test],
                                  score, pool, cfg.seed_size, cfg.per_round, cfg.rounds,
                                  cfg.k_neighbours, beta, cfg.seed)
        curves[name] = {
            "score": score, "pool": pool,
            "labels": run["labels"],  # labeled examples when test_acc was measured
            "test_acc": run["test_acc"],
            "selection_seconds": run["selection_seconds"],  # per round: pool + scoring, not the fit
            "candidates": run["candidates"],  # candidate-pool size per round
            "index_seconds": run["index_seconds"],  # one-off nearest-neighbour index (seals only)
            "labeled_indices": [int(train[i]) for i in run["labeled"]],  # dataset indices, in order
        }
        print(f"{args.dataset} {name}: test_acc {run['test_acc'][0]:.3f} -> {run['test_acc'][-1]:.3f} "
              f"at {run['labels'][-1]} labels; selection {np.mean(run['selection_seconds']) * 1e3:.1f} "
              f"ms/round over {np.mean(run['candidates']):.0f} candidates")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "dataset": args.dataset,
        "model": "linear probe: logistic regression on standardized features, refit each round on the "
                 "labeled training examples; test_acc on the test split",
        "params": {**asdict(cfg), "strategies": list(cfg.strategies), "beta": beta},
        "train_pool": int(len(train)), "test_images": int(len(test)),
        "strategies": curves,
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
