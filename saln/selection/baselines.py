"""Selectors that ignore content: the whole batch, and the random-subset control."""

import torch

from saln.selection.base import SelectionBatch, Selector
from saln.selection.registry import register


@register("standard")
class Standard(Selector):
    """Train on every image of the batch (the paper's baseline); ignores filter_ratio."""

    keeps_whole_batch = True

    def select(self, batch: SelectionBatch) -> torch.Tensor:
        return torch.arange(len(batch), device=batch.indices.device)


@register("random")
class RandomSubset(Selector):
    """A uniform random ``keep``-subset of the batch: the control at SALN's keep ratio."""

    def select(self, batch: SelectionBatch) -> torch.Tensor:
        order = torch.randperm(len(batch), generator=batch.generator, device=batch.generator.device)
        return order[: batch.keep].to(batch.indices.device)
