"""The paper's pairings (SALN vs standard, SALN vs JEST), paper vs ours, on the full-budget runs (equal
epochs under ``train.budget: epochs``, equal images under ``images``).

Our gain is the mean per-seed paired difference with its 95% interval (``saln.report.stats``, the
one verdict rule of the report); the spread column is the standard error of the difference of the
means, shown for comparison with the paper's single numbers.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from saln.report.markdown import markdown_table
from saln.report.paper import NOT_IN_PAPER, Paper
from saln.report.runs import Stat, aggregate
from saln.report.stats import Paired, paired

NOT_RUN, DATASET_NOT_RUN = "not run", "dataset not run"


def diff_se(a: Stat, b: Stat) -> float:
    """Standard error of the difference of two means over independent seeds (display only)."""
    return math.sqrt(a.std ** 2 / a.n + b.std ** 2 / b.n)


@dataclass(frozen=True)
class Comparison:
    """``method`` against ``baseline`` on one dataset at the full budget (the runs' final metrics)."""

    dataset: str
    method: str
    baseline: str
    acc_gain: float         # test accuracy, percentage points, method - baseline
    acc_gain_se: float      # standard error of that difference of means
    seconds_saved: float    # baseline - method training seconds
    seconds_saved_se: float
    time_speedup: float     # baseline seconds / method seconds
    image_speedup: float    # baseline / method images back-propagated
    bound: float            # batch_size / keep_per_batch: the speedup from back-propagating fewer images alone
    n: tuple[int, int]
    gain: Paired | None = None  # test accuracy, pp, per-seed paired: the verdict's interval


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def compare(runs: list[dict], dataset: str, method: str, baseline: str) -> Comparison | None:
    """None when either side has no finished run on ``dataset``."""
    group = {key: aggregate(runs, key) for key in
             ("test_acc", "train_seconds", "images_backprop", "batch_size", "keep_per_batch")}
    pair = [(dataset, method), (dataset, baseline)]
    if any(g not in group["test_acc"] for g in pair):
        return None
    acc_m, acc_b = (group["test_acc"][g] for g in pair)
    sec_m, sec_b = (group["train_seconds"][g] for g in pair)
    img_m, img_b = (group["images_backprop"][g] for g in pair)
    batch, keep = group["batch_size"][pair[0]].mean, group["keep_per_batch"][pair[0]].mean
    return Comparison(
        dataset, method, baseline,
        acc_gain=100 * (acc_m.mean - acc_b.mean), acc_gain_se=100 * diff_se(acc_m, acc_b),
        seconds_saved=sec_b.mean - sec_m.mean, seconds_saved_se=diff_se(sec_m, sec_b),
        time_speedup=_ratio(sec_b.mean, sec_m.mean), image_speedup=_ratio(img_b.mean, img_m.mean),
        bound=_ratio(batch, keep), n=(acc_m.n, acc_b.n), gain=paired(*(_by_seed(runs, dataset, m) for m in
                                                                        (method, baseline))),
    )


def _by_seed(runs: list[dict], dataset: str, method: str) -> dict[int, float]:
    return {r["seed"]: 100 * r["test_acc"] for r in runs if r["dataset"] == dataset and r["method"] == method}


@dataclass(frozen=True)
class PairRow:
    method: str
    baseline: str
    paper_gain: float | None       # test accuracy, pp (None: not in the paper)
    paper_speedup: float | None    # baseline minutes / method minutes
    ours: Comparison | None
    ours_note: str


def _paper_pair(paper: Paper, dataset: str, method: str, baseline: str, metric: str) -> float | None:
    a, b = (paper.value(dataset, m, metric) for m in (method, baseline))
    if a is None or b is None:
        return None
    return a - b if metric == "test_acc" else b / a


def pair_rows(runs: list[dict], paper: Paper, dataset: str, dataset_ran: bool = True) -> list[PairRow]:
    rows = []
    for method, baseline in paper.pairings:
        ours = compare(runs, dataset, method, baseline) if dataset_ran else None
        note = "" if ours else (NOT_RUN if dataset_ran else DATASET_NOT_RUN)
        rows.append(PairRow(method, baseline, _paper_pair(paper, dataset, method, baseline, "test_acc"),
                            _paper_pair(paper, dataset, method, baseline, "train_minutes"), ours, note))
    return rows


def _num(value: float | None, fmt: str, missing: str) -> str:
    return missing if value is None else format(value, fmt)


def _diff(paper_value: float | None, ours: float | None, note: str) -> str:
    if ours is None:
        return note
    return "—" if paper_value is None else f"{ours - paper_value:+.2f}"


def _ours(r: PairRow, value) -> str:
    return r.ours_note if r.ours is None else value(r.ours)


def pairs_markdown(rows: list[PairRow], ours: str, with_paper: bool) -> str:
    """``ours``: the 'ours (...)' header naming the regime; ``with_paper``: the dataset has paper values
    (without them the paper and difference columns are left out)."""
    columns = [  # (header, paper column, cell)
        ("pairing", False, lambda r: f"{r.method} vs {r.baseline}"),
        ("test-acc gain (pp): paper", True, lambda r: _num(r.paper_gain, "+.2f", NOT_IN_PAPER)),
        (f"test-acc gain (pp): {ours}, mean ± SE (n)", False,
         lambda r: _ours(r, lambda c: f"{c.acc_gain:+.2f} ± {c.acc_gain_se:.2f} (n={c.n[0]} vs {c.n[1]})")),
        ("gain: difference", True, lambda r: _diff(r.paper_gain, r.ours and r.ours.acc_gain, r.ours_note)),
        ("time speedup ×: paper (minutes)", True, lambda r: _num(r.paper_speedup, ".2f", NOT_IN_PAPER)),
        (f"time speedup ×: {ours} (seconds)", False, lambda r: _ours(r, lambda c: f"{c.time_speedup:.2f}")),
        ("speedup: difference", True,
         lambda r: _diff(r.paper_speedup, r.ours and r.ours.time_speedup, r.ours_note)),
        ("images back-propagated ×: ours", False, lambda r: _ours(r, lambda c: f"{c.image_speedup:.2f}")),
        ("back-prop bound ×", False, lambda r: _ours(r, lambda c: f"{c.bound:.2f}")),
    ]
    columns = [c for c in columns if with_paper or not c[1]]
    return markdown_table([c[0] for c in columns], [[cell(r) for _, _, cell in columns] for r in rows])


def write_pairs_csv(dataset: str, rows: list[PairRow], path: str | Path) -> None:
    fields = ["dataset", "method", "baseline", "quantity", "paper", "ours", "ours_se", "n_method",
              "n_baseline", "ours_note", "difference"]
    with Path(path).open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for r in rows:
            c = r.ours
            for quantity, paper_value, ours, se in [
                    ("test_acc_gain_pp", r.paper_gain, c and c.acc_gain, c and c.acc_gain_se),
                    ("time_speedup", r.paper_speedup, c and c.time_speedup, None),
                    ("image_speedup", None, c and c.image_speedup, None)]:
                diff = None if ours is None or paper_value is None else ours - paper_value
                writer.writerow({
                    "dataset": dataset, "method": r.method, "baseline": r.baseline, "quantity": quantity,
                    "paper": "" if paper_value is None else paper_value, "ours": "" if ours is None else ours,
                    "ours_se": "" if se is None else se, "n_method": c.n[0] if c else 0,
                    "n_baseline": c.n[1] if c else 0, "ours_note": r.ours_note,
                    "difference": "" if diff is None else diff,
                })
