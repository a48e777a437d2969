"""MaxEnt and Information Density: entropy order on hand-made logits, beta = 0 is MaxEnt, bad beta."""

from __future__ import annotations

import pytest
import torch

from saln.errors import SalnError
from saln.selection import REGISTRY, LearnerView, SelectionBatch, build
from saln.selection.uncertainty import mean_cosine_to_rest, predictive_entropy, uncertainty_options


def make_batch(logits: torch.Tensor, keep: int, features: torch.Tensor | None = None) -> SelectionBatch:
    n = len(logits)
    return SelectionBatch(indices=torch.arange(n), labels=torch.zeros(n, dtype=torch.long), keep=keep,
                          generator=torch.Generator().manual_seed(0), feature_table=features,
                          learner_fn=lambda idx: LearnerView(logits[idx], torch.zeros(len(idx), 4)))


def test_maxent_keeps_the_highest_entropy_logits_and_counts_the_forward():
    logits = torch.tensor([[9.0, 0.0, 0.0],   # confident
                           [0.0, 0.0, 0.0],   # uniform: the most uncertain
                           [2.0, 0.0, 0.0],   # fairly sure
                           [1.0, 1.0, 0.0],   # torn between two classes
                           [0.0, 9.0, 9.0]])  # torn between two classes, sure of neither's rival
    batch = make_batch(logits, keep=3)
    picked = build("maxent").select(batch)
    assert picked.tolist() == [1, 3, 4]
    entropy = predictive_entropy(logits)
    assert entropy[1] == pytest.approx(torch.log(torch.tensor(3.0)).item())
    assert batch.scored == 5


def test_maxent_ties_go_to_the_lower_position():
    logits = torch.tensor([[5.0, 0.0], [0.0, 0.0], [3.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    assert build("maxent").select(make_batch(logits, keep=2)).tolist() == [1, 3]


@pytest.mark.parametrize("seed", range(5))
def test_infodensity_with_beta_zero_is_maxent(seed):
    g = torch.Generator().manual_seed(seed)
    logits, features = torch.randn(64, 10, generator=g) * 3, torch.rand(64, 32, generator=g)
    maxent = build("maxent").select(make_batch(logits, keep=12))
    infodensity = build("infodensity", beta=0.0).select(make_batch(logits, keep=12, features=features))
    assert torch.equal(maxent, infodensity)


def test_infodensity_prefers_the_representative_of_two_equally_uncertain_images():
    logits = torch.tensor([[0.0, 0.0], [0.0, 0.0], [4.0, 0.0], [4.0, 0.0]])
    features = torch.tensor([[0.0, 1.0], [1.0, 0.05], [1.0, 0.0], [1.0, 0.1]])  # image 0 is the outlier
    assert build("maxent").select(make_batch(logits, keep=1)).tolist() == [0]
    assert build("infodensity", beta=1.0).select(make_batch(logits, keep=1, features=features)).tolist() == [1]


def test_density_is_the_mean_cosine_to_the_rest_of_the_batch():
    features = torch.rand(9, 5, generator=torch.Generator().manual_seed(0)).double()
    unit = features / features.norm(dim=1, keepdim=True)
    cosine = unit @ unit.T
    expected = (cosine.sum(dim=1) - cosine.diagonal()) / 8
    torch.testing.assert_close(mean_cosine_to_rest(features), expected)


def test_selectors_are_registered_with_what_they_need():
    assert not REGISTRY["maxent"].needs_features
    assert REGISTRY["infodensity"].needs_features


def test_negative_beta_is_one_line_error(params):
    with pytest.raises(SalnError, match="uncertainty.beta"):
        build("infodensity", beta=-0.5)
    params["uncertainty"] = {"beta": -1}
    with pytest.raises(SalnError, match="uncertainty.beta must be a finite number >= 0"):
        uncertainty_options(params)
    params["uncertainty"] = {"beta": 2}
    assert uncertainty_options(params) == {"beta": 2}
