"""SALN: the paper's Algorithm 1, spectral selection on a batch's precomputed features."""

import torch

from saln.selection.base import SelectionBatch, Selector, top_k
from saln.selection.registry import register


def fiedler_vector(features: torch.Tensor) -> torch.Tensor:
    """Eigenvector of the second-smallest eigenvalue of L = D - S, S = cosine similarity.

    Computed in float64: on real features the vector is localised on a few images, and the
    order of the rest rests on values near machine precision in float32.
    """
    x = torch.nn.functional.normalize(features.double(), dim=1)
    similarity = x @ x.T
    laplacian = torch.diag(similarity.sum(dim=1)) - similarity
    _, vectors = torch.linalg.eigh(laplacian)  # eigenvalues ascending
    return vectors[:, 1]


@register("saln")
class Spectral(Selector):
    """Keep the ``keep`` images whose Fiedler-vector entries are largest in magnitude.

    A batch of fewer than 2 images has no Fiedler vector; the training loop never produces one
    (it drops the last partial batch and requires keep >= 2), and here such a batch is kept whole.
    """

    needs_features = True

    def select(self, batch: SelectionBatch) -> torch.Tensor:
        if len(batch) < 2:
            return torch.arange(len(batch), device=batch.indices.device)
        return top_k(fiedler_vector(batch.features()).abs(), batch.keep)
