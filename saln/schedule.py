"""How long a run trains and at what rate: its budget in optimizer steps and its rate schedule.

Budget (``train.budget``):

* ``epochs``: every method makes ``train.epochs`` passes over the training split (the paper's
  reading), so a selector keeping ``keep`` of each batch back-propagates keep / B of standard's images;
* ``images``: every method back-propagates the images standard does in ``train.epochs`` passes,
  so a selector makes about B / keep times more passes (the last one may stop mid-way).

Each pass is shuffled by the run's shuffle generator, so pass p has the same order for every method
of a seed. A budget fraction f (``budget_fraction``) scales either budget: the run's schedule then
completes at f of it, which is what "the method budgeted for f" means (never a point read in the
middle of a longer run).

Schedule (``train.schedule``), a multiplier of the base rate at each step, a function of the step
number and the run's own total alone (so a resumed run needs no state beyond its step count):

* ``constant``: 1;
* ``linear``: decays linearly, reaching 0 after the run's last step (Li et al. 2020's budgeted
  training: the schedule that does best when it ends with the budget; the default);
* ``cosine``: half a cosine from 1 to 0 over the same steps;

both after an optional linear warm-up over the first ``train.warmup`` share of the steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from saln.config import number, require
from saln.errors import SalnError

BUDGETS = ("epochs", "images")
SCHEDULES = ("constant", "linear", "cosine")


@dataclass(frozen=True)
class Budget:
    """What a run trains for: its kind, fraction of it, and the steps that makes."""

    kind: str  # epochs | images
    fraction: float  # of the budget; 1 = the whole of it
    steps: int  # optimizer steps of this run
    images: int  # images back-propagated when every step keeps ``per_step``
    passes: float  # steps / batches per pass


def run_budget(kind: str, fraction: float, epochs: int, batches_per_pass: int, batch_size: int,
               per_step: int) -> Budget:
    """The steps of a run keeping ``per_step`` images per step (B for standard, keep for a selector)."""
    if kind == "epochs":
        steps = max(1, round(fraction * epochs * batches_per_pass))
    else:  # standard's images in ``epochs`` passes, at ``per_step`` images a step (rounded up)
        target = fraction * epochs * batches_per_pass * batch_size
        steps = max(1, math.ceil(target / per_step - 1e-9))
    return Budget(kind, fraction, steps, steps * per_step, steps / batches_per_pass)


def rate_factor(schedule: str, step: int, total: int, warmup: float) -> float:
    """The multiplier of the base rate for step ``step`` (0-based) of ``total``."""
    if schedule == "constant":
        return 1.0
    warm = round(warmup * total)
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(total - warm, 1)
    if schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def budget_fractions(train: dict) -> list[float]:
    """``train.budget_fractions``: distinct shares of the budget in (0, 1], 1.0 among them (the run
    the summaries and the rate choice read)."""
    fractions = require(train, "budget_fractions", "train")
    if not isinstance(fractions, list) or not fractions:
        raise SalnError(f"train.budget_fractions must be a non-empty list of shares in (0, 1], e.g. [0.1875, 1.0], "
                        f"got {fractions!r}")
    for i in range(len(fractions)):
        number(dict(enumerate(fractions)), i, "train.budget_fractions", lo=0, lo_open=True, hi=1)
    if len(set(fractions)) != len(fractions):
        raise SalnError(f"train.budget_fractions lists a share more than once: {fractions}")
    if 1.0 not in fractions:
        raise SalnError(f"train.budget_fractions must include 1.0 (the full budget), got {fractions}")
    return [float(f) for f in fractions]


def schedule_settings(train: dict) -> tuple[str, str, float]:
    """(budget, schedule, warmup) from params.yaml's ``train`` block, validated."""
    budget, schedule = require(train, "budget", "train"), require(train, "schedule", "train")
    if budget not in BUDGETS:
        raise SalnError(f"train.budget must be one of {', '.join(BUDGETS)}, got {budget!r}")
    if schedule not in SCHEDULES:
        raise SalnError(f"train.schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    warmup = number(train, "warmup", "train", lo=0, hi=1, hi_open=True)
    if warmup > 0 and schedule == "constant":
        raise SalnError("train.warmup > 0 needs a decaying train.schedule (linear or cosine), not constant")
    return budget, schedule, warmup
