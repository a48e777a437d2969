"""SALN: the paper's Algorithm 1, spectral selection on a batch's precomputed features, and its variants.

The paper's form (the default of every option): S = cosine similarity of the batch's features (used as
is, negative entries and the unit diagonal included), L = D - S, keep the images whose entries of the
Fiedler vector (the eigenvector of L's second-smallest eigenvalue) are largest in magnitude.

The ``saln`` block of params.yaml changes one piece at a time:

* ``laplacian``: ``unnormalized`` (L = D - S, the paper) | ``normalized`` (I - D^-1/2 S D^-1/2);
* ``graph``: ``dense`` (S itself, the paper) | ``knn`` (each image joined to its ``knn_k`` most
  cosine-similar others, symmetrised by union; weights are the cosines, clamped at 0; no self-loops);
* ``center``: features centred on the batch mean before the cosine (default false, the paper);
* ``ranking``: ``magnitude`` (largest |entries|, the paper) | ``signed`` (largest signed entries, one
  side of the cut, after orienting the vector so its largest-|.| entry is positive) | ``inverse``
  (smallest |entries|: the control).

Everything is float64 and ranks go through ``base.top_k`` (equal scores: lower position first).
``fiedler_vector``, ``similarity_matrix`` and ``spectrum`` are the one implementation the
diagnostics (saln/diagnostics.py) use as well.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from saln.config import number, require
from saln.errors import SalnError
from saln.selection.base import SelectionBatch, Selector, top_k
from saln.selection.registry import register

LAPLACIANS = ("unnormalized", "normalized")
GRAPHS = ("dense", "knn")
RANKINGS = ("magnitude", "signed", "inverse")
DEFAULT_KNN_K = 10


@dataclass(frozen=True)
class SpectralOptions:
    """One SALN graph and ranking; the defaults are the paper's Algorithm 1."""

    laplacian: str = "unnormalized"
    graph: str = "dense"
    knn_k: int = DEFAULT_KNN_K
    center: bool = False
    ranking: str = "magnitude"

    def as_dict(self) -> dict:
        return asdict(self)


PAPER = SpectralOptions()


def _one_of(value, choices: tuple[str, ...], key: str) -> str:
    if value not in choices:
        raise SalnError(f"saln.{key} must be one of {', '.join(choices)}, got {value!r}")
    return value


def check_options(laplacian: str = PAPER.laplacian, graph: str = PAPER.graph, knn_k: int = PAPER.knn_k,
                  center: bool = PAPER.center, ranking: str = PAPER.ranking) -> SpectralOptions:
    """Validated options; every bad value is one line naming its ``saln.*`` key."""
    _one_of(laplacian, LAPLACIANS, "laplacian")
    _one_of(graph, GRAPHS, "graph")
    _one_of(ranking, RANKINGS, "ranking")
    if isinstance(knn_k, bool) or not isinstance(knn_k, int) or knn_k < 1:
        raise SalnError(f"saln.knn_k must be an integer >= 1, got {knn_k!r}")
    if not isinstance(center, bool):
        raise SalnError(f"saln.center must be true or false, got {center!r}")
    if laplacian == "normalized" and graph == "dense" and center:
        raise SalnError("saln.laplacian normalized needs positive degrees, which centred dense cosines do "
                        "not give: set saln.graph knn or saln.center false")
    return SpectralOptions(laplacian, graph, knn_k, center, ranking)


def spectral_options(params: dict) -> dict:
    """The ``saln`` block of params.yaml, validated: keyword options of this module's selectors."""
    block = require(params, "saln", "params")
    if not isinstance(block, dict):
        raise SalnError(f"saln must be a mapping of options, got {block!r}")
    options = {"laplacian": require(block, "laplacian", "saln"), "graph": require(block, "graph", "saln"),
               "knn_k": number(block, "knn_k", "saln", lo=1, integer=True),
               "center": require(block, "center", "saln"), "ranking": require(block, "ranking", "saln")}
    return check_options(**options).as_dict()


# ---------------------------------------------------------------------------------------------
# The graph and its spectrum


def similarity_matrix(features: torch.Tensor, graph: str = "dense", knn_k: int = DEFAULT_KNN_K,
                      center: bool = False) -> torch.Tensor:
    """B x B float64 graph weights.

    ``dense``: the cosine similarity matrix itself (the paper: negative cosines and the unit diagonal
    kept). ``knn``: image i is joined to its ``knn_k`` (at most B - 1) most similar others, ties to the
    lower position; the edge set is symmetrised by union, weighted by the cosine clamped at 0, with no
    self-loops.
    """
    x = features.double()
    if center:
        x = x - x.mean(dim=0, keepdim=True)
    x = F.normalize(x, dim=1)
    similarity = x @ x.T
    if graph == "dense":
        return similarity
    if graph != "knn":
        raise SalnError(f"saln.graph must be one of {', '.join(GRAPHS)}, got {graph!r}")
    n = len(similarity)
    k = min(knn_k, n - 1)
    others = similarity.clone()
    others.fill_diagonal_(float("-inf"))
    nearest = torch.sort(others, dim=1, descending=True, stable=True).indices[:, :k]
    joined = torch.zeros(n, n, dtype=torch.bool, device=similarity.device)
    joined.scatter_(1, nearest, True)
    joined = joined | joined.T
    return torch.where(joined, similarity.clamp_min(0.0), torch.zeros_like(similarity))


def laplacian_matrix(similarity: torch.Tensor, kind: str = "unnormalized") -> torch.Tensor:
    """L = D - S (``unnormalized``) or I - D^-1/2 S D^-1/2 (``normalized``), D = diag of S's row sums.

    The normalized form needs degrees >= 0: an isolated image (degree 0, possible in a kNN graph whose
    cosines are all <= 0) gets a zero row in D^-1/2 S D^-1/2, a negative degree is an error.
    """
    degree = similarity.sum(dim=1)
    if kind == "unnormalized":
        return torch.diag(degree) - similarity
    if kind != "normalized":
        raise SalnError(f"saln.laplacian must be one of {', '.join(LAPLACIANS)}, got {kind!r}")
    if bool((degree < 0).any()):
        raise SalnError("saln.laplacian normalized: an image of this batch has a negative degree (negative "
                        "cosine similarities): use saln.graph knn or saln.laplacian unnormalized")
    inv_sqrt = torch.where(degree > 0, degree.clamp_min(torch.finfo(degree.dtype).tiny).rsqrt(),
                           torch.zeros_like(degree))
    eye = torch.eye(len(degree), dtype=similarity.dtype, device=similarity.device)
    return eye - inv_sqrt[:, None] * similarity * inv_sqrt[None, :]


def spectrum(features: torch.Tensor, options: SpectralOptions = PAPER) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (ascending) and eigenvectors (columns) of the batch graph's Laplacian, float64.

    Float64: on real features the Fiedler vector is localised on a few images, and the order of the
    rest rests on values near machine precision in float32.
    """
    similarity = similarity_matrix(features, options.graph, options.knn_k, options.center)
    return torch.linalg.eigh(laplacian_matrix(similarity, options.laplacian))


def fiedler_vector(features: torch.Tensor, options: SpectralOptions = PAPER) -> torch.Tensor:
    """Eigenvector of the second-smallest eigenvalue of the Laplacian (by default L = D - S, S = cosine
    similarity), as ``torch.linalg.eigh`` returns it (its sign is arbitrary: see ``oriented``)."""
    return spectrum(features, options)[1][:, 1]


def oriented(vector: torch.Tensor) -> torch.Tensor:
    """The vector with its sign fixed: its largest-|.| entry (the lowest position among equals) positive."""
    return vector if vector[int(torch.argmax(vector.abs()))] >= 0 else -vector


def ranking_scores(fiedler: torch.Tensor, ranking: str = "magnitude") -> torch.Tensor:
    """Scores whose ``top_k`` is the kept set: |v|, the oriented v, or -|v|."""
    if ranking == "magnitude":
        return fiedler.abs()
    if ranking == "signed":
        return oriented(fiedler)
    if ranking == "inverse":
        return -fiedler.abs()
    raise SalnError(f"saln.ranking must be one of {', '.join(RANKINGS)}, got {ranking!r}")


# ---------------------------------------------------------------------------------------------
# Selectors


@register("saln")
class Spectral(Selector):
    """Keep the ``keep`` images ranked by the Fiedler vector of the batch graph (the ``saln`` block).

    With the default options this is the paper's Algorithm 1: the images whose Fiedler-vector entries
    are largest in magnitude. A batch of fewer than 2 images has no Fiedler vector; the training loop
    never produces one (it drops the last partial batch and requires keep >= 2), and here such a batch
    is kept whole.
    """

    needs_features = True
    forced: ClassVar[dict] = {}  # variants: the option they fix, whatever the saln block says

    @classmethod
    def options_from_params(cls, params: dict) -> dict:
        return spectral_options(params)

    def __init__(self, laplacian: str = PAPER.laplacian, graph: str = PAPER.graph, knn_k: int = PAPER.knn_k,
                 center: bool = PAPER.center, ranking: str = PAPER.ranking, **options):
        chosen = {"laplacian": laplacian, "graph": graph, "knn_k": knn_k, "center": center,
                  "ranking": ranking, **self.forced}
        super().__init__(**chosen, **options)
        self.spec = check_options(**chosen)

    def select(self, batch: SelectionBatch) -> torch.Tensor:
        if len(batch) < 2:
            return torch.arange(len(batch), device=batch.indices.device)
        scores = ranking_scores(fiedler_vector(batch.features(), self.spec), self.spec.ranking)
        return top_k(scores, batch.keep)


@register("saln_normalized")
class SpectralNormalized(Spectral):
    """``saln`` on the normalized Laplacian I - D^-1/2 S D^-1/2; ignores saln.laplacian, reads the other
    saln.* keys (with their defaults: the paper's form with only the Laplacian changed)."""

    forced = {"laplacian": "normalized"}


@register("saln_knn")
class SpectralKnn(Spectral):
    """``saln`` on the symmetrised saln.knn_k-nearest-neighbour cosine graph; ignores saln.graph, reads the
    other saln.* keys (with their defaults: the paper's form with only the graph changed)."""

    forced = {"graph": "knn"}


@register("saln_inverse")
class SpectralInverse(Spectral):
    """The control: keep the images of SMALLEST |Fiedler entry|; ignores saln.ranking, reads the other
    saln.* keys (with their defaults: the paper's graph with the ranking reversed)."""

    forced = {"ranking": "inverse"}
