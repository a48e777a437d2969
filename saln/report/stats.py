"""Paired comparisons over seeds: a Student-t 95% interval of the mean per-seed difference, and Holm's
correction over a table's secondary cells.

Runs of one seed share the learner's initialisation and every epoch's batch order whatever the method
(saln.train: the shuffle has its own generator), so method A and method B are compared seed by seed:
d_i = A_i - B_i, mean d, interval mean ± t(0.975, n - 1) · s_d / √n. A verdict is a win or a loss only
when the interval excludes 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats as scipy_stats

WIN, LOSS, TIE = "win", "loss", "tie"
CONFIDENCE, ALPHA = 0.95, 0.05


@dataclass(frozen=True)
class Paired:
    """Mean per-seed difference of A minus B with its 95% interval and two-sided p-value."""

    mean: float
    low: float
    high: float
    p: float
    n: int

    @property
    def outcome(self) -> str:
        """WIN / LOSS when the interval excludes 0, else TIE (always TIE with one seed: no interval)."""
        if self.n < 2:
            return TIE
        return WIN if self.low > 0 else LOSS if self.high < 0 else TIE

    def format(self, unit: str, digits: int = 2) -> str:
        if self.n < 2:
            return f"{self.mean:+.{digits}f} {unit} (n=1: no interval)"
        return (f"{self.mean + 0.0:+.{digits}f} {unit} [{self.low + 0.0:+.{digits}f}, "
                f"{self.high + 0.0:+.{digits}f}] (n={self.n})")


def paired(a: dict[int, float], b: dict[int, float]) -> Paired | None:
    """A vs B over the seeds both have (seed -> value); None when they share none."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    diffs = [a[s] - b[s] for s in seeds]
    n = len(diffs)
    mean = sum(diffs) / n
    if n < 2:
        return Paired(mean, math.nan, math.nan, math.nan, n)
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    if sd == 0:  # identical differences: the interval is the point itself
        return Paired(mean, mean, mean, 0.0 if mean else 1.0, n)
    se = sd / math.sqrt(n)
    half = scipy_stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * se
    p = 2 * scipy_stats.t.sf(abs(mean) / se, n - 1)
    return Paired(mean, mean - half, mean + half, float(p), n)


def holm(p_values: list[float], alpha: float = ALPHA) -> list[bool]:
    """Holm's step-down: which hypotheses are rejected at family-wise level ``alpha`` (NaN: never)."""
    order = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    rejected = [False] * len(p_values)
    m = len(order)
    for rank, (p, i) in enumerate(order):
        if p > alpha / (m - rank):
            break
        rejected[i] = True
    return rejected


def holm_outcome(result: Paired, rejected: bool) -> str:
    """A secondary cell's verdict: its interval's side, kept only when Holm rejects the null."""
    return result.outcome if rejected else TIE
