"""The learning-rate sweep: every method also at its own best learning rate.

A selector back-propagates a fifth of a batch per step, so one learning rate shared by all
methods can decide a comparison by itself. The sweep trains each (method, seed) at the extra
rates ``sweep.lrs`` besides the common ``train.lr`` (whose runs the train matrix already has), and
stage ``best_lr`` picks, per method, the rate with the highest mean final validation accuracy.
A rate whose loss became non-finite is recorded as diverged (``diverged.json``) and never picked.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from saln.config import number, require
from saln.errors import SalnError

TRAIN_ROOT = Path("results/train")
DIVERGED_FILE, METRICS_FILE = "diverged.json", "metrics.json"


def sweep_lrs(params: dict) -> list[float]:
    """``sweep.lrs``: distinct positive rates other than ``train.lr`` ([] turns the sweep off)."""
    lrs = require(require(params, "sweep", "params"), "lrs", "sweep")
    if not isinstance(lrs, list):
        raise SalnError(f"sweep.lrs must be a list of learning rates ([] for none), got {lrs!r}")
    for i in range(len(lrs)):
        number(dict(enumerate(lrs)), i, "sweep.lrs", lo=0, lo_open=True)
    if len(set(lrs)) != len(lrs):
        raise SalnError(f"sweep.lrs lists a rate more than once: {lrs}")
    common = require(params["train"], "lr", "train")
    if common in lrs:
        raise SalnError(f"sweep.lrs repeats train.lr={common}, whose runs the train matrix already has: "
                        "list only the other rates")
    return lrs


def run_dir(dataset: str, method: str, seed: int, lr: float | None = None,
            root: Path = TRAIN_ROOT) -> Path:
    """A run's folder: the train matrix's (lr None, at train.lr) or a sweep run's (as dvc.yaml names it)."""
    base = Path(root) / dataset / method
    return (base if lr is None else base / f"lr{lr}") / f"seed{seed}"


def read_outcome(directory: Path) -> dict | None:
    """A run's metrics, {"diverged": ...} when it diverged, or None when it has not run."""
    if (directory / METRICS_FILE).is_file():
        return json.loads((directory / METRICS_FILE).read_text())
    if (directory / DIVERGED_FILE).is_file():
        return {"diverged": json.loads((directory / DIVERGED_FILE).read_text())}
    return None


def choose_best(dataset: str, methods: list[str], seeds: list[int], common_lr: float,
                lrs: list[float], root: Path = TRAIN_ROOT) -> dict:
    """Per method: mean final val accuracy at each rate, the diverged rates, and the best rate.

    A rate counts only when every seed finished; equal means go to the smaller rate.
    """
    summary = {"dataset": dataset, "common_lr": common_lr, "lrs": sorted([common_lr, *lrs]),
               "rule": "highest mean final validation accuracy over seeds; a diverged rate is never picked",
               "methods": {}}
    for method in methods:
        val, diverged, runs = {}, [], {}
        for lr in summary["lrs"]:
            dirs = [run_dir(dataset, method, s, None if lr == common_lr else lr, root) for s in seeds]
            outcomes = [read_outcome(d) for d in dirs]
            runs[str(lr)] = [str(d) for d in dirs]
            if any(o is not None and "diverged" in o for o in outcomes):
                diverged.append(str(lr))
                val[str(lr)] = None
            elif all(o is not None for o in outcomes):
                val[str(lr)] = sum(o["val_acc"] for o in outcomes) / len(outcomes)
            else:
                val[str(lr)] = None
        finite = [(v, -float(lr)) for lr, v in val.items() if v is not None and math.isfinite(v)]
        best = -max(finite)[1] if finite else None
        summary["methods"][method] = {"best_lr": best, "val_acc": val, "diverged": diverged, "runs": runs}
    return summary
