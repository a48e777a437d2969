"""Collect per-run metrics and aggregate them over seeds (mean +- std, n)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

TRAIN_ROOT = Path("results/train")


def run_dir(root: Path, dataset: str, method: str, seed: int) -> Path:
    return Path(root) / dataset / method / f"seed{seed}"


def load_run(d: str | Path, dataset: str, method: str, seed: int | None = None) -> dict | None:
    """A finished run: its metrics.json plus dataset, method, seed and dir; None when it has none."""
    d = Path(d)
    if not (d / "metrics.json").is_file():
        return None
    metrics = json.loads((d / "metrics.json").read_text())
    seed = seed if seed is not None else metrics.get("seed")
    return {**metrics, "dataset": dataset, "method": method, "seed": seed, "dir": str(d)}


def collect_runs(datasets, methods, seeds, root: Path = TRAIN_ROOT) -> list[dict]:
    """One dict per finished run of the train matrix."""
    found = (load_run(run_dir(root, dataset, method, seed), dataset, method, seed)
             for dataset in datasets for method in methods for seed in seeds)
    return [run for run in found if run is not None]


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
