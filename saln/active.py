"""Pool-based active learning on precomputed features, with SEALS candidate pools.

A simulation on a dataset's training split: its labels are hidden until an example is "labeled".
Start from a random seed set; each round fit a linear probe (logistic regression on standardized
features) on the labeled examples, score candidates by MaxEnt or Information Density, label the
``per_round`` best, and repeat. The test split only measures each round's probe.

Candidate pools (Coleman et al. 2022, "Similarity Search for Efficient Active Learning and
Search of Rare Concepts"):
* ``full``: every unlabeled training example, so scoring cost grows with the whole pool;
* ``seals``: only the unlabeled k nearest neighbours of labeled examples, from a nearest-neighbour
  index built once, so scoring cost grows with the labeled set instead;
* strategy ``random`` labels uniformly among all unlabeled examples: the control.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from saln.errors import SalnError
from saln.config import check_seed, number, require
from saln.probe import PROBE_MAX_ITER, one_blas_thread, unit_rows
from saln.selection.uncertainty import check_beta, information_density, mean_cosine_to_rest, predictive_entropy

SCORES = ("maxent", "infodensity")
POOLS = ("full", "seals")
STRATEGIES = ("maxent_full", "maxent_seals", "infodensity_full", "infodensity_seals", "random")


@dataclass(frozen=True)
class ActiveConfig:
    seed_size: int
    per_round: int
    rounds: int
    k_neighbours: int
    strategies: tuple[str, ...]
    seed: int


def active_config(params: dict) -> ActiveConfig:
    """The ``active`` block of params.yaml, validated (beta comes from the ``uncertainty`` block)."""
    block = require(params, "active", "params")
    strategies = require(block, "strategies", "active")
    if not isinstance(strategies, list) or not strategies:
        raise SalnError(f"active.strategies must be a non-empty list of {', '.join(STRATEGIES)}")
    for name in strategies:
        split_strategy(name)
    return ActiveConfig(
        seed_size=number(block, "seed_size", "active", lo=1, integer=True),
        per_round=number(block, "per_round", "active", lo=1, integer=True),
        rounds=number(block, "rounds", "active", lo=1, integer=True),
        k_neighbours=number(block, "k_neighbours", "active", lo=1, integer=True),
        strategies=tuple(strategies),
        seed=check_seed(block, "seed", "active"),
    )


def split_strategy(name: str) -> tuple[str, str]:
    """'maxent_seals' -> ('maxent', 'seals'); 'random' -> ('random', 'full')."""
    if name not in STRATEGIES:
        raise SalnError(f"unknown active-learning strategy {name!r}: choose from {', '.join(STRATEGIES)}")
    if name == "random":
        return "random", "full"
    score, pool = name.rsplit("_", 1)
    return score, pool


def check_budget(pool_size: int, seed_size: int, per_round: int, rounds: int, k_neighbours: int,
                 dataset: str | None = None) -> None:
    """Reject, before any work, settings the training pool (of ``dataset``, when named) cannot satisfy."""
    for key, value in (("seed_size", seed_size), ("per_round", per_round), ("rounds", rounds),
                       ("k_neighbours", k_neighbours)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SalnError(f"active.{key} must be an integer >= 1, got {value!r}")
    pool = f"the pool of {pool_size} training examples" + (f" of dataset {dataset}" if dataset else "")
    if seed_size > pool_size:
        raise SalnError(f"active.seed_size={seed_size} is larger than {pool}")
    budget = seed_size + per_round * rounds
    if budget > pool_size:
        raise SalnError(f"active.seed_size + active.per_round * active.rounds = {seed_size} + {per_round} * "
                        f"{rounds} = {budget} labels exceed {pool}: lower active.rounds or active.per_round")
    if k_neighbours >= pool_size:
        raise SalnError(f"active.k_neighbours={k_neighbours} must be smaller than {pool}")


# ---------------------------------------------------------------------------------------------
# Candidate pools


def neighbour_index(features: np.ndarray, k: int) -> np.ndarray:
    """N x k positions of each example's k nearest other examples (cosine), built once.

    On unit-length rows Euclidean order is cosine order; without a query, scikit-learn leaves
    each point out of its own neighbours.
    """
    from sklearn.neighbors import NearestNeighbors

    index = NearestNeighbors(n_neighbors=k).fit(unit_rows(features))
    return index.kneighbors(return_distance=False)


def full_pool(labeled_mask: np.ndarray) -> np.ndarray:
    return ~labeled_mask


def seals_pool(neighbours: np.ndarray, labeled_mask: np.ndarray) -> np.ndarray:
    """Boolean mask of the unlabeled examples among the neighbours of labeled examples."""
    pool = np.zeros(len(labeled_mask), dtype=bool)
    pool[neighbours[labeled_mask].ravel()] = True
    return pool & ~labeled_mask


# ---------------------------------------------------------------------------------------------
# Scores


def score_maxent(probabilities: np.ndarray) -> np.ndarray:
    """Predictive entropy -sum p log p of each row (0 log 0 = 0), as the in-batch selector computes it."""
    with np.errstate(divide="ignore"):
        log_p = np.log(np.asarray(probabilities, dtype=np.float64))
    return predictive_entropy(torch.from_numpy(log_p)).numpy()


def score_infodensity(probabilities: np.ndarray, features: np.ndarray, beta: float) -> np.ndarray:
    """Entropy x (mean cosine similarity to the other candidates) ** beta, as the in-batch selector."""
    # The in-batch selector's density and formula, so both infodensity variants measure the same thing.
    density = mean_cosine_to_rest(torch.from_numpy(np.asarray(features, dtype=np.float64)))
    entropy = torch.from_numpy(score_maxent(probabilities))
    return information_density(entropy, density, check_beta(beta)).numpy()


def top_positions(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k largest scores; equal scores go to the lower position."""
    return np.argsort(-np.asarray(scores), kind="stable")[:k]


# ---------------------------------------------------------------------------------------------
# The loop


class LinearProbe:
    """Logistic regression on features standardized with the whole training pool's statistics.

    The pool's features (not its labels) are known in pool-based active learning, so the scaler
    is fit once on them. Until two classes are labeled it predicts the only class it has seen.
    """

    def __init__(self, pool_features: np.ndarray):
        from sklearn.preprocessing import StandardScaler

        self.scaler = StandardScaler().fit(np.asarray(pool_features, dtype=np.float64))

    def fit(self, x: np.ndarray, y: np.ndarray) -> "LinearProbe":
        from sklearn.dummy import DummyClassifier
        from sklearn.linear_model import LogisticRegression

        model = (LogisticRegression(max_iter=PROBE_MAX_ITER) if len(np.unique(y)) > 1
                 else DummyClassifier(strategy="most_frequent"))
        self.model = model.fit(self.scaler.transform(x), y)
        return self

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(self.scaler.transform(x))

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        return float(self.model.score(self.scaler.transform(x), y))


def choose(score: str, probe: LinearProbe, features: np.ndarray, candidates: np.ndarray,
           per_round: int, beta: float, rng: np.random.Generator) -> np.ndarray:
    """Training positions of the ``per_round`` candidates to label next."""
    if len(candidates) == 0:
        return candidates
    if score == "random":
        return rng.choice(candidates, size=min(per_round, len(candidates)), replace=False)
    probabilities = probe.probabilities(features[candidates])
    if score == "maxent":
        scores = score_maxent(probabilities)
    else:
        scores = score_infodensity(probabilities, features[candidates], beta)
    return candidates[top_positions(scores, per_round)]


def top_up(picked: np.ndarray, labeled_mask: np.ndarray, per_round: int,
           rng: np.random.Generator) -> np.ndarray:
    """A SEALS pool smaller than ``per_round`` is completed with random unlabeled examples."""
    missing = per_round - len(picked)
    if missing <= 0:
        return picked
    outside = np.flatnonzero(~labeled_mask)
    outside = outside[~np.isin(outside, picked)]
    return np.concatenate([picked, rng.choice(outside, size=missing, replace=False)])


def run_active_learning(features_train: np.ndarray, labels_train: np.ndarray, features_test: np.ndarray,
                        labels_test: np.ndarray, strategy: str, pool: str, seed_size: int,
                        per_round: int, rounds: int, k_neighbours: int, beta: float,
                        seed: int) -> dict:
    """Simulate ``rounds`` rounds of labeling; returns the learning curve and its costs.

    ``strategy``: maxent | infodensity | random; ``pool``: full | seals. Positions in
    ``labeled`` index ``features_train``; the seed set depends only on ``seed``, so every strategy
    starts from the same labels. ``selection_seconds`` times candidate pooling and scoring (not
    the probe's fit); ``index_seconds`` the one-off nearest-neighbour index of ``seals``.
    """
    if strategy not in SCORES + ("random",):
        raise SalnError(f"active-learning score must be one of {', '.join(SCORES)} or random, got {strategy!r}")
    if pool not in POOLS:
        raise SalnError(f"active-learning pool must be one of {', '.join(POOLS)}, got {pool!r}")
    n = len(features_train)
    check_budget(n, seed_size, per_round, rounds, k_neighbours)
    if strategy == "infodensity" and not beta >= 0:
        raise SalnError(f"uncertainty.beta must be >= 0, got {beta!r}")

    with one_blas_thread():
        return _simulate(features_train, labels_train, features_test, labels_test, strategy, pool,
                         seed_size, per_round, rounds, k_neighbours, beta, seed)


def _simulate(features_train, labels_train, features_test, labels_test, strategy, pool, seed_size,
              per_round, rounds, k_neighbours, beta, seed) -> dict:
    """The rounds themselves, on arguments ``run_active_learning`` has checked."""
    n = len(features_train)
    rng = np.random.default_rng(seed)
    labeled = list(rng.choice(n, size=seed_size, replace=False))
    labeled_mask = np.zeros(n, dtype=bool)
    labeled_mask[labeled] = True
    started = time.perf_counter()
    neighbours = neighbour_index(features_train, k_neighbours) if pool == "seals" else None
    index_seconds = time.perf_counter() - started

    probe = LinearProbe(features_train)
    result = {"labels": [], "test_acc": [], "selection_seconds": [], "candidates": [],
              "index_seconds": index_seconds}
    for round_number in range(rounds + 1):
        probe.fit(features_train[labeled_mask], labels_train[labeled_mask])
        result["labels"].append(int(labeled_mask.sum()))
        result["test_acc"].append(probe.accuracy(features_test, labels_test))
        if round_number == rounds:
            break
        started = time.perf_counter()
        mask = seals_pool(neighbours, labeled_mask) if pool == "seals" else full_pool(labeled_mask)
        candidates = np.flatnonzero(mask)
        picked = choose(strategy, probe, features_train, candidates, per_round, beta, rng)
        result["selection_seconds"].append(time.perf_counter() - started)
        result["candidates"].append(len(candidates))
        picked = top_up(picked, labeled_mask, per_round, rng)
        labeled_mask[picked] = True
        labeled.extend(picked.tolist())
    result["labeled"] = [int(i) for i in labeled]
    return result
