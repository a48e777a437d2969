"""Active learning with SEALS: pools, no double labels, no test leakage, bad input, the stage."""

from __future__ import annotations

import json

import numpy as np
import pytest

from saln.active import (STRATEGIES, active_config, check_budget, full_pool, neighbour_index,
                         run_active_learning, score_infodensity, score_maxent, seals_pool)
from saln.errors import SalnError
from tests.test_prune import run_stage, write_toy_dataset

ACTIVE_BLOCK = {"seed_size": 8, "per_round": 6, "rounds": 3, "k_neighbours": 5,
                "strategies": list(STRATEGIES), "seed": 0}


def blobs(n: int = 150, dim: int = 12, classes: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    centres = rng.standard_normal((classes, dim)) * 2
    return np.abs(centres[labels] + rng.standard_normal((n, dim))), labels


def run(strategy: str, pool: str, features=None, labels=None, test=None, **overrides) -> dict:
    features, labels = blobs() if features is None else (features, labels)
    test_x, test_y = blobs(60, seed=1) if test is None else test
    args = dict(seed_size=10, per_round=8, rounds=4, k_neighbours=6, beta=1.0, seed=0) | overrides
    return run_active_learning(features, labels, test_x, test_y, strategy, pool, **args)


# ---------------------------------------------------------------------------------------------
# Pools


def test_seals_pool_is_the_unlabeled_neighbours_of_labeled_examples():
    neighbours = np.array([[1, 2], [0, 2], [3, 0], [4, 2], [3, 5], [4, 3]])
    labeled = np.zeros(6, dtype=bool)
    labeled[[0]] = True
    assert np.flatnonzero(seals_pool(neighbours, labeled)).tolist() == [1, 2]
    labeled[[2]] = True
    assert np.flatnonzero(seals_pool(neighbours, labeled)).tolist() == [1, 3]


def test_seals_pool_is_within_the_full_pool_and_grows_only_through_labeled_neighbours():
    features, _ = blobs()
    neighbours = neighbour_index(features, 5)
    rng = np.random.default_rng(0)
    labeled = np.zeros(len(features), dtype=bool)
    labeled[rng.choice(len(features), 5, replace=False)] = True
    pool = seals_pool(neighbours, labeled)
    for _ in range(10):
        assert not np.any(pool & ~full_pool(labeled))  # subset of the full pool
        newly = rng.choice(np.flatnonzero(pool), 3, replace=False)  # label from the pool
        labeled[newly] = True
        grown = seals_pool(neighbours, labeled)
        allowed = pool.copy()
        allowed[neighbours[newly].ravel()] = True
        assert not np.any(grown & ~allowed)  # only the new labels' neighbours joined
        assert not np.any(pool & ~labeled & ~grown)  # nothing left unlabeled dropped out
        pool = grown


def test_neighbour_index_leaves_each_example_out_of_its_own_neighbours():
    features, _ = blobs(40)
    neighbours = neighbour_index(features, 4)
    assert neighbours.shape == (40, 4)
    assert not np.any(neighbours == np.arange(40)[:, None])


# ---------------------------------------------------------------------------------------------
# Scores


def test_maxent_scores_are_entropies_and_infodensity_beta_zero_equals_them():
    p = np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0.0]])
    np.testing.assert_allclose(score_maxent(p), [0.0, np.log(3), np.log(2)])
    features = np.random.default_rng(0).random((3, 4))
    np.testing.assert_allclose(score_infodensity(p, features, 0.0), score_maxent(p))
    assert np.all(score_infodensity(p, features, 2.0) <= score_maxent(p) + 1e-12)


# ---------------------------------------------------------------------------------------------
# The loop


@pytest.mark.parametrize("strategy,pool", [("maxent", "full"), ("maxent", "seals"),
                                           ("infodensity", "full"), ("infodensity", "seals"),
                                           ("random", "full")])
def test_loop_never_labels_an_example_twice(strategy, pool):
    result = run(strategy, pool)
    labeled = result["labeled"]
    assert len(labeled) == len(set(labeled)) == 10 + 4 * 8
    assert result["labels"] == [10, 18, 26, 34, 42]
    assert len(result["test_acc"]) == 5 and len(result["selection_seconds"]) == 4
    assert all(0 <= i < 150 for i in labeled)


def test_seals_labels_only_neighbours_of_earlier_labels():
    features, labels = blobs()
    result = run("maxent", "seals", features, labels)
    neighbours = neighbour_index(features, 6)
    labeled = result["labeled"]
    assert min(result["candidates"]) >= 8  # no random top-up happened
    for r in range(4):
        before, picked = labeled[:10 + 8 * r], labeled[10 + 8 * r:10 + 8 * (r + 1)]
        assert set(picked) <= set(neighbours[before].ravel()) - set(before)


def test_all_strategies_start_from_the_same_seed_set():
    seeds = {tuple(run(s, p)["labeled"][:10]) for s, p in [("maxent", "full"), ("random", "full"),
                                                            ("infodensity", "seals")]}
    assert len(seeds) == 1


@pytest.mark.parametrize("strategy,pool", [("maxent", "seals"), ("infodensity", "full"), ("random", "full")])
def test_the_test_split_never_steers_labeling(strategy, pool):
    """Noise for test features and shuffled test labels change the scores, never the choices."""
    reference = run(strategy, pool)
    test_x, test_y = blobs(60, seed=1)
    rng = np.random.default_rng(5)
    scrambled = run(strategy, pool, test=(rng.random(test_x.shape), rng.permutation(test_y)))
    assert scrambled["labeled"] == reference["labeled"]


# ---------------------------------------------------------------------------------------------
# Bad input: one-line SalnError before work


@pytest.mark.parametrize("overrides,message", [
    ({"seed_size": 151}, "seed_size=151 is larger than the pool of 150"),
    ({"rounds": 30}, "exceed the pool"),
    ({"k_neighbours": 0}, "k_neighbours must be an integer >= 1"),
    ({"beta": -1.0}, "uncertainty.beta"),
])
def test_bad_loop_arguments_are_rejected(overrides, message):
    with pytest.raises(SalnError, match=message):
        run("infodensity", "seals", **overrides)


@pytest.mark.parametrize("key,value,message", [
    ("k_neighbours", 0, "active.k_neighbours must be >= 1"), ("seed_size", 0, "active.seed_size"),
    ("strategies", ["maxent_fast"], "unknown active-learning strategy"), ("strategies", [], "strategies"),
])
def test_bad_active_block_is_one_line_error(params, key, value, message):
    params["active"] = {**ACTIVE_BLOCK, key: value}
    with pytest.raises(SalnError, match=message) as err:
        active_config(params)
    assert "\n" not in str(err.value)


def test_seed_set_larger_than_the_pool_is_rejected():
    with pytest.raises(SalnError, match="larger than the pool"):
        check_budget(pool_size=20, seed_size=21, per_round=1, rounds=1, k_neighbours=3)


# ---------------------------------------------------------------------------------------------
# The stage, on a small synthetic prepared dataset


def test_active_stage_labels_only_training_examples(tmp_path, monkeypatch):
    splits = write_toy_dataset(tmp_path)
    run_stage("active.py", tmp_path, {"active": ACTIVE_BLOCK, "uncertainty": {"beta": 1.0}}, monkeypatch)
    curves = json.loads((tmp_path / "results/active/toy/curves.json").read_text())
    assert set(curves["strategies"]) == set(STRATEGIES)
    for name, curve in curves["strategies"].items():
        labeled = curve["labeled_indices"]
        assert len(labeled) == len(set(labeled)) == 8 + 3 * 6
        assert set(labeled) <= set(splits["train"].tolist())
        assert not set(labeled) & set(splits["test"].tolist())
        assert curve["labels"] == [8, 14, 20, 26] and len(curve["selection_seconds"]) == 3


def test_active_stage_rejects_a_seed_set_larger_than_the_pool(tmp_path, monkeypatch, capsys):
    write_toy_dataset(tmp_path)
    with pytest.raises(SystemExit) as done:
        run_stage("active.py", tmp_path, {"active": {**ACTIVE_BLOCK, "seed_size": 500},
                                          "uncertainty": {"beta": 1.0}}, monkeypatch)
    assert done.value.code == 2
    assert "active.seed_size=500 is larger than the pool of 160" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()
