"""Each method's best learning rate over ``train.lrs``, chosen on validation.

One constant rate shared by all methods can decide a comparison by itself: a selector
back-propagates a fifth of a batch per step. So every (method, seed) trains at each rate of
``train.lrs`` and stage best_lr picks, per method, the rate with the highest mean final validation
accuracy over seeds. A rate whose loss blew up is recorded as diverged (``diverged.json``) and never
picked; a method all of whose rates diverged stops the pipeline with one line.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from saln.config import number, require
from saln.errors import SalnError
from saln.files import write_json
from saln.layout import DIVERGED_FILE, METRICS_FILE, TRAIN_ROOT, rate_dir, run_dir

RULE = "highest mean final validation accuracy over seeds; a diverged rate is never picked"


def learning_rates(params: dict) -> list[float]:
    """``train.lrs``: the distinct positive rates every method trains at (best picked on validation)."""
    lrs = require(require(params, "train", "params"), "lrs", "train")
    if not isinstance(lrs, list) or not lrs:
        raise SalnError(f"train.lrs must be a non-empty list of learning rates, e.g. [0.003, 0.01, 0.03], "
                        f"got {lrs!r}")
    for i in range(len(lrs)):
        number(dict(enumerate(lrs)), i, "train.lrs", lo=0, lo_open=True)
    if len(set(lrs)) != len(lrs):
        raise SalnError(f"train.lrs lists a rate more than once: {lrs}")
    return lrs


def read_outcome(directory: Path) -> dict | None:
    """A rate's metrics, {"diverged": ...} when it diverged, or None when it has not run."""
    if (directory / METRICS_FILE).is_file():
        return json.loads((directory / METRICS_FILE).read_text())
    if (directory / DIVERGED_FILE).is_file():
        return {"diverged": json.loads((directory / DIVERGED_FILE).read_text())}
    return None


def rate_diverged(outcomes: list[dict | None]) -> bool:
    """Any of one rate's outcomes (``read_outcome``, one per seed) is a divergence: the rate is never read."""
    return any(outcome is not None and "diverged" in outcome for outcome in outcomes)


def record_divergence(directory: Path, lr: float, reason: str) -> None:
    """diverged.json alone in the rate's folder: the curves and metrics of the run that blew up are
    removed, so nothing the report or ``dvc metrics show`` reads is left of it."""
    directory = Path(directory)
    if directory.is_dir():
        for leftover in directory.iterdir():
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
    write_json(directory / DIVERGED_FILE, {"lr": lr, "reason": reason})


def choose_best(dataset: str, methods: list[str], seeds: list[int], lrs: list[float],
                root: Path = TRAIN_ROOT) -> dict:
    """Per method: mean final val accuracy at each rate, the diverged rates, and the best rate.

    A rate counts only when every seed finished; equal means go to the smaller rate.
    """
    summary = {"dataset": dataset, "lrs": sorted(lrs), "rule": RULE, "methods": {}}
    for method in methods:
        val, diverged, runs = {}, [], {}
        for lr in summary["lrs"]:
            dirs = [rate_dir(run_dir(root, dataset, method, s), lr) for s in seeds]
            outcomes = [read_outcome(d) for d in dirs]
            runs[str(lr)] = [str(d) for d in dirs]
            if rate_diverged(outcomes):
                diverged.append(str(lr))
            val[str(lr)] = (sum(o["val_acc"] for o in outcomes) / len(outcomes)
                            if all(o is not None and "diverged" not in o for o in outcomes) else None)
        finite = [(v, -float(lr)) for lr, v in val.items() if v is not None and math.isfinite(v)]
        best = -max(finite)[1] if finite else None
        summary["methods"][method] = {"best_lr": best, "val_acc": val, "diverged": diverged, "runs": runs,
                                      "at_edge": best is not None and len(lrs) > 1
                                      and best in (min(lrs), max(lrs))}
    return summary


def check_every_method_trained(summary: dict) -> None:
    """One line naming a method none of whose rates finished without diverging."""
    for method, entry in summary["methods"].items():
        if entry["best_lr"] is not None:
            continue
        if len(entry["diverged"]) == len(summary["lrs"]):
            raise SalnError(f"{summary['dataset']}: every learning rate of {method} diverged "
                            f"({', '.join(entry['diverged'])}): add lower rates to train.lrs")
        raise SalnError(f"{summary['dataset']}: {method} has no rate at which every seed finished "
                        f"(diverged: {', '.join(entry['diverged']) or 'none'}): rerun its training stage")
