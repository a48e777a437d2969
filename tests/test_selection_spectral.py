"""SALN follows the paper's Algorithm 1 exactly; the baselines keep what they promise."""

import numpy as np
import pytest
import torch

from saln.errors import SalnError
from saln.selection import REGISTRY, SelectionBatch, build
from saln.selection.base import top_k
from saln.selection.spectral import (PAPER, Spectral, fiedler_vector, laplacian_matrix, oriented, ranking_scores,
                                     similarity_matrix)


def algorithm_1_numpy(features: np.ndarray, keep: int) -> np.ndarray:
    """The paper's Algorithm 1, written directly in numpy as the reference."""
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    similarity = unit @ unit.T
    laplacian = np.diag(similarity.sum(axis=1)) - similarity
    _, vectors = np.linalg.eigh(laplacian)
    fiedler = vectors[:, 1]
    return np.argsort(-np.abs(fiedler), kind="stable")[:keep]


def make_batch(features: torch.Tensor, keep: int, seed: int = 0) -> SelectionBatch:
    n = len(features)
    return SelectionBatch(indices=torch.arange(n), labels=torch.zeros(n, dtype=torch.long), keep=keep,
                          generator=torch.Generator().manual_seed(seed), feature_table=features)


@pytest.mark.parametrize("seed", range(5))
def test_saln_matches_numpy_algorithm_1_on_random_features(seed):
    features = torch.randn(64, 32, generator=torch.Generator().manual_seed(seed)).abs()
    chosen = build("saln").select(make_batch(features, 12))
    np.testing.assert_array_equal(chosen.numpy(), algorithm_1_numpy(features.double().numpy(), 12))


def test_saln_matches_numpy_algorithm_1_on_real_cifar_features(cifar_subset_path):
    """Real images through a ResNet-50: the Fiedler vector is localised, the order still agrees."""
    import torchvision

    x = np.load(cifar_subset_path)["x_train"][:256]
    images = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255
    torch.manual_seed(0)
    backbone = torchvision.models.resnet50()
    backbone.fc = torch.nn.Identity()
    with torch.no_grad():
        features = torch.cat([backbone.eval()(images[i:i + 64]) for i in range(0, 256, 64)])
    for start in range(0, 256, 64):
        batch = features[start:start + 64]
        chosen = build("saln").select(make_batch(batch, 12))
        assert len(chosen) == 12 == len(set(chosen.tolist()))
        np.testing.assert_array_equal(chosen.numpy(), algorithm_1_numpy(batch.double().numpy(), 12))


def test_fiedler_vector_splits_two_clusters():
    a, b = torch.tensor([1.0, 0.05]), torch.tensor([0.05, 1.0])
    features = torch.stack([a] * 5 + [b] * 5) + 0.01 * torch.randn(10, 2, generator=torch.Generator().manual_seed(0))
    signs = torch.sign(fiedler_vector(features))
    assert len(set(signs[:5].tolist())) == 1 and len(set(signs[5:].tolist())) == 1
    assert signs[0] != signs[5]


def test_ties_go_to_the_lower_position():
    values = torch.tensor([0.5, -0.9, 0.9, 0.1, -0.5], dtype=torch.float64)
    assert top_k(values.abs(), 3).tolist() == [1, 2, 0]


def test_saln_is_deterministic_and_keeps_whole_tiny_batches():
    features = torch.randn(16, 8, generator=torch.Generator().manual_seed(1))
    first = build("saln").select(make_batch(features, 5))
    assert torch.equal(first, build("saln").select(make_batch(features, 5)))
    assert build("saln").select(make_batch(features[:1], 1)).tolist() == [0]


def test_random_keeps_a_seeded_uniform_subset():
    features = torch.zeros(64, 4)
    picks = [build("random").select(make_batch(features, 12, seed=s)) for s in (0, 0, 1)]
    assert torch.equal(picks[0], picks[1]) and not torch.equal(picks[0], picks[2])
    assert len(set(picks[0].tolist())) == 12
    counts = torch.zeros(64)
    gen = torch.Generator().manual_seed(3)
    for _ in range(2000):
        batch = make_batch(features, 12)
        batch.generator = gen
        counts[build("random").select(batch)] += 1
    assert (counts / 2000 - 12 / 64).abs().max() < 0.05  # each image kept 12/64 of the time


def test_standard_keeps_everything_and_registry_is_explicit():
    assert build("standard").select(make_batch(torch.zeros(7, 2), 2)).tolist() == list(range(7))
    assert {"standard", "random", "saln", "saln_normalized", "saln_knn", "saln_inverse"} <= set(REGISTRY)
    with pytest.raises(KeyError, match="unknown method"):
        build("nope")


# ---------------------------------------------------------------------------------------------
# The saln block: graph variants as params, and the named variants


PAPER_BLOCK = {"laplacian": "unnormalized", "graph": "dense", "knn_k": 10, "center": False, "ranking": "magnitude"}


def test_the_saln_block_defaults_to_the_paper():
    assert Spectral.options_from_params({"saln": PAPER_BLOCK}) == PAPER.as_dict() == build("saln").spec.as_dict()
    features = torch.randn(64, 32, generator=torch.Generator().manual_seed(7)).abs()
    chosen = build("saln", **Spectral.options_from_params({"saln": PAPER_BLOCK})).select(make_batch(features, 12))
    np.testing.assert_array_equal(chosen.numpy(), algorithm_1_numpy(features.double().numpy(), 12))


@pytest.mark.parametrize("key, value, message", [
    ("laplacian", "random_walk", "saln.laplacian must be one of unnormalized, normalized, got 'random_walk'"),
    ("graph", "sparse", "saln.graph must be one of dense, knn, got 'sparse'"),
    ("knn_k", 0, "saln.knn_k must be >= 1, got 0"),
    ("knn_k", 2.5, "saln.knn_k must be an integer, got 2.5"),
    ("center", "yes", "saln.center must be true or false, got 'yes'"),
    ("ranking", "largest", "saln.ranking must be one of magnitude, signed, inverse, got 'largest'"),
])
def test_bad_saln_values_give_one_line_errors(key, value, message):
    with pytest.raises(SalnError) as err:
        Spectral.options_from_params({"saln": {**PAPER_BLOCK, key: value}})
    assert str(err.value) == message and "\n" not in message


def test_missing_or_conflicting_saln_keys_give_one_line_errors():
    with pytest.raises(SalnError, match=r"^params.saln is missing from params.yaml$"):
        Spectral.options_from_params({})
    with pytest.raises(SalnError, match=r"^saln.ranking is missing from params.yaml$"):
        Spectral.options_from_params({"saln": {k: v for k, v in PAPER_BLOCK.items() if k != "ranking"}})
    with pytest.raises(SalnError, match="needs positive degrees"):
        Spectral.options_from_params({"saln": {**PAPER_BLOCK, "laplacian": "normalized", "center": True}})
    with pytest.raises(SalnError, match="saln.graph must be one of"):
        build("saln", graph="full")


def test_normalized_laplacian_is_i_minus_d_half_s_d_half():
    features = torch.rand(9, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    s = similarity_matrix(features).numpy()
    d = s.sum(axis=1)
    expected = np.eye(9) - s / np.sqrt(np.outer(d, d))
    np.testing.assert_allclose(laplacian_matrix(torch.from_numpy(s), "normalized").numpy(), expected, atol=1e-12)
    with pytest.raises(SalnError, match="negative degree"):
        laplacian_matrix(torch.tensor([[1.0, -3.0], [-3.0, 1.0]], dtype=torch.float64), "normalized")


def test_center_subtracts_the_batch_mean_before_the_cosine():
    features = torch.rand(8, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) + 5
    centred = features - features.mean(dim=0)
    np.testing.assert_allclose(similarity_matrix(features, center=True).numpy(),
                               similarity_matrix(centred).numpy(), atol=1e-12)
    assert (similarity_matrix(features, center=True) < 0).any() and (similarity_matrix(features) > 0.9).all()


def test_signed_ranking_fixes_the_sign_and_keeps_one_side_of_the_cut():
    a, b = torch.tensor([1.0, 0.05]), torch.tensor([0.05, 1.0])
    features = torch.stack([a] * 5 + [b] * 6) + 0.01 * torch.rand(11, 2, generator=torch.Generator().manual_seed(0))
    v = fiedler_vector(features)
    assert torch.equal(oriented(v), oriented(-v)) and oriented(v)[oriented(v).abs().argmax()] > 0
    chosen = build("saln", ranking="signed").select(make_batch(features, 5)).tolist()
    side = torch.sign(oriented(v))
    assert len({float(side[i]) for i in chosen}) == 1  # all from the positive side
    assert set(chosen) <= set(range(5)) or set(chosen) <= set(range(5, 11))  # one cluster: one side of the cut


def test_inverse_ranking_keeps_the_smallest_entries_ties_to_the_lower_position():
    assert top_k(ranking_scores(torch.tensor([0.5, -0.1, 0.1, 0.9], dtype=torch.float64), "inverse"),
                 2).tolist() == [1, 2]


@pytest.mark.parametrize("method, options, field, value", [
    ("saln_normalized", {"laplacian": "unnormalized"}, "laplacian", "normalized"),
    ("saln_knn", {"graph": "dense"}, "graph", "knn"),
    ("saln_inverse", {"ranking": "magnitude"}, "ranking", "inverse"),
])
def test_named_variants_force_their_one_option(method, options, field, value):
    selector = build(method, **{**PAPER_BLOCK, **options})
    assert getattr(selector.spec, field) == value and selector.options[field] == value
    others = {k: v for k, v in selector.spec.as_dict().items() if k != field}
    assert others == {k: v for k, v in PAPER.as_dict().items() if k != field}
    assert isinstance(selector, Spectral) and REGISTRY[method].needs_features


@pytest.mark.parametrize("method, options", [
    ("saln_normalized", {}), ("saln_knn", {}), ("saln_inverse", {}),
    ("saln", {"center": True}), ("saln", {"ranking": "signed"}), ("saln", {"graph": "knn", "knn_k": 3}),
])
def test_each_variant_changes_the_selection_on_some_batch(method, options):
    changed = 0
    for seed in range(10):
        features = torch.rand(64, 32, generator=torch.Generator().manual_seed(seed))
        paper = build("saln").select(make_batch(features, 12))
        variant = build(method, **options).select(make_batch(features, 12))
        assert len(set(variant.tolist())) == 12
        changed += not torch.equal(torch.sort(paper).values, torch.sort(variant).values)
    assert changed > 0
