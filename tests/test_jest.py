"""JEST, JEST-joint and RHO-LOSS: the sampler's guarantees, the scores, bad input, and no split leakage."""

from __future__ import annotations

import copy
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from saln.augment import AugmentSpec
from saln.data import SplitConfig
from saln.train import TrainConfig
from saln.validate import validate_all
from saln.data import Prepared, make_splits
from saln.errors import SalnError
from saln.reference import load_reference, reference_view, train_reference, ReferenceConfig
from saln.selection import LearnerView, SelectionBatch, build
from saln.selection import jest
from saln.selection.base import top_k
from saln.selection.jest import (chunk_sizes, conditional_logits, jest_options,
                                 joint_sample)

ROOT = Path(__file__).resolve().parents[1]


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_matrix(size: int, seed: int) -> torch.Tensor:
    return torch.randn(size, size, generator=generator(seed), dtype=torch.float64)


# ---------------------------------------------------------------------------------------------
# The sampler


@pytest.mark.parametrize("keep,n_chunks", [(12, 16), (12, 5), (7, 1), (1, 3), (30, 4)])
def test_chunks_cover_keep_evenly_and_are_capped_at_keep(keep, n_chunks):
    sizes = chunk_sizes(keep, n_chunks)
    assert sum(sizes) == keep
    assert len(sizes) == min(n_chunks, keep)
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("size,keep,n_chunks", [(64, 12, 16), (64, 12, 3), (10, 10, 4), (9, 1, 2)])
def test_sampler_returns_exactly_keep_distinct_positions(size, keep, n_chunks):
    for seed in range(5):
        picks = joint_sample(random_matrix(size, seed), keep, n_chunks, generator(seed))
        assert len(picks) == keep
        assert len(set(picks.tolist())) == keep
        assert picks.min() >= 0 and picks.max() < size


def test_sampler_is_deterministic_given_the_seed():
    scores = random_matrix(32, 0)
    first = joint_sample(scores, 8, 4, generator(7))
    assert torch.equal(first, joint_sample(scores, 8, 4, generator(7)))
    others = [joint_sample(scores, 8, 4, generator(s)) for s in range(8, 13)]
    assert any(not torch.equal(first, o) for o in others)


def sequential_inclusion(scores: list[float], keep: int) -> np.ndarray:
    """Exact inclusion probabilities of ``keep`` sequential softmax draws without replacement."""
    weights = np.exp(np.asarray(scores))
    inclusion = np.zeros(len(scores))
    for order in itertools.permutations(range(len(scores)), keep):
        prob, left = 1.0, weights.sum()
        for i in order:
            prob *= weights[i] / left
            left -= weights[i]
        inclusion[list(order)] += prob
    return inclusion


@pytest.mark.parametrize("n_chunks", [1, 2, 3])
def test_diagonal_case_is_sequential_softmax_sampling(n_chunks):
    """Over many draws, inclusion frequencies match the exact ones within 5 binomial standard errors."""
    scores = [2.0, 1.0, 0.5, 0.0, -1.0, -2.0]
    keep, draws = 3, 12000
    expected = sequential_inclusion(scores, keep)
    matrix = torch.diag(torch.tensor(scores, dtype=torch.float64))
    gen = generator(n_chunks)
    counts = np.zeros(len(scores))
    for _ in range(draws):
        counts[joint_sample(matrix, keep, n_chunks, gen).numpy()] += 1
    tolerance = 5 * np.sqrt(expected * (1 - expected) / draws)  # at most 0.023
    assert np.all(np.abs(counts / draws - expected) <= tolerance)
    assert expected.max() - expected.min() > 0.5  # the scores matter far beyond the tolerance


def test_diagonal_conditional_logits_ignore_earlier_picks():
    scores = torch.tensor([0.3, -1.0, 2.0, 0.7], dtype=torch.float64)
    selected = torch.tensor([False, True, False, True])
    logits = conditional_logits(torch.diag(scores), selected)
    assert torch.equal(logits[~selected], scores[~selected])
    assert torch.isinf(logits[selected]).all()


def test_joint_case_later_chunks_follow_earlier_picks():
    """Item 0 or 1 wins the first chunk at random; the second chunk takes that item's partner."""
    matrix = torch.zeros(8, 8, dtype=torch.float64)
    matrix[0, 0] = matrix[1, 1] = 30.0
    matrix[0, 5] = matrix[5, 0] = matrix[1, 6] = matrix[6, 1] = 40.0
    partner = {0: 5, 1: 6}
    firsts = set()
    for seed in range(40):
        first, second = joint_sample(matrix, 2, 2, generator(seed)).tolist()
        firsts.add(first)
        assert second == partner[first]
    assert firsts == {0, 1}
    # The same diagonal without the pair terms: the second chunk takes the other favourite instead.
    for seed in range(10):
        assert set(joint_sample(torch.diag(matrix.diagonal()), 2, 2, generator(seed)).tolist()) == {0, 1}


def test_greedy_is_top_keep_and_the_sampler_limit():
    scores = torch.randn(10, generator=generator(3), dtype=torch.float64)
    keep = 4
    picks = set(top_k(scores, keep).tolist())
    assert picks == set(torch.argsort(scores, descending=True)[:keep].tolist())
    best = max(itertools.combinations(range(10), keep), key=lambda s: float(scores[list(s)].sum()))
    assert picks == set(best)
    sharp = torch.diag(scores * 1e4)  # softmax at a vanishing temperature
    for seed in range(5):
        assert set(joint_sample(sharp, keep, 2, generator(seed)).tolist()) == picks


def test_forward_with_embeddings_leaves_the_logits_alone():
    from saln.backbones import build_model, forward_with_embeddings

    model = build_model("resnet18", "none", 5).eval()
    x = torch.randn(3, 3, 8, 8, generator=generator(0))
    with torch.no_grad():
        logits, embeddings = forward_with_embeddings(model, x)
        assert torch.allclose(logits, model(x))
    assert logits.shape == (3, 5) and embeddings.shape == (3, 512)


# ---------------------------------------------------------------------------------------------
# The selectors on a batch


def make_batch(size: int = 16, keep: int = 4, seed: int = 0, classes: int = 3) -> SelectionBatch:
    gen = generator(seed)
    labels = torch.randint(classes, (size,), generator=gen)
    logits = torch.randn(size, classes, generator=gen) * 3
    embeddings = torch.rand(size, 8, generator=gen)
    n_examples = size + 5
    return SelectionBatch(
        indices=torch.arange(5, 5 + size), labels=labels, keep=keep, generator=generator(seed + 100),
        learner_fn=lambda idx: LearnerView(logits, embeddings),
        reference_loss_table=torch.rand(n_examples, generator=gen) * 2,
        reference_embedding_table=torch.rand(n_examples, 8, generator=gen))


def test_rholoss_takes_top_learnability_and_counts_the_scoring_forward():
    batch = make_batch()
    learnability = (jest.learner_losses(make_batch()) - batch.reference_loss().double())
    picks = build("rholoss").select(batch)
    assert set(picks.tolist()) == set(torch.argsort(learnability, descending=True)[:batch.keep].tolist())
    assert batch.scored == len(batch)


@pytest.mark.parametrize("method", ["jest", "jest_joint"])
@pytest.mark.parametrize("score", jest.SCORES)
def test_jest_selectors_keep_distinct_positions_deterministically(method, score):
    picks = [build(method, score=score, n_chunks=3).select(make_batch(seed=1)) for _ in range(2)]
    assert torch.equal(picks[0], picks[1])
    assert len(set(picks[0].tolist())) == 4
    batch = make_batch(seed=1)
    build(method, score=score, n_chunks=3).select(batch)
    assert batch.scored == len(batch)  # one no-grad forward of the whole super-batch


def test_scores_follow_their_definitions():
    learner, reference = torch.tensor([3.0, 1.0]), torch.tensor([0.5, 2.0])
    assert torch.equal(jest.combine(learner, reference, "learnability"), torch.tensor([2.5, -1.0]))
    assert torch.equal(jest.combine(learner, reference, "hard_learner"), learner)
    assert torch.equal(jest.combine(learner, reference, "easy_reference"), -reference)


def test_joint_matrix_sums_to_the_sub_batch_loss():
    """sum_{i,j in S} M_ij = sum of cross-entropies + each image's mean pair loss within S."""
    gen = generator(4)
    losses, emb = torch.rand(6, generator=gen).double(), torch.rand(6, 5, generator=gen)
    labels = torch.tensor([0, 0, 1, 1, 2, 0])
    keep, subset = 3, [0, 2, 5]
    matrix = jest.joint_loss_matrix(losses, emb, labels, keep)
    pairs = jest.pairwise_sigmoid_loss(emb, labels)
    expected = sum(float(losses[i]) + sum(float(pairs[i, j]) for j in subset if j != i) / (keep - 1)
                   for i in subset)
    assert math.isclose(float(matrix[subset][:, subset].sum()), expected, rel_tol=1e-12)


def test_pair_loss_is_low_for_aligned_positives_and_opposed_negatives():
    emb = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])  # centred: 0,1 vs 2,3
    pairs = jest.pairwise_sigmoid_loss(emb, torch.tensor([0, 0, 0, 1]))
    assert pairs[0, 1] < 1e-3 and pairs[0, 3] < 1e-3  # aligned positive, opposed negative
    assert pairs[2, 3] > 9 and pairs[0, 2] > 9  # aligned negative, opposed positive


# ---------------------------------------------------------------------------------------------
# Bad input: one-line SalnError


def test_non_finite_scores_are_rejected():
    matrix = torch.eye(4, dtype=torch.float64)
    matrix[2, 2] = float("nan")
    with pytest.raises(SalnError, match="non-finite"):
        joint_sample(matrix, 2, 2, generator(0))
    with pytest.raises(SalnError, match="non-finite"):
        top_k(torch.tensor([1.0, float("inf")]), 1)


def test_keep_zero_and_no_chunks_are_rejected():
    with pytest.raises(SalnError, match="at least 1"):
        joint_sample(torch.eye(4), 0, 2, generator(0))
    with pytest.raises(SalnError, match="n_chunks"):
        joint_sample(torch.eye(4), 2, 0, generator(0))
    with pytest.raises(SalnError, match="n_chunks"):
        build("jest", n_chunks=0)
    with pytest.raises(SalnError, match="score"):
        build("jest_joint", score="loudest")


def test_missing_reference_output_is_one_line(tmp_path):
    with pytest.raises(SalnError, match="stage reference") as err:
        load_reference(tmp_path, embeddings=True)
    assert "\n" not in str(err.value)


def repo_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_validate_rejects_jest_without_reference_slice():
    params = repo_params()
    validate_all(params)
    params["data"]["reference_fraction"] = 0.0
    params["train"]["methods"] = {"baselines": ["standard"], "jest": ["rholoss"]}
    with pytest.raises(SalnError, match="reference_fraction"):
        validate_all(params)
    params["train"]["methods"] = {"baselines": ["standard"], "spectral": ["saln"]}
    validate_all(params)  # no method needs a reference model


@pytest.mark.parametrize("key,value", [("n_chunks", 0), ("n_chunks", 2.5), ("score", "loss")])
def test_validate_rejects_bad_jest_block(key, value):
    params = copy.deepcopy(repo_params())
    params["jest"][key] = value
    with pytest.raises(SalnError, match=f"jest.{key}"):
        validate_all(params)
    assert jest_options(repo_params()) == {"score": "learnability", "n_chunks": 16}


# ---------------------------------------------------------------------------------------------
# No split leakage, end to end on a tiny dataset


def tiny_prepared(n: int = 160, classes: int = 3, size: int = 8) -> Prepared:
    rng = np.random.default_rng(0)
    labels = np.arange(n) % classes
    images = rng.integers(0, 60, (n, size, size, 3), dtype=np.uint8)
    images[..., 0] += (labels * 80).astype(np.uint8)[:, None, None]  # a learnable colour cue
    splits = make_splits(labels, None, SplitConfig(val_fraction=0.1, test_fraction=0.2,
                                                   reference_fraction=0.2, seed=0))
    meta = {"num_classes": classes, "sizes": {k: len(v) for k, v in splits.items()}}
    return Prepared(images, labels, splits, meta)


def tiny_spec() -> AugmentSpec:
    return AugmentSpec(resize=8, hflip=0.5, rotation=10, brightness=0.1, contrast=0.1,
                       saturation=0.1, hue=0.05, test_resize=8, test_crop=8)


def tiny_config(**overrides) -> TrainConfig:
    base = dict(epochs=1, batch_size=16, lr=0.01, momentum=0.9, weight_decay=0.0, filter_ratio=0.75,
                eval_batch_size=64, log_batches=(), device="cpu", bf16=False, channels_last=False,
                compile=False, arch="resnet18", weights="none")
    return TrainConfig(**{**base, **overrides})


def test_splits_keep_reference_val_and_test_out_of_the_learners_training():
    prepared = tiny_prepared()
    train = set(prepared.splits["train"].tolist())
    for held_out in ("reference", "val", "test"):
        assert train.isdisjoint(prepared.splits[held_out].tolist()), held_out
    assert len(prepared.splits["reference"]) > 0
    view = reference_view(prepared)  # what the reference model trains on
    assert np.array_equal(view.splits["train"], prepared.splits["reference"])
    assert train.isdisjoint(view.splits["train"].tolist())


def test_reference_then_jest_joint_train_only_on_training_indices(tmp_path, monkeypatch, one_thread):
    """The reference stage scores every example; a jest_joint run only ever sees training indices."""
    from saln import train as train_module
    from saln.train import RunInputs, train_run

    prepared, spec = tiny_prepared(), tiny_spec()
    ref_metrics = train_reference(prepared, spec, tiny_config(),
                                  ReferenceConfig(epochs=1, batch_size=16, lr=0.01, seed=0),
                                  tmp_path / "reference", tmp_path / "reference_run", progress=False)
    losses, embeddings = load_reference(tmp_path / "reference", embeddings=True)
    assert losses.shape == (len(prepared.labels),) and np.isfinite(losses).all()
    # The table holds the same losses the reference run's own test evaluation saw.
    assert math.isclose(losses[prepared.splits["test"]].mean(), ref_metrics["test_loss"], rel_tol=1e-4)
    assert embeddings.shape == (len(prepared.labels), 512)
    # The weights join the cached tables; the run folder keeps only logs (no learner head or selections).
    assert (tmp_path / "reference" / "model.pt").is_file() and ref_metrics["scoring_seconds"] > 0
    assert {p.name for p in (tmp_path / "reference_run").iterdir()} == {"metrics.json", "dvclive"}

    seen = []

    def recording_build(method, **options):
        selector = build(method, **options)
        select = selector.select
        selector.select = lambda batch: (seen.append(batch.indices.clone()), select(batch))[1]
        return selector

    monkeypatch.setattr(train_module, "build", recording_build)
    cfg = tiny_config()
    inputs = RunInputs(prepared, spec, reference_losses=losses, reference_embeddings=embeddings,
                       selector_options={"score": "learnability", "n_chunks": 2})
    metrics = train_run(inputs, cfg, "jest_joint", 0, tmp_path / "run", progress=False)
    steps = len(prepared.splits["train"]) // cfg.batch_size
    assert len(seen) == steps
    assert set(torch.cat(seen).tolist()) <= set(prepared.splits["train"].tolist())
    assert metrics["images_scored"] == steps * cfg.batch_size
    assert metrics["images_backprop"] == steps * cfg.keep
