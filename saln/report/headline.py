"""The abstract's 'up to' claims (speedup, accuracy gain over standard), the paper's own tables and ours."""

from __future__ import annotations

from dataclasses import dataclass

from saln.report.compare import Comparison, compare
from saln.report.markdown import markdown_table
from saln.report.paper import Paper

SUPPORTED, NOT_SUPPORTED, NOT_TESTED = "supported", "not supported", "not tested by this run"


@dataclass(frozen=True)
class Headline:
    text: str
    paper_shows: str   # what the paper's own tables give
    measured: str
    verdict: str
    note: str


def _paper_best(paper: Paper, metric: str, kind: str) -> str:
    """The paper's largest SALN-vs-standard speedup or gain, and the table it comes from."""
    best = None
    for key, pid in paper.dataset_keys.items():
        s, b = paper.value(key, "saln", metric), paper.value(key, "standard", metric)
        value = b / s if metric == "train_minutes" else s - b
        numbers = [t.number for t in paper.table_numbers(key, kind) if "standard" in t.methods]
        if best is None or value > best[0]:
            best = (value, paper.datasets[pid], numbers)
    if best is None:
        return "—"
    unit = "×" if metric == "train_minutes" else " pp"
    return f"{best[0]:.2f}{unit} ({best[1]}, Table {', '.join(map(str, best[2]))})"


def _speedup(target: float, comps: list[Comparison], filter_ratio: float, paper: Paper, basis: str) -> Headline:
    text = f"Up to {target:g}× reduction in training time over standard training."
    shows = _paper_best(paper, "train_minutes", "training_time")
    if not comps:
        return Headline(text, shows, "no saln and standard runs to compare", NOT_TESTED,
                        "Needs finished saln and standard runs on one dataset.")
    best = max(comps, key=lambda c: c.time_speedup)
    bound = 1 / (1 - filter_ratio)
    measured = (f"largest speedup {best.time_speedup:.2f}× by seconds, {best.image_speedup:.2f}× by images "
                f"back-propagated ({best.dataset}, {basis})")
    note = f"Back-prop bound 1/(1 − filter_ratio) = {bound:.2f}× (B/keep = {best.bound:.2f}×)."
    if best.bound < target:
        note += (f" At filter_ratio {filter_ratio:g} back-propagating fewer images alone cannot give "
                 f"{target:g}×; it needs filter_ratio ≥ {1 - 1 / target:.3f}.")
    return Headline(text, shows, measured, SUPPORTED if best.time_speedup >= target else NOT_SUPPORTED, note)


def _gain(target: float, comps: list[Comparison], paper: Paper, basis: str) -> Headline:
    text = f"Up to {target:g}% higher accuracy than standard training (read as percentage points)."
    shows = _paper_best(paper, "test_acc", "test_accuracy")
    if not comps:
        return Headline(text, shows, "no saln and standard runs to compare", NOT_TESTED,
                        "Needs finished saln and standard runs on one dataset.")
    best = max(comps, key=lambda c: c.acc_gain)
    gain = best.gain
    if gain is None or gain.n < 2:
        return Headline(text, shows, f"largest gain {best.acc_gain:+.2f} pp ({best.dataset}), no interval",
                        NOT_TESTED, "Needs at least two seeds shared by saln and standard.")
    measured = f"largest gain {gain.format('pp')} test accuracy ({best.dataset}, {basis}, paired)"
    verdict = (SUPPORTED if gain.low >= target else NOT_SUPPORTED if gain.high < target
               else f"not shown: the interval contains {target:g} pp")
    return Headline(text, shows, measured, verdict, "The 95% interval of the per-seed paired gain is compared "
                                                    "with the target.")


def headline_claims(runs: list[dict], paper: Paper, datasets: list[str], filter_ratio: float,
                    basis: str = "equal epochs") -> list[Headline]:
    """``basis``: what the full-budget runs hold equal (``regime.full_budget``)."""
    comps = [c for d in datasets if (c := compare(runs, d, "saln", "standard"))]
    out = []
    if (target := paper.claims.get("max_speedup_vs_standard")) is not None:
        out.append(_speedup(float(target), comps, filter_ratio, paper, basis))
    if (target := paper.claims.get("max_acc_gain_vs_standard")) is not None:
        out.append(_gain(float(target), comps, paper, basis))
    return out


def headlines_markdown(rows: list[Headline]) -> str:
    return markdown_table(["claim (abstract)", "the paper's own tables", "measured here", "verdict", "note"],
                          [[h.text, h.paper_shows, h.measured, f"**{h.verdict}**", h.note] for h in rows])
