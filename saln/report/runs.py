"""Collect per-run metrics and aggregate them over seeds (mean +- std, n)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from saln.layout import LR_ROOT, METRICS_FILE, TRAIN_ROOT, rate_dir, run_dir

def load_run(d: str | Path, dataset: str, method: str, seed: int | None = None) -> dict | None:
    """A finished run: its metrics.json plus dataset, method, seed and dir; None when it has none."""
    d = Path(d)
    if not (d / METRICS_FILE).is_file():
        return None
    metrics = json.loads((d / METRICS_FILE).read_text())
    seed = seed if seed is not None else metrics.get("seed")
    return {**metrics, "dataset": dataset, "method": method, "seed": seed, "dir": str(d)}


def best_rates(lr_root: str | Path, dataset: str) -> dict[str, float | None]:
    """method -> its best rate on validation (stage best_lr's best.json); {} before that stage ran."""
    path = Path(lr_root) / dataset / "best.json"
    if not path.is_file():
        return {}
    return {m: e.get("best_lr") for m, e in json.loads(path.read_text())["methods"].items()}


def collect_runs(datasets, methods, seeds, root: Path = TRAIN_ROOT, lr_root: Path = LR_ROOT) -> list[dict]:
    """One dict per finished run of each method at its best rate (the report's tables read these)."""
    found = []
    for dataset in datasets:
        best = best_rates(lr_root, dataset)
        found += [load_run(rate_dir(run_dir(root, dataset, method, seed), best[method]), dataset, method, seed)
                  for method in methods if best.get(method) is not None for seed in seeds]
    return [run for run in found if run is not None]


def collect_rate_runs(dataset: str, methods, seeds, lrs, root: Path = TRAIN_ROOT,
                      fraction: float = 1.0) -> dict[str, dict]:
    """method -> rate -> seed -> finished run, over every rate of ``lrs``, at one budget fraction."""
    out: dict[str, dict] = {}
    for method in methods:
        for lr in lrs:
            for seed in seeds:
                run = load_run(rate_dir(run_dir(root, dataset, method, seed), lr, fraction), dataset, method, seed)
                if run is not None:
                    out.setdefault(method, {}).setdefault(lr, {})[seed] = run
    return out


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float  # sample standard deviation (ddof=1); 0 for a single run
    n: int

    def format(self, digits: int = 4, scale: float = 1.0) -> str:
        if self.n == 0:
            return "not run"
        return f"{self.mean * scale:.{digits}f} ± {self.std * scale:.{digits}f} (n={self.n})"


def stat(values) -> Stat:
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return Stat(math.nan, math.nan, 0)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return Stat(mean, math.sqrt(var), n)


def aggregate(runs: list[dict], key: str) -> dict[tuple[str, str], Stat]:
    """(dataset, method) -> Stat of ``key`` over the runs' seeds."""
    groups: dict[tuple[str, str], list[float]] = {}
    for run in runs:
        if isinstance(run.get(key), (int, float)):   # a run that did not record ``key`` is left out
            groups.setdefault((run["dataset"], run["method"]), []).append(run[key])
    return {group: stat(values) for group, values in groups.items()}
