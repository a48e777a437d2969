"""Where and on what a training run evaluates: the budget grid, the evaluation subsets, and
BatchNorm statistics re-estimated apart from selection.

Equal-cost verdicts compare methods at the same number of images back-propagated. Every run of a
dataset therefore evaluates at one grid of budgets shared by all methods (``budget_grid``), so a
comparison reads two *measured* points instead of a line drawn between epochs.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
from torch import nn


def budget_grid(train_images: int, batch_size: int, keep: int, epochs: int) -> tuple[int, ...]:
    """Images back-propagated at which every run of a dataset evaluates, whatever its method.

    Multiples of lcm(keep, batch_size), so a method keeping ``keep`` images per step and one keeping
    the whole batch both land on each point after a whole number of steps: the first multiple,
    doubling from it, plus the largest multiple at or below each kind of method's final budget
    (every image of ``train_images // batch_size`` batches per epoch, or ``keep`` of each).
    """
    unit = math.lcm(keep, batch_size)
    n_batches = train_images // batch_size
    finals = (n_batches * batch_size * epochs, n_batches * keep * epochs)
    points = {final // unit * unit for final in finals if final >= unit}
    point = unit
    while point <= max(finals):
        points.add(point)
        point *= 2
    return tuple(sorted(points))


def fixed_subset(indices: torch.Tensor, size: int) -> torch.Tensor:
    """At most ``size`` of ``indices`` (all when ``size`` is 0 or larger), the same for every run:
    drawn from a generator of its own with a fixed seed, so every method and seed reads the same images."""
    if size == 0 or len(indices) <= size:
        return indices
    order = torch.randperm(len(indices), generator=torch.Generator().manual_seed(0))
    return indices[order[:size].sort().values.to(indices.device)]


def recalibration_sample(train_split: torch.Tensor, size: int, seed: int) -> torch.Tensor | None:
    """The training images BatchNorm's statistics are re-estimated on (None when off), drawn once from
    a generator of their own, so the draw takes nothing from the streams training reads."""
    if size == 0:
        return None
    order = torch.randperm(len(train_split), generator=torch.Generator().manual_seed(seed))
    return train_split[order[:size].to(train_split.device)]


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@contextlib.contextmanager
def recalibrated_batchnorm(model: nn.Module, batches, forward_context=contextlib.nullcontext):
    """Inside the block, BatchNorm's running statistics are the plain average over ``batches`` (an
    iterable of ready input batches) of the current weights' activations; on exit the training
    statistics, momentum and mode come back exactly, so training goes on as if nothing happened.
    ``forward_context()`` wraps the forward passes (the run's autocast).

    Only BatchNorm layers are in train mode during the pass: dropout and stochastic depth stay off.
    """
    layers = batchnorm_layers(model)
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(), m.momentum)
             for m in layers]
    was_training = model.training
    try:
        model.eval()
        for m in layers:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the sample's batches
            m.train()
        with torch.no_grad(), forward_context():
            for x in batches:
                model(x)
        model.eval()
        yield
    finally:
        for m, (mean, var, count, momentum) in zip(layers, saved):
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.num_batches_tracked.copy_(count)
            m.momentum = momentum
        model.train(was_training)


@dataclass
class EvalPlan:
    """Where a run evaluates and on which images."""

    grid: frozenset[int]  # images back-propagated (besides every epoch's end)
    subsets: dict[str, torch.Tensor]  # val/test indices read by every evaluation but the last
    full: dict[str, torch.Tensor]  # the whole val/test splits, read by the last evaluation
    bn_sample: torch.Tensor | None  # training indices BatchNorm is re-estimated on; None: off

    def splits(self, final: bool) -> dict[str, torch.Tensor]:
        return self.full if final else self.subsets
