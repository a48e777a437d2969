"""Paper-vs-ours tables: per dataset, one row per method; paper value, ours (mean ± std, n), difference."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from saln.report.paper import Paper
from saln.report.runs import Stat, aggregate, stat

NOT_RUN = "not run"
DATASET_NOT_RUN = "dataset not run"


@dataclass(frozen=True)
class Metric:
    key: str          # key in metrics.json
    paper_key: str    # key in paper.yaml
    label: str
    unit: str
    scale: float      # ours * scale = the paper's unit
    digits: int


METRICS = {m.paper_key: m for m in [
    Metric("train_acc", "train_acc", "train", "%", 100.0, 2),
    Metric("val_acc", "val_acc", "val", "%", 100.0, 2),
    Metric("train_loss", "train_loss", "train", "cross-entropy", 1.0, 3),
    Metric("val_loss", "val_loss", "val", "cross-entropy", 1.0, 3),
    Metric("test_acc", "test_acc", "test", "%", 100.0, 2),
    Metric("train_seconds", "train_minutes", "training time", "minutes", 1 / 60, 3),
]}

# (file name, title, metrics) -- the paper's tables, one set per dataset.
TABLES = [
    ("accuracy", "Accuracy (%)", ["train_acc", "val_acc"]),
    ("loss", "Loss (cross-entropy)", ["train_loss", "val_loss"]),
    ("test_accuracy", "Test accuracy (%)", ["test_acc"]),
    ("training_time", "Training time (minutes, wall clock, selection included)", ["train_minutes"]),
]


@dataclass(frozen=True)
class Cell:
    paper: float | None
    paper_note: str   # why there is no paper value ('' when there is one)
    ours: Stat        # in the paper's unit
    ours_note: str    # 'not run' ... ('' when n > 0)

    @property
    def diff(self) -> float | None:
        """ours mean - paper value, in the paper's unit."""
        if self.paper is None or self.ours.n == 0:
            return None
        return self.ours.mean - self.paper


@dataclass(frozen=True)
class Table:
    dataset: str
    name: str
    title: str
    metrics: list[Metric]
    rows: list[tuple[str, list[Cell]]]   # (method, one cell per metric)


def row_methods(paper: Paper, methods: list[str]) -> list[str]:
    """The paper's methods in its order (so its pairings sit together), then every other method run."""
    return list(paper.methods) + [m for m in methods if m not in paper.methods]


def build_tables(runs: list[dict], paper: Paper, dataset: str, methods: list[str],
                 dataset_ran: bool = True) -> list[Table]:
    stats = {m.key: aggregate(runs, m.key) for m in METRICS.values()}
    tables = []
    for name, title, keys in TABLES:
        metrics = [METRICS[k] for k in keys]
        rows = [(method, [_cell(stats, paper, dataset, method, metric, dataset_ran) for metric in metrics])
                for method in row_methods(paper, methods)]
        tables.append(Table(dataset, name, title, metrics, rows))
    return tables


def _cell(stats, paper: Paper, dataset: str, method: str, metric: Metric, dataset_ran: bool) -> Cell:
    value, paper_note = paper.value(dataset, method, metric.paper_key)
    raw = stats[metric.key].get((dataset, method))
    if raw is None:
        return Cell(value, paper_note, stat([]), NOT_RUN if dataset_ran else DATASET_NOT_RUN)
    scaled = Stat(raw.mean * metric.scale, raw.std * metric.scale, raw.n)
    return Cell(value, paper_note, scaled, "")


def format_ours(cell: Cell, digits: int) -> str:
    return cell.ours_note or cell.ours.format(digits)


def format_paper(cell: Cell, digits: int) -> str:
    return cell.paper_note or f"{cell.paper:.{digits}f}"


def format_diff(cell: Cell, digits: int) -> str:
    if cell.diff is not None:
        return f"{cell.diff:+.{digits}f}"
    return cell.ours_note if cell.paper is not None else cell.paper_note


def table_markdown(table: Table) -> str:
    header, rule = ["method"], ["---"]
    for m in table.metrics:
        header += [f"{m.label}: paper", f"{m.label}: ours (mean ± std, n)", f"{m.label}: difference"]
        rule += ["---"] * 3
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    for method, cells in table.rows:
        values = [method]
        for m, c in zip(table.metrics, cells):
            values += [format_paper(c, m.digits), format_ours(c, m.digits), format_diff(c, m.digits)]
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines)


CSV_FIELDS = ["dataset", "method", "metric", "unit", "paper", "paper_note", "ours_mean", "ours_std",
              "n", "ours_note", "difference"]


def write_csv(table: Table, path: str | Path) -> None:
    """Long format: one line per method x metric, numbers unrounded."""
    with Path(path).open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for method, cells in table.rows:
            for m, c in zip(table.metrics, cells):
                writer.writerow({
                    "dataset": table.dataset, "method": method, "metric": m.paper_key, "unit": m.unit,
                    "paper": "" if c.paper is None else c.paper, "paper_note": c.paper_note,
                    "ours_mean": "" if c.ours.n == 0 else c.ours.mean,
                    "ours_std": "" if c.ours.n == 0 else c.ours.std, "n": c.ours.n,
                    "ours_note": c.ours_note, "difference": "" if c.diff is None else c.diff,
                })
