"""The selector interface: given one training batch, say which of its images to train on."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import torch

from saln.errors import SalnError


@dataclass
class LearnerView:
    """What a no-grad forward of the current learner gives for a batch (computed once, on demand)."""

    logits: torch.Tensor  # B x C, float32
    embeddings: torch.Tensor  # B x D penultimate features, float32


@dataclass
class SelectionBatch:
    """One training batch as a selector sees it. Everything lives on the training device.

    ``features`` and ``learner`` are lazy: a selector that never asks for the learner's view
    costs no forward pass, and the batch counts the images it scored when one does.
    """

    indices: torch.Tensor  # B dataset indices (long)
    labels: torch.Tensor  # B labels (long)
    keep: int  # how many images to return
    generator: torch.Generator  # the run's seeded generator, on the training device
    feature_table: torch.Tensor | None = None  # N x D precomputed features, row = dataset index
    learner_fn: Callable[[torch.Tensor], LearnerView] | None = None
    reference_loss_table: torch.Tensor | None = None  # N reference losses, row = dataset index
    reference_embedding_table: torch.Tensor | None = None  # N x D reference-model embeddings
    scored: int = 0  # images forwarded without gradient for this batch's selection
    _learner: LearnerView | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.indices)

    def features(self) -> torch.Tensor:
        if self.feature_table is None:
            raise RuntimeError("this selector needs precomputed features (stage features)")
        return self.feature_table[self.indices]

    def learner(self) -> LearnerView:
        if self._learner is None:
            if self.learner_fn is None:
                raise RuntimeError("this selector needs the learner, which the loop did not provide")
            self._learner = self.learner_fn(self.indices)
            self.scored += len(self.indices)
        return self._learner

    def reference_loss(self) -> torch.Tensor:
        if self.reference_loss_table is None:
            raise RuntimeError("this selector needs reference losses (stage reference)")
        return self.reference_loss_table[self.indices]

    def reference_embeddings(self) -> torch.Tensor:
        if self.reference_embedding_table is None:
            raise RuntimeError("this selector needs reference embeddings (stage reference)")
        return self.reference_embedding_table[self.indices]


def top_k(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Positions of the ``keep`` largest scores; equal scores go to the lower position.

    Every score-ranking selector uses this, so ties resolve the same way everywhere and a
    diverged learner (non-finite scores) stops the run instead of choosing arbitrarily.
    """
    if keep < 1:
        raise SalnError(f"a selector must keep at least 1 image, got {keep}")
    return torch.sort(check_finite(scores), descending=True, stable=True).indices[:keep]


def check_finite(scores: torch.Tensor) -> torch.Tensor:
    """Selection scores, refused when any is non-finite (a diverged learner or corrupt inputs)."""
    if not bool(torch.isfinite(scores).all()):
        raise SalnError("non-finite selection scores: the learner diverged (lower train.lr) or the "
                        "reference losses are corrupt (re-run stage reference)")
    return scores


class Selector(ABC):
    """Picks ``batch.keep`` positions of a batch. Subclasses register under a method name.

    ``needs_features``: the train stage loads precomputed features for it. Selectors that only use
    indices or features choose before the batch is augmented, so dropped images cost nothing.
    ``needs_reference`` / ``needs_reference_embeddings``: the train stage loads the reference
    model's per-example losses / penultimate embeddings (stage reference) for it.
    """

    name: ClassVar[str] = ""
    needs_features: ClassVar[bool] = False
    needs_reference: ClassVar[bool] = False
    needs_reference_embeddings: ClassVar[bool] = False
    train_subset: ClassVar[str] = ""  # non-empty: the run trains on this subset of stage prune
    keeps_whole_batch: ClassVar[bool] = False  # True: every step trains on all B (budgets count B a step)

    @classmethod
    def options_from_params(cls, params: dict) -> dict:
        """This selector's keyword options, read and validated from params.yaml (none by default)."""
        return {}

    def __init__(self, **options):
        self.options = options

    @abstractmethod
    def select(self, batch: SelectionBatch) -> torch.Tensor:
        """Return a long tensor of ``batch.keep`` distinct positions in [0, len(batch))."""
