"""The paper's pairings (SALN vs standard, SALN vs JEST): accuracy gain and speedup, paper vs ours."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from saln.report.paper import NO_PAPER_VALUE, NOT_AVAILABLE, Paper
from saln.report.runs import Stat, aggregate
from saln.report.tables import DATASET_NOT_RUN, NOT_RUN


@dataclass(frozen=True)
class Comparison:
    """``method`` against ``baseline`` on one dataset, from the runs' means over seeds."""

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


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def _se(a: Stat, b: Stat) -> float:
    return math.sqrt(a.std ** 2 / a.n + b.std ** 2 / b.n)


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
        acc_gain=100 * (acc_m.mean - acc_b.mean), acc_gain_se=100 * _se(acc_m, acc_b),
        seconds_saved=sec_b.mean - sec_m.mean, seconds_saved_se=_se(sec_m, sec_b),
        time_speedup=_ratio(sec_b.mean, sec_m.mean), image_speedup=_ratio(img_b.mean, img_m.mean),
        bound=_ratio(batch, keep), n=(acc_m.n, acc_b.n),
    )


def clearly_positive(value: float, se: float) -> bool:
    """Above zero by more than two standard errors (with one seed per side: above zero)."""
    return value > 2 * se


@dataclass(frozen=True)
class PairRow:
    method: str
    baseline: str
    paper_gain: tuple[float | None, str]      # (value, why missing)
    paper_speedup: tuple[float | None, str]
    ours: Comparison | None
    ours_note: str


def _paper_pair(paper: Paper, dataset: str, method: str, baseline: str, metric: str):
    (a, why_a), (b, why_b) = (paper.value(dataset, m, metric) for m in (method, baseline))
    if a is None or b is None:
        return None, (NO_PAPER_VALUE if NO_PAPER_VALUE in (why_a, why_b) else NOT_AVAILABLE)
    return (a - b, "") if metric == "test_acc" else (b / a, "")


def pair_rows(runs: list[dict], paper: Paper, dataset: str, dataset_ran: bool = True) -> list[PairRow]:
    rows = []
    for method, baseline in paper.pairings:
        ours = compare(runs, dataset, method, baseline) if dataset_ran else None
        note = "" if ours else (NOT_RUN if dataset_ran else DATASET_NOT_RUN)
        rows.append(PairRow(method, baseline, _paper_pair(paper, dataset, method, baseline, "test_acc"),
                            _paper_pair(paper, dataset, method, baseline, "train_minutes"), ours, note))
    return rows


def _paper_text(value: tuple[float | None, str], fmt: str) -> str:
    return value[1] or format(value[0], fmt)


def _diff_text(paper_value: tuple[float | None, str], ours: float | None, note: str, fmt: str) -> str:
    if ours is None:
        return note
    if paper_value[0] is None:
        return paper_value[1]
    return format(ours - paper_value[0], "+" + fmt)


def pairs_markdown(rows: list[PairRow]) -> str:
    header = ["pairing", "test-acc gain (pp): paper", "test-acc gain (pp): ours (mean ± s.e., n)",
              "test-acc gain: difference", "speedup (time ×): paper", "speedup (time ×): ours",
              "speedup: difference", "speedup (images back-propagated ×): ours", "back-prop bound ×"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        c = r.ours
        gain = f"{c.acc_gain:+.2f} ± {c.acc_gain_se:.2f} (n={c.n[0]} vs {c.n[1]})" if c else r.ours_note
        cells = [f"{r.method} vs {r.baseline}", _paper_text(r.paper_gain, "+.2f"), gain,
                 _diff_text(r.paper_gain, c and c.acc_gain, r.ours_note, ".2f"),
                 _paper_text(r.paper_speedup, ".2f"), f"{c.time_speedup:.2f}" if c else r.ours_note,
                 _diff_text(r.paper_speedup, c and c.time_speedup, r.ours_note, ".2f"),
                 f"{c.image_speedup:.2f}" if c else r.ours_note, f"{c.bound:.2f}" if c else r.ours_note]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_pairs_csv(dataset: str, rows: list[PairRow], path: str | Path) -> None:
    fields = ["dataset", "method", "baseline", "quantity", "paper", "paper_note", "ours", "ours_se",
              "n_method", "n_baseline", "ours_note", "difference"]
    with Path(path).open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for r in rows:
            c = r.ours
            for quantity, paper_value, ours, se in [
                    ("test_acc_gain_pp", r.paper_gain, c and c.acc_gain, c and c.acc_gain_se),
                    ("time_speedup", r.paper_speedup, c and c.time_speedup, None),
                    ("image_speedup", (None, NO_PAPER_VALUE), c and c.image_speedup, None)]:
                diff = None if ours is None or paper_value[0] is None else ours - paper_value[0]
                writer.writerow({
                    "dataset": dataset, "method": r.method, "baseline": r.baseline, "quantity": quantity,
                    "paper": "" if paper_value[0] is None else paper_value[0], "paper_note": paper_value[1],
                    "ours": "" if ours is None else ours, "ours_se": "" if se is None else se,
                    "n_method": c.n[0] if c else 0, "n_baseline": c.n[1] if c else 0,
                    "ours_note": r.ours_note, "difference": "" if diff is None else diff,
                })
