"""In-batch uncertainty selection: keep the images the current learner is least sure about.

* ``maxent``: the ``keep`` images of highest predictive entropy -sum_c p_c log p_c, from one
  no-grad forward of the learner on the batch (``batch.learner()``, counted as scored).
* ``infodensity``: entropy x density ** beta, where density is an image's mean cosine similarity
  (precomputed features) to the rest of the batch: uncertain AND representative, so outliers
  that are uncertain only because they are odd rank lower (Settles and Craven, 2008).

Both keep the top scores; equal scores go to the lower position (stable sort), as in ``saln``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from saln.config import require
from saln.errors import SalnError
from saln.selection.base import SelectionBatch, Selector, top_k
from saln.selection.registry import register

DEFAULT_BETA = 1.0


def uncertainty_options(params: dict) -> dict:
    """The ``uncertainty`` block of params.yaml, validated: keyword options of ``infodensity``."""
    return {"beta": check_beta(require(require(params, "uncertainty", "params"), "beta", "uncertainty"))}


def check_beta(beta) -> float:
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 <= beta < math.inf:
        raise SalnError(f"uncertainty.beta must be a finite number >= 0, got {beta!r}")
    return float(beta)


def predictive_entropy(logits: torch.Tensor) -> torch.Tensor:
    """-sum p log p per row, in float64 (log_softmax keeps saturated rows finite; 0 log 0 = 0).
    Log-probabilities are logits too: their softmax is the probabilities themselves."""
    log_p = F.log_softmax(logits.double(), dim=1)
    p = log_p.exp()
    return -torch.where(p > 0, p * log_p, 0.0).sum(dim=1)


def mean_cosine_to_rest(features: torch.Tensor) -> torch.Tensor:
    """Each row's mean cosine similarity to the other rows: u_i . (sum_j u_j - u_i) / (n - 1).

    The sum trick is exact and costs O(n d) instead of the n x n similarity matrix. Clamped at 0
    so that density ** beta stays real; pooled ResNet features are non-negative anyway.
    """
    n = len(features)
    if n < 2:
        return torch.ones(n, dtype=torch.float64, device=features.device)
    unit = F.normalize(features.double(), dim=1)
    rest = unit.sum(dim=0, keepdim=True) - unit
    return ((unit * rest).sum(dim=1) / (n - 1)).clamp_min(0.0)


def information_density(entropy: torch.Tensor, density: torch.Tensor, beta: float) -> torch.Tensor:
    """entropy x density ** beta; beta = 0 gives the entropy itself (0 ** 0 = 1)."""
    return entropy * density.pow(beta)


@register("maxent")
class MaxEntropy(Selector):
    """Keep the ``keep`` images of highest predictive entropy under the current learner."""

    def select(self, batch: SelectionBatch) -> torch.Tensor:
        return top_k(predictive_entropy(batch.learner().logits), batch.keep)


@register("infodensity")
class InformationDensity(Selector):
    """Keep the ``keep`` images of highest entropy x (mean cosine similarity to the batch) ** beta."""

    needs_features = True

    @classmethod
    def options_from_params(cls, params: dict) -> dict:
        return uncertainty_options(params)

    def __init__(self, beta: float = DEFAULT_BETA, **options):
        super().__init__(beta=beta, **options)
        self.beta = check_beta(beta)

    def select(self, batch: SelectionBatch) -> torch.Tensor:
        entropy = predictive_entropy(batch.learner().logits)
        density = mean_cosine_to_rest(batch.features()).to(entropy.device)
        return top_k(information_density(entropy, density, self.beta), batch.keep)
