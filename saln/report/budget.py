"""Equal-cost comparisons: two methods' per-epoch curves read at one budget of epochs, images
back-propagated or training seconds.

For a pair (A, B) the budget is min(final cost of A, final cost of B), where a method's final cost is
the smallest final cost over its seeds (so no seed is extrapolated). Each seed's curve is interpolated
linearly in cost at the budget; the values are then aggregated over seeds (mean, sample std, n). A seed
whose curve starts above the budget (an old run without the epoch-0 row) is left out and counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from saln.report.compare import diff_se
from saln.report.history import History
from saln.report.runs import Stat, stat

COSTS = {"epoch": "epochs", "images_backprop": "images back-propagated", "train_seconds": "training seconds"}
EPS = 1e-9


@dataclass(frozen=True)
class AtBudget:
    cost: str          # a key of COSTS
    metric: str        # the curve read at the budget
    budget: float
    a: Stat
    b: Stat
    left_out: tuple[int, int]   # seeds of A, B whose curve does not reach down to the budget

    @property
    def diff(self) -> float:
        return self.a.mean - self.b.mean

    @property
    def se(self) -> float:
        return diff_se(self.a, self.b)


def value_at(x: np.ndarray, y: np.ndarray, budget: float) -> float | None:
    """y interpolated linearly in x at ``budget``; None outside the logged range."""
    if not len(x) or budget < x[0] - EPS or budget > x[-1] + EPS:
        return None
    return float(np.interp(budget, x, y))


def _finals(histories: list[History], cost: str, metric: str) -> list[float]:
    return [float(x[-1]) for h in histories if len(x := h.series(cost, metric)[0])]


def at_budget(hist_a: list[History], hist_b: list[History], cost: str, metric: str) -> AtBudget | str:
    """A and B at the budget, or one line saying why they cannot be compared there."""
    finals_a, finals_b = _finals(hist_a, cost, metric), _finals(hist_b, cost, metric)
    if not finals_a or not finals_b:
        return f"no per-epoch {metric} against {COSTS[cost]} logged"
    budget = min(min(finals_a), min(finals_b))
    values, left_out = [], []
    for histories in (hist_a, hist_b):
        curves = [h.series(cost, metric) for h in histories]
        curves = [(x, y) for x, y in curves if len(x)]
        read = [v for x, y in curves if (v := value_at(x, y, budget)) is not None]
        values.append(read)
        left_out.append(len(curves) - len(read))
    if not values[0] or not values[1]:
        return (f"at the common budget of {budget:g} {COSTS[cost]} no seed of "
                f"{'the method' if not values[0] else 'the baseline'} has a logged point at or below it "
                "(runs without the epoch-0 row)")
    return AtBudget(cost, metric, budget, stat(values[0]), stat(values[1]), (left_out[0], left_out[1]))
