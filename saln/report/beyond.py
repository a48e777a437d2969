"""Beyond the paper: uncertainty selectors, prototype pruning and active learning next to SALN.

Three inputs, each optional: the train matrix (results/train), stage prune's
results/prune/<ds>/summary.json and stage active's results/active/<ds>/curves.json. This module
turns them into tables (rows of numbers, Markdown, CSV); ``beyond_section`` in
saln/report/beyond_section.py adds the figures and the prose.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from saln.report.markdown import markdown_table
from saln.report.runs import Stat, stat

PAPER_GROUP, CONTROL_GROUP, BEYOND_GROUP = "paper method", "control", "beyond the paper"
GROUPS = (PAPER_GROUP, CONTROL_GROUP, BEYOND_GROUP)
# Told apart by name (the report imports no selector code): prune_* train on a pruned subset, the
# uncertainty selectors and SALN's graph variants (saln_*) pick per batch, all beyond the paper; the
# rest (random, saln_inverse: the inverse ranking) are controls.
UNCERTAINTY = ("maxent", "infodensity")
CONTROLS = ("random", "saln_inverse")
PRUNE_MODES = ("easy", "hard", "random")   # the linear-probe curve's subsets


@dataclass(frozen=True)
class Column:
    key: str        # key in metrics.json
    label: str
    scale: float    # shown = value * scale (the CSV keeps the raw value)
    digits: int


COLUMNS = [
    Column("test_acc", "test accuracy (%)", 100.0, 2),
    Column("train_seconds", "training seconds", 1.0, 1),
    Column("images_backprop", "images back-propagated", 1.0, 0),
    Column("images_scored", "images scored", 1.0, 0),
    Column("train_images", "training-set size", 1.0, 0),
]


# ---------------------------------------------------------------------------------------------
# Inputs


def load_result(path: str | Path, stage: str) -> tuple[dict | None, str]:
    """(the JSON, '') or (None, why not) -- a missing or broken file never raises."""
    path = Path(path)
    if not path.is_file():
        return None, f"stage `{stage}` has not run for this dataset (`{path.as_posix()}` is missing)"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        return None, f"`{path.as_posix()}` (stage `{stage}`) could not be read: {err}"
    if not isinstance(data, dict):
        return None, f"`{path.as_posix()}` (stage `{stage}`) is not a JSON object"
    return data, ""


# ---------------------------------------------------------------------------------------------
# (a) every method of the train matrix, grouped


@dataclass(frozen=True)
class MethodRow:
    group: str
    method: str
    stats: dict[str, Stat]   # Column.key -> Stat over seeds (raw units)


def method_group(method: str, paper_methods: list[str]) -> str:
    if method in paper_methods:
        return PAPER_GROUP
    return CONTROL_GROUP if method in CONTROLS else BEYOND_GROUP


def selects_subset(method: str) -> bool:
    """prune_* methods train on a subset chosen once; every other method selects within each batch."""
    return method.startswith("prune_")


def selects(method: str) -> str:
    if method == "standard":
        return "nothing (every image)"
    return "a subset, once" if selects_subset(method) else "per batch"


def _stat_of(runs: list[dict], key: str) -> Stat:
    return stat([r[key] for r in runs if isinstance(r.get(key), (int, float))])


def method_rows(runs: list[dict], dataset: str, methods: list[str],
                paper_methods: list[str]) -> list[MethodRow]:
    """One row per method with a finished run on ``dataset``: paper methods (in the paper's order),
    then controls, then beyond-paper methods (each in train.methods order)."""
    order = list(paper_methods) + [m for m in methods if m not in paper_methods]
    rows = []
    for method in order:
        ran = [r for r in runs if r["dataset"] == dataset and r["method"] == method]
        if ran and method in methods:
            rows.append(MethodRow(method_group(method, paper_methods), method,
                                  {c.key: _stat_of(ran, c.key) for c in COLUMNS}))
    return sorted(rows, key=lambda row: GROUPS.index(row.group))  # stable: keeps the order within a group


def _format(s: Stat, column: Column) -> str:
    return "—" if s.n == 0 else s.format(column.digits, column.scale)


def methods_markdown(rows: list[MethodRow]) -> str:
    header = ["group", "method", "selects"] + [f"{c.label}: mean ± std (n)" for c in COLUMNS]
    return markdown_table(header, [
        [row.group, row.method, selects(row.method)]
        + [_format(row.stats[c.key], c) for c in COLUMNS] for row in rows])


def write_methods_csv(dataset: str, rows: list[MethodRow], path: str | Path) -> None:
    """Long format, raw units (accuracy as a fraction), unrounded."""
    with Path(path).open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["dataset", "group", "method", "metric", "mean", "std", "n"])
        for row in rows:
            for c in COLUMNS:
                s = row.stats[c.key]
                writer.writerow([dataset, row.group, row.method, c.key, "" if s.n == 0 else s.mean,
                                 "" if s.n == 0 else s.std, s.n])


# ---------------------------------------------------------------------------------------------
# (b) active learning


@dataclass(frozen=True)
class ActiveRow:
    strategy: str
    acc_at: list[float | None]     # test accuracy (fraction) at each budget; None: not measured there
    selection_seconds: float       # mean per round (pooling + scoring)
    candidates: float              # mean candidate-pool size per round
    index_seconds: float           # one-off nearest-neighbour index (SEALS)


def strategy_curves(curves: dict) -> dict[str, dict]:
    """strategy -> its record, checked: labels and test_acc of one length, numbers only."""
    out = {}
    for name, record in curves["strategies"].items():
        labels, accs = [int(v) for v in record["labels"]], [float(v) for v in record["test_acc"]]
        if not labels or len(labels) != len(accs):
            raise ValueError(f"strategy {name}: labels and test_acc differ in length or are empty")
        out[name] = {**record, "labels": labels, "test_acc": accs,
                     "selection_seconds": [float(v) for v in record.get("selection_seconds", [])]}
    if not out:
        raise ValueError("no strategy recorded")
    return out


def label_budgets(strategies: dict[str, dict]) -> list[int]:
    """Labels at the first, middle and last measurement of the first strategy (deduplicated)."""
    labels = next(iter(strategies.values()))["labels"]
    return list(dict.fromkeys(labels[i] for i in (0, (len(labels) - 1) // 2, len(labels) - 1)))


def _mean(values) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def active_rows(strategies: dict[str, dict], budgets: list[int]) -> list[ActiveRow]:
    rows = []
    for name, s in strategies.items():
        at = dict(zip(s["labels"], s["test_acc"]))
        rows.append(ActiveRow(name, [at.get(b) for b in budgets], _mean(s["selection_seconds"]),
                              _mean(s.get("candidates", [])), _index_seconds(s)))
    return rows


def _index_seconds(record: dict) -> float:
    """The one-off neighbour index only exists for a SEALS pool (nan otherwise)."""
    if record.get("pool") != "seals" or record.get("index_seconds") is None:
        return float("nan")
    return float(record["index_seconds"])


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


def _ms(value: float) -> str:
    return "—" if value != value else f"{1000 * value:.3g}"


def active_markdown(rows: list[ActiveRow], budgets: list[int]) -> str:
    header = (["strategy"] + [f"test acc (%) at {b} labels" for b in budgets]
              + ["selection ms / round (mean)", "candidates / round (mean)", "index build ms (once)"])
    return markdown_table(header, [
        [r.strategy] + [_pct(a) for a in r.acc_at]
        + [_ms(r.selection_seconds), "—" if r.candidates != r.candidates else f"{r.candidates:.0f}",
           _ms(r.index_seconds)] for r in rows])


def write_active_csv(dataset: str, rows: list[ActiveRow], budgets: list[int], path: str | Path) -> None:
    """One line per strategy; accuracies as fractions, seconds unrounded."""
    with Path(path).open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["dataset", "strategy"] + [f"test_acc_at_{b}_labels" for b in budgets]
                        + ["mean_selection_seconds_per_round", "mean_candidates_per_round", "index_seconds"])
        for r in rows:
            writer.writerow([dataset, r.strategy] + ["" if a is None else a for a in r.acc_at]
                            + [r.selection_seconds, r.candidates, r.index_seconds])


def identical_curves(strategies: dict[str, dict]) -> list[list[str]]:
    """Groups of strategies whose accuracy curves coincide (one line hides the others in a plot)."""
    groups: dict[tuple, list[str]] = {}
    for name, s in strategies.items():
        groups.setdefault((tuple(s["labels"]), tuple(s["test_acc"])), []).append(name)
    return [names for names in groups.values() if len(names) > 1]


# ---------------------------------------------------------------------------------------------
# (c) prototype pruning


@dataclass(frozen=True)
class PruneCurve:
    fractions: list[float]
    kept: list[int]
    auto_mode: list[str]
    acc: dict[str, list[float]]    # easy | hard | random -> linear-probe test accuracy (fraction)


def prune_curve(summary: dict) -> PruneCurve:
    curve = summary["curve"]
    fractions = [float(f) for f in curve["fractions"]]
    acc = {mode: [float(a) for a in curve["linear_probe_test_acc"][mode]]
           for mode in PRUNE_MODES if mode in curve["linear_probe_test_acc"]}
    if not fractions or any(len(a) != len(fractions) for a in acc.values()):
        raise ValueError("curve fractions and accuracies differ in length or are empty")
    kept = [int(k) for k in curve.get("kept", [])] or [0] * len(fractions)
    auto = list(curve.get("auto_mode", [])) or [""] * len(fractions)
    return PruneCurve(fractions, kept, auto, acc)


def resnet_points(runs: list[dict], dataset: str, methods: list[str]) -> dict[str, tuple[Stat, Stat]]:
    """prune_* method that ran -> (test accuracy, training-set size) over seeds."""
    out = {}
    for method in methods:
        ran = [r for r in runs if r["dataset"] == dataset and r["method"] == method]
        if method.startswith("prune_") and ran:
            out[method] = (_stat_of(ran, "test_acc"), _stat_of(ran, "train_images"))
    return out


def prune_markdown(curve: PruneCurve) -> str:
    header = ["kept fraction", "kept images", "prune_auto keeps"] + [
        f"linear probe test acc (%): {mode}-kept" for mode in curve.acc]
    return markdown_table(header, [
        [f"{fraction:g}", str(curve.kept[i]), curve.auto_mode[i] or "—"]
        + [_pct(accs[i]) for accs in curve.acc.values()] for i, fraction in enumerate(curve.fractions)])


def write_prune_csv(dataset: str, curve: PruneCurve, path: str | Path) -> None:
    with Path(path).open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["dataset", "kept_fraction", "kept_images", "auto_mode"]
                        + [f"linear_probe_test_acc_{mode}" for mode in curve.acc])
        for i, fraction in enumerate(curve.fractions):
            writer.writerow([dataset, fraction, curve.kept[i], curve.auto_mode[i]]
                            + [accs[i] for accs in curve.acc.values()])
