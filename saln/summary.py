"""One dataset's results in one metrics file, and its validation curves overlaid per method.

The summary (stage summary, ``results/summary/<dataset>.json``) holds, per method, learning rate
and budget fraction (``train.budget_fractions``), the mean, sample std and number of seeds of a few
final metrics, and per method a ``best`` block: the same numbers at the full budget and the rate
stage best_lr picked. Its keys are the run folders' names and stay the same from run to run, so
``dvc metrics diff`` compares methods across commits::

    {"standard": {"best_lr": 0.01, "one_off_seconds": 0.0,
                  "best": {"test_acc": {"mean": .., "std": .., "n": 3}, ...},
                  "lr0.01": {...}, "lr0.01-f0.1875": {...}, "lr0.03": "diverged", ...}, ...}

A rate is "diverged" when any seed diverged there (as stage best_lr counts it); its numbers are
left out. The std of a single seed is 0 (n says how many seeds there were).

The curves (CSV, long format ``method,<x>,val_acc``; one folder per x-axis, one file per dataset
in it: ``results/plots/val_acc_by_images/<dataset>.csv``) average the seeds of each method at its
best rate: against epochs (epoch-end rows only), against images back-propagated (the rows logged at
the same image count in every seed) and against training seconds (mean seconds over seeds at those
same rows). dvc.yaml's top-level ``plots:`` names the three folders, so ``dvc plots show`` draws one
plot per dataset and axis whatever datasets params.yaml lists. DVC's own templates draw one line
per file or column, not per value of a column, so those plots use the template ``PLOT_TEMPLATE``
(``.dvc/plots/by_method.json``): one colour per method, one dash per revision.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from saln.costs import OneOff, cost_breakdown, one_off_of, sharing_runs
from saln.errors import SalnError
from saln.layout import rate_dir, rate_name, run_dir
from saln.rates import rate_diverged, read_outcome
from saln.report.history import History, read_history

STATS = ("test_acc", "val_acc", "train_seconds", "all_in_amortised", "all_in_dataset", "images_backprop")
DIVERGED = "diverged"
# x-axis column -> its folder in the plots folder, one <dataset>.csv each (dvc.yaml's plots: names these)
PLOT_FOLDERS = {"images_backprop": "val_acc_by_images", "train_seconds": "val_acc_by_seconds",
                "epoch": "val_acc_by_epochs"}
TEMPLATE_NAME = "by_method"  # .dvc/plots/by_method.json holds PLOT_TEMPLATE


def rate_key(lr: float, fraction: float = 1.0) -> str:
    """A (rate, budget fraction)'s key in the summary, spelled like its run folder (``lr0.01``,
    ``lr0.01-f0.1875``)."""
    return rate_name(lr, fraction)


def moments(values: list[float]) -> dict:
    """Mean, sample std (ddof 1; 0 for one value) and count."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "n": n}


def read_rate(root: Path, dataset: str, method: str, seeds: list[int], lr: float,
              fraction: float = 1.0) -> list[dict] | None:
    """Every seed's final metrics at ``lr`` and budget ``fraction``, or None when a seed diverged there."""
    outcomes = []
    for seed in seeds:
        folder = rate_dir(run_dir(root, dataset, method, seed), lr, fraction)
        outcome = read_outcome(folder)
        if outcome is None:
            raise SalnError(f"{folder} has neither metrics.json nor diverged.json: run the train stages first")
        outcomes.append(outcome)
    return None if rate_diverged(outcomes) else outcomes


def rate_summary(outcomes: list[dict], method: str, one_off: OneOff, sharing: dict[str, int]) -> dict:
    """STATS over the seeds of one rate, all-in costs included."""
    rows = [o | cost_breakdown(o, method, one_off, sharing) for o in outcomes]
    return {name: moments([r[name] for r in rows]) for name in STATS}


def best_rates(best: dict, dataset: str, methods: list[str], lrs: list[float]) -> dict[str, float]:
    """Each method's best rate from stage best_lr's file, refused when it was made for other runs."""
    if best.get("dataset") != dataset or sorted(best.get("lrs", [])) != sorted(lrs):
        raise SalnError(f"best.json is for {best.get('dataset')} at rates {best.get('lrs')}, not {dataset} "
                        f"at {sorted(lrs)}: rerun stage best_lr")
    picks = {}
    for method in methods:
        pick = best.get("methods", {}).get(method, {}).get("best_lr")
        if pick is None:
            raise SalnError(f"best.json has no best rate for {method} on {dataset}: rerun stage best_lr")
        picks[method] = pick
    return picks


def summarise(dataset: str, methods: list[str], seeds: list[int], lrs: list[float], best: dict,
              root: Path, one_off: OneOff, fractions: list[float]) -> dict:
    """The summary of one dataset (layout: see the module docstring): every (rate, budget fraction) of
    ``train.lrs`` x ``train.budget_fractions``; ``best`` is the full budget at stage best_lr's rate."""
    picks = best_rates(best, dataset, methods, lrs)
    sharing = sharing_runs(methods, seeds, lrs, fractions)
    summary = {}
    for method in methods:
        rates = {}
        for lr in sorted(lrs):
            for fraction in sorted(fractions, reverse=True):  # the full budget's key first
                outcomes = read_rate(root, dataset, method, seeds, lr, fraction)
                rates[rate_key(lr, fraction)] = (DIVERGED if outcomes is None
                                                 else rate_summary(outcomes, method, one_off, sharing))
        at_best = rates[rate_key(picks[method])]
        if at_best == DIVERGED:  # best_lr never picks a diverged rate: its file predates these runs
            raise SalnError(f"best.json picks {picks[method]} for {method}, which diverged: rerun stage best_lr")
        summary[method] = {"best_lr": picks[method], "one_off_seconds": one_off_of(method, one_off),
                           "best": at_best, **rates}
    return summary


# ---------------------------------------------------------------------------------------------
# Curves


def _finite_rows(history: History, *names: str) -> list[tuple[float, ...]]:
    """(epoch, *values) of each logged row where every name is finite, in logging order."""
    columns = [history.values.get(n, np.full(len(history.epoch), np.nan)) for n in names]
    return [(float(e), *map(float, vals)) for e, *vals in zip(history.epoch, *columns)
            if all(np.isfinite(v) for v in vals)]


def epoch_curve(histories: list[History]) -> list[tuple[int, float]]:
    """(epoch, mean val_acc) at the epoch ends every seed logged (epoch 0: before training)."""
    per_seed = [{int(e): acc for e, acc in _finite_rows(h, "val_acc") if e == int(e)} for h in histories]
    common = set.intersection(*(set(d) for d in per_seed)) if per_seed else set()
    return [(e, float(np.mean([d[e] for d in per_seed]))) for e in sorted(common)]


def budget_curve(histories: list[History]) -> list[tuple[float, float, float]]:
    """(images back-propagated, mean train seconds, mean val_acc) at the image counts every seed logged.

    Only shared counts: averaging seeds at different points would mix budgets. A count logged twice
    (a budget point falling on an epoch end) keeps its last row.
    """
    per_seed = [{images: (seconds, acc) for _, images, seconds, acc
                 in _finite_rows(h, "images_backprop", "train_seconds", "val_acc")} for h in histories]
    common = set.intersection(*(set(d) for d in per_seed)) if per_seed else set()
    return [(images, float(np.mean([d[images][0] for d in per_seed])),
             float(np.mean([d[images][1] for d in per_seed]))) for images in sorted(common)]


def method_curves(root: Path, dataset: str, method: str, seeds: list[int], lr: float) -> dict[str, list]:
    """x-axis column -> [(x, mean val_acc)] for one method at one rate."""
    histories = [read_history(rate_dir(run_dir(root, dataset, method, s), lr)) for s in seeds]
    epochs, budget = epoch_curve(histories), budget_curve(histories)
    if not epochs or not budget:
        raise SalnError(f"{dataset}/{method} at lr {lr:g}: no validation curve shared by seeds {seeds} "
                        f"(dvclive/plots/metrics/*.tsv missing?): rerun its train stage")
    return {"images_backprop": [(images, acc) for images, _, acc in budget],
            "train_seconds": [(seconds, acc) for _, seconds, acc in budget],
            "epoch": epochs}


def plot_file(plots: Path, axis: str, dataset: str) -> Path:
    return plots / PLOT_FOLDERS[axis] / f"{dataset}.csv"


def write_curves(plots: Path, dataset: str, curves: dict[str, dict[str, list]]) -> list[Path]:
    """One long-format CSV per x-axis (``method,<x>,val_acc``) from method -> method_curves(...)."""
    written = []
    for axis in PLOT_FOLDERS:
        path = plot_file(plots, axis, dataset)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["method", axis, "val_acc"])
            for method, by_axis in curves.items():
                writer.writerows([method, _plain(x), y] for x, y in by_axis[axis])
        written.append(path)
    return written


def _plain(x: float):
    """An integral x (epochs, images) written without a trailing .0."""
    return int(x) if float(x).is_integer() else x


# The DVC plot template of the curves: DVC fills the <DVC_METRIC_*> anchors (data, x, y, title).
PLOT_TEMPLATE = {
    "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
    "data": {"values": "<DVC_METRIC_DATA>"},
    "title": "<DVC_METRIC_TITLE>",
    "width": 400,
    "height": 300,
    "mark": {"type": "line", "point": True, "tooltip": {"content": "data"}},
    "encoding": {
        "x": {"field": "<DVC_METRIC_X>", "type": "quantitative", "title": "<DVC_METRIC_X_LABEL>"},
        "y": {"field": "<DVC_METRIC_Y>", "type": "quantitative", "title": "<DVC_METRIC_Y_LABEL>",
              "scale": {"zero": False}},
        "color": {"field": "method", "type": "nominal"},
        "strokeDash": {"field": "rev", "type": "nominal"},
    },
}
