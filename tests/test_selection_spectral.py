"""SALN follows the paper's Algorithm 1 exactly; the baselines keep what they promise."""

import numpy as np
import pytest
import torch

from saln.selection import REGISTRY, SelectionBatch, build
from saln.selection.base import top_k
from saln.selection.spectral import fiedler_vector


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
    assert {"standard", "random", "saln"} <= set(REGISTRY)
    with pytest.raises(KeyError, match="unknown method"):
        build("nope")
