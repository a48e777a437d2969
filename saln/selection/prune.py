"""Training on a prototype-pruned dataset (stage prune) as methods of the train matrix.

Pruning chooses examples once, before training, so in-batch these methods keep every image
(like ``standard``, ignoring filter_ratio); what differs is the training split itself. The
``train_subset`` class attribute names the array of data/prune/<dataset>/keep.npz that the train
stage substitutes for the training split (saln.prune.load_kept).
"""

from __future__ import annotations

from typing import ClassVar

from saln.selection.baselines import Standard
from saln.selection.registry import register


class _PrunedSubset(Standard):
    train_subset: ClassVar[str] = ""  # easy | hard | auto: a key of keep.npz


@register("prune_easy")
class PruneEasy(_PrunedSubset):
    """The whole batch, drawn from the examples closest to their k-means centroid."""

    train_subset = "easy"


@register("prune_hard")
class PruneHard(_PrunedSubset):
    """The whole batch, drawn from the examples farthest from their k-means centroid."""

    train_subset = "hard"


@register("prune_auto")
class PruneAuto(_PrunedSubset):
    """The whole batch, drawn from easy examples when few are kept and hard ones when many are."""

    train_subset = "auto"
