"""Per-epoch histories from each run's dvclive TSVs, averaged over seeds."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CURVES = ("train_loss", "train_acc", "val_loss", "val_acc", "train_seconds", "images_backprop")


def read_history(run_dir: str | Path) -> dict[str, np.ndarray]:
    """name -> values ordered by step, for each dvclive TSV the run wrote."""
    history = {}
    for name in CURVES:
        path = Path(run_dir) / "dvclive" / "plots" / "metrics" / f"{name}.tsv"
        if path.is_file():
            with path.open() as fh:
                rows = sorted((int(r["step"]), float(r[name])) for r in csv.DictReader(fh, delimiter="\t"))
            history[name] = np.array([v for _, v in rows])
    return history


@dataclass(frozen=True)
class Curve:
    mean: np.ndarray
    std: np.ndarray   # sample std over seeds (ddof=1); zeros for a single seed
    n: int

    @property
    def epochs(self) -> np.ndarray:
        return np.arange(1, len(self.mean) + 1)


def mean_curves(runs: list[dict], dataset: str, method: str) -> dict[str, Curve]:
    """name -> Curve over the seeds of (dataset, method); seeds are cut to the shortest history."""
    histories = [read_history(r["dir"]) for r in runs if (r["dataset"], r["method"]) == (dataset, method)]
    curves = {}
    for name in CURVES:
        series = [h[name] for h in histories if name in h and len(h[name])]
        if series:
            length = min(len(s) for s in series)
            stack = np.stack([s[:length] for s in series])
            std = stack.std(axis=0, ddof=1) if len(series) > 1 else np.zeros(length)
            curves[name] = Curve(stack.mean(axis=0), std, len(series))
    return curves
