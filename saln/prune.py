"""Prototype pruning (Sorscher et al. 2022, "Beyond neural scaling laws").

k-means on the training examples' precomputed features; an example's difficulty is its distance
to the nearest centroid. Keeping the easiest (closest) examples helps when little data is kept,
keeping the hardest (farthest) when much is kept; ``auto`` switches at a threshold on the kept
fraction. The stage writes the kept training indices for the train matrix (methods prune_easy,
prune_hard, prune_auto) and a cheap curve: the test accuracy of a linear probe on the features,
trained on the kept examples, for several kept fractions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from saln.config import check_seed, number, require
from saln.errors import SalnError
from saln.probe import linear_probe_accuracy, one_blas_thread, unit_rows

MODES = ("easy", "hard", "auto")
KMEANS_RESTARTS = 3  # k-means++ restarts: fixed so a seed gives one answer


@dataclass(frozen=True)
class PruneConfig:
    k: int
    keep_fraction: float
    auto_threshold: float
    curve_fractions: tuple[float, ...]
    seed: int


def check_fraction(value, where: str) -> float:
    """A kept fraction must lie in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise SalnError(f"{where} must be a fraction in (0, 1], got {value!r}")
    return float(value)


def prune_config(params: dict) -> PruneConfig:
    """The ``prune`` block of params.yaml, validated."""
    block = require(params, "prune", "params")
    fractions = require(block, "curve_fractions", "prune")
    if not isinstance(fractions, list) or not fractions:
        raise SalnError(f"prune.curve_fractions must be a non-empty list of fractions, got {fractions!r}")
    return PruneConfig(
        k=number(block, "k", "prune", lo=1, integer=True),
        keep_fraction=check_fraction(require(block, "keep_fraction", "prune"), "prune.keep_fraction"),
        auto_threshold=number(block, "auto_threshold", "prune", lo=0, hi=1),
        curve_fractions=tuple(check_fraction(f, "each of prune.curve_fractions") for f in fractions),
        seed=check_seed(block, "seed", "prune"),
    )


# ---------------------------------------------------------------------------------------------
# Scores and orders


def centroid_distances(features: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Each row's Euclidean distance to its nearest k-means centroid (on unit-length rows)."""
    from sklearn.cluster import KMeans

    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise SalnError(f"prune.k must be an integer >= 1, got {k!r}")
    if k > len(features):
        raise SalnError(f"prune.k={k} exceeds the {len(features)} training examples to cluster")
    x = unit_rows(features)
    with one_blas_thread():
        kmeans = KMeans(n_clusters=k, n_init=KMEANS_RESTARTS, random_state=seed).fit(x)
        return kmeans.transform(x).min(axis=1)


def kept_count(n: int, keep_fraction: float) -> int:
    """round(keep_fraction * n), at least 1: the number of examples a fraction keeps."""
    check_fraction(keep_fraction, "the kept fraction")
    return max(1, int(round(keep_fraction * n)))


def resolve_mode(mode: str, keep_fraction: float, auto_threshold: float) -> str:
    """``auto`` -> easy below the threshold (little data kept), hard from it on (much kept)."""
    if mode not in MODES:
        raise SalnError(f"prune mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode != "auto":
        return mode
    return "easy" if keep_fraction < auto_threshold else "hard"


def prune_order(distances: np.ndarray, mode: str, keep_fraction: float,
                auto_threshold: float = 0.5) -> np.ndarray:
    """Positions in ``distances`` of the kept examples, easiest (easy) or hardest (hard) first.

    Equal distances go to the lower position (stable sort).
    """
    keep = kept_count(len(distances), keep_fraction)
    d = np.asarray(distances, dtype=np.float64)
    ranking = {"easy": d, "hard": -d}[resolve_mode(mode, keep_fraction, auto_threshold)]
    return np.argsort(ranking, kind="stable")[:keep]


def kept_subsets(train: np.ndarray, distances: np.ndarray, keep_fraction: float,
                 auto_threshold: float) -> dict[str, np.ndarray]:
    """mode -> sorted dataset indices of the kept training examples (what keep.npz stores)."""
    return {mode: np.sort(train[prune_order(distances, mode, keep_fraction, auto_threshold)])
            for mode in MODES}


def load_kept(directory: str | Path, mode: str, train: np.ndarray) -> np.ndarray:
    """The kept dataset indices for ``mode`` from keep.npz, checked to lie in the training split."""
    path = Path(directory) / "keep.npz"
    if not path.is_file():
        raise SalnError(f"{path} not found: run `dvc repro` (stage prune) first")
    with np.load(path) as z:
        if mode not in z.files:
            raise SalnError(f"{path} has no {mode!r} subset (re-run stage prune)")
        kept = z[mode].astype(np.int64)
    if not np.isin(kept, train).all():
        raise SalnError(f"{path} keeps examples outside the training split: it is stale, re-run stage prune")
    return kept


# ---------------------------------------------------------------------------------------------
# The cheap curve: a linear probe on the features


def probe_curve(features: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray,
                distances: np.ndarray, cfg: PruneConfig) -> dict:
    """Kept fraction -> linear-probe test accuracy when keeping easy, hard, or random examples.

    ``random`` (one draw per fraction, seeded by prune.seed) is the control pruning must beat.
    """
    rng = np.random.default_rng(cfg.seed)
    test_x, test_y = features[test], labels[test]
    curve = {"fractions": [], "kept": [], "auto_mode": [],
             "linear_probe_test_acc": {"easy": [], "hard": [], "random": []}}
    for fraction in cfg.curve_fractions:
        n = kept_count(len(train), fraction)
        # Sorted, so a probe's fit never depends on the order of its examples: at fraction 1
        # every subset is the whole split and gets the same accuracy.
        subsets = {"easy": np.sort(train[prune_order(distances, "easy", fraction)]),
                   "hard": np.sort(train[prune_order(distances, "hard", fraction)]),
                   "random": np.sort(rng.choice(train, size=n, replace=False))}
        curve["fractions"].append(fraction)
        curve["kept"].append(n)
        curve["auto_mode"].append(resolve_mode("auto", fraction, cfg.auto_threshold))
        for name, kept in subsets.items():
            acc = linear_probe_accuracy(features[kept], labels[kept], test_x, test_y)
            curve["linear_probe_test_acc"][name].append(acc)
    return curve
