"""The paper's Tables 1-16 beside ours: per dataset, one row per method; paper value, ours (mean ± std, n),
difference. Training time is shown as our seconds and the ratio to standard (the paper's minutes on a T4
are not comparable in absolute terms)."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from saln.report.compare import DATASET_NOT_RUN, NOT_RUN
from saln.report.markdown import markdown_table
from saln.report.paper import NOT_IN_PAPER, Paper
from saln.report.runs import Stat, aggregate, stat

STANDARD = "standard"


@dataclass(frozen=True)
class Metric:
    key: str          # key in metrics.json
    paper_key: str    # key in paper.yaml
    label: str
    unit: str
    scale: float      # ours * scale = the paper's unit
    digits: int


METRICS = {m.key: m for m in [
    Metric("train_acc", "train_acc", "train", "%", 100.0, 2),
    Metric("val_acc", "val_acc", "val", "%", 100.0, 2),
    Metric("train_loss", "train_loss", "train", "cross-entropy", 1.0, 4),
    Metric("val_loss", "val_loss", "val", "cross-entropy", 1.0, 4),
    Metric("test_acc", "test_acc", "test", "%", 100.0, 2),
    Metric("train_seconds", "train_minutes", "training time", "seconds (paper: minutes)", 1.0, 2),
]}

# (kind = file name, title, metrics): one set per dataset; the paper's tables of a kind are named in the title.
TABLES = [
    ("accuracy", "Accuracy (%)", ["train_acc", "val_acc"]),
    ("loss", "Loss (cross-entropy)", ["train_loss", "val_loss"]),
    ("test_accuracy", "Test accuracy (%)", ["test_acc"]),
    ("training_time", "Training time (wall clock, selection included)", ["train_seconds"]),
]


@dataclass(frozen=True)
class Cell:
    paper: float | None   # None: not in the paper
    ours: Stat            # in the paper's unit (training time: seconds)
    ours_note: str        # 'not run' ... ('' when n > 0)

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
    with_paper: bool                     # the dataset has paper values (else: ours alone)
    ours: str                            # 'ours (...)': the column header naming our regime


def row_methods(paper: Paper, methods: list[str], with_paper: bool = True) -> list[str]:
    """The paper's methods in its order (so its pairings sit together), then every other method run."""
    first = list(paper.methods) if with_paper else [m for m in paper.methods if m in methods]
    return first + [m for m in methods if m not in paper.methods]


def title_with_tables(paper: Paper, dataset: str, kind: str, title: str) -> str:
    tables = paper.table_numbers(dataset, kind)
    if not tables:
        return title
    cites = ", ".join(f"Table {t.number} ({' vs '.join(t.methods)})" for t in tables)
    return f"{title}: the paper's {cites}"


def build_tables(runs: list[dict], paper: Paper, dataset: str, methods: list[str], ours: str,
                 dataset_ran: bool = True) -> list[Table]:
    stats = {key: aggregate(runs, key) for key in METRICS}
    with_paper = paper.dataset_id(dataset) is not None
    tables = []
    for name, title, keys in TABLES:
        metrics = [METRICS[k] for k in keys]
        rows = [(method, [_cell(stats, paper, dataset, method, metric, dataset_ran) for metric in metrics])
                for method in row_methods(paper, methods, with_paper)]
        tables.append(Table(dataset, name, title_with_tables(paper, dataset, name, title), metrics, rows,
                            with_paper, ours))
    return tables


def _cell(stats, paper: Paper, dataset: str, method: str, metric: Metric, dataset_ran: bool) -> Cell:
    value = paper.value(dataset, method, metric.paper_key)
    raw = stats[metric.key].get((dataset, method))
    if raw is None:
        return Cell(value, stat([]), NOT_RUN if dataset_ran else DATASET_NOT_RUN)
    return Cell(value, Stat(raw.mean * metric.scale, raw.std * metric.scale, raw.n), "")


def _ours_text(cell: Cell, digits: int) -> str:
    return cell.ours_note or cell.ours.format(digits)


def _paper_text(value: float | None, digits: int) -> str:
    return NOT_IN_PAPER if value is None else f"{value:.{digits}f}"


def _diff_text(cell: Cell, digits: int) -> str:
    if cell.diff is not None:
        return f"{cell.diff:+.{digits}f}"
    return "—" if cell.paper is None else cell.ours_note


def table_markdown(table: Table) -> str:
    if table.name == "training_time":
        return time_markdown(table)
    header = ["method"]
    for m in table.metrics:
        ours = f"{m.label}: {table.ours}, mean ± std (n)"
        header += [f"{m.label}: paper", ours, f"{m.label}: difference"] if table.with_paper else [ours]
    body = []
    for method, cells in table.rows:
        values = [method]
        for m, c in zip(table.metrics, cells):
            ours = _ours_text(c, m.digits)
            values += [_paper_text(c.paper, m.digits), ours, _diff_text(c, m.digits)] if table.with_paper \
                else [ours]
        body.append(values)
    return markdown_table(header, body)


def _ratio(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or not base or math.isnan(value) or math.isnan(base):
        return None
    return value / base


@dataclass(frozen=True)
class TimeRow:
    method: str
    cell: Cell
    paper_ratio: float | None   # method minutes / standard minutes
    ours_ratio: float | None    # method mean seconds / standard mean seconds

    @property
    def ratio_diff(self) -> float | None:
        return None if self.paper_ratio is None or self.ours_ratio is None else self.ours_ratio - self.paper_ratio


def time_rows(table: Table) -> list[TimeRow]:
    cells = {method: cells[0] for method, cells in table.rows}
    base = cells.get(STANDARD)
    rows = []
    for method, c in cells.items():
        ours_base = base.ours.mean if base and base.ours.n else None
        rows.append(TimeRow(method, c, _ratio(c.paper, base.paper if base else None),
                            _ratio(c.ours.mean if c.ours.n else None, ours_base)))
    return rows


def time_markdown(table: Table) -> str:
    ours = f"{table.ours}: seconds, mean ± std (n)"
    header = ["method"] + (["paper: minutes (T4)", "paper: ratio to standard"] if table.with_paper else []) + \
        [ours, "ours: ratio to standard"] + (["ratio: difference (ours − paper)"] if table.with_paper else [])
    body = []
    for r in time_rows(table):
        ours_ratio = "—" if r.ours_ratio is None else f"{r.ours_ratio:.3f}"
        cells = [r.method]
        if table.with_paper:
            cells += [_paper_text(r.cell.paper, 2), "—" if r.paper_ratio is None else f"{r.paper_ratio:.3f}"]
        cells += [_ours_text(r.cell, 2), r.cell.ours_note or ours_ratio]
        if table.with_paper:
            cells += ["—" if r.ratio_diff is None else f"{r.ratio_diff:+.3f}"]
        body.append(cells)
    return markdown_table(header, body)


def _blank(value) -> object:
    return "" if value is None else value


def write_csv(table: Table, path: str | Path) -> None:
    """Long format: one line per method x metric, numbers unrounded (training time: seconds, and the
    ratios to standard in ``paper_ratio`` / ``ours_ratio``)."""
    fields = ["dataset", "method", "metric", "unit", "paper", "ours_mean", "ours_std", "n", "ours_note",
              "difference", "paper_ratio_to_standard", "ours_ratio_to_standard"]
    ratios = {r.method: r for r in time_rows(table)} if table.name == "training_time" else {}
    with Path(path).open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for method, cells in table.rows:
            for m, c in zip(table.metrics, cells):
                r = ratios.get(method)
                writer.writerow({
                    "dataset": table.dataset, "method": method, "metric": m.paper_key, "unit": m.unit,
                    "paper": _blank(c.paper), "ours_mean": "" if c.ours.n == 0 else c.ours.mean,
                    "ours_std": "" if c.ours.n == 0 else c.ours.std, "n": c.ours.n, "ours_note": c.ours_note,
                    "difference": "" if r else _blank(c.diff),
                    "paper_ratio_to_standard": _blank(r and r.paper_ratio),
                    "ours_ratio_to_standard": _blank(r and r.ours_ratio),
                })
