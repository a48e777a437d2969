"""Per-epoch histories from each run's dvclive TSVs: per run, and averaged over seeds.

A run logs one row per step. Current runs log step 0 before any training (epoch 0: no images
back-propagated, no seconds spent, the initial model's accuracy) and step k after epoch k, with an
``epoch`` series. Older runs lack the epoch-0 row and the ``epoch`` series (their step k is epoch k + 1)
and ``test_acc`` per epoch; everything here works on both.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NAMES = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "train_seconds",
         "images_backprop", "images_scored", "selection_seconds", "steps")


def _read_tsv(path: Path, name: str) -> dict[int, float]:
    with path.open() as fh:
        return {int(r["step"]): float(r[name]) for r in csv.DictReader(fh, delimiter="\t")}


@dataclass(frozen=True)
class History:
    """One run: ``values[name][i]`` was logged at epoch ``epoch[i]`` (nan where that step lacks it)."""

    epoch: np.ndarray
    values: dict[str, np.ndarray]

    @property
    def has_start(self) -> bool:
        """Logged the epoch-0 row (the model before training)."""
        return bool(len(self.epoch)) and self.epoch[0] == 0

    def series(self, x_name: str, y_name: str) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) at the epochs that logged both, x ascending; x_name 'epoch' or any logged name."""
        x = self.epoch if x_name == "epoch" else self.values.get(x_name)
        y = self.values.get(y_name)
        if x is None or y is None:
            return np.empty(0), np.empty(0)
        ok = np.isfinite(x) & np.isfinite(y)
        order = np.argsort(x[ok], kind="stable")
        return x[ok][order], y[ok][order]


def _epochs(raw: dict[str, dict[int, float]], steps: list[int]) -> np.ndarray:
    if "epoch" in raw:
        return np.array([raw["epoch"].get(s, math.nan) for s in steps])
    first_images = raw.get("images_backprop", {}).get(steps[0]) if steps else None
    offset = 0 if first_images == 0 else 1   # an old run's step 0 is already after epoch 1
    return np.array(steps, dtype=float) + offset


def read_history(run_dir: str | Path) -> History:
    folder = Path(run_dir) / "dvclive" / "plots" / "metrics"
    raw = {name: _read_tsv(folder / f"{name}.tsv", name) for name in NAMES if (folder / f"{name}.tsv").is_file()}
    steps = sorted(set().union(*raw.values())) if raw else []
    values = {name: np.array([r.get(s, math.nan) for s in steps]) for name, r in raw.items() if name != "epoch"}
    return History(_epochs(raw, steps), values)


@dataclass(frozen=True)
class Curve:
    epochs: np.ndarray
    mean: np.ndarray
    std: np.ndarray   # sample std over seeds (ddof=1); zeros for a single seed
    n: int


def epoch_ends(history: History) -> History:
    """Only the rows logged at the end of an epoch (and before training): the per-epoch curves. The
    other rows are the budget grid's points inside an epoch (fractional epochs)."""
    keep = np.isfinite(history.epoch) & (history.epoch == np.round(history.epoch))
    return History(history.epoch[keep], {k: v[keep] for k, v in history.values.items()})


def mean_curves(histories: list[History]) -> dict[str, Curve]:
    """name -> per-epoch Curve over the seeds' histories; seeds are cut to the shortest history."""
    curves = {}
    histories = [epoch_ends(h) for h in histories]
    for name in NAMES[1:]:
        pairs = [h.series("epoch", name) for h in histories]
        pairs = [(x, y) for x, y in pairs if len(y)]
        if not pairs:
            continue
        length = min(len(y) for _, y in pairs)
        stack = np.stack([y[:length] for _, y in pairs])
        std = stack.std(axis=0, ddof=1) if len(pairs) > 1 else np.zeros(length)
        curves[name] = Curve(pairs[0][0][:length], stack.mean(axis=0), std, len(pairs))
    return curves
