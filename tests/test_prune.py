"""Prototype pruning: exact kept fractions, easy/hard follow centroid distance, bad input, the stage."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from saln.errors import SalnError
from saln.probe import linear_probe_accuracy
from saln.prune import (centroid_distances, kept_count, kept_subsets, load_kept, prune_config, prune_order, resolve_mode)
from saln.selection import REGISTRY, SelectionBatch, build
from tests.conftest import stage_argv

ROOT = Path(__file__).resolve().parents[1]
PRUNE_BLOCK = {"k": 3, "keep_fraction": 0.5, "auto_threshold": 0.5,
               "curve_fractions": [0.2, 0.5, 1.0], "seed": 0}


@pytest.mark.parametrize("n", [10, 37, 100])
@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 0.73, 1.0])
@pytest.mark.parametrize("mode", ["easy", "hard", "auto"])
def test_prune_keeps_exactly_the_requested_fraction(n, fraction, mode):
    distances = np.random.default_rng(n).random(n)
    kept = prune_order(distances, mode, fraction, auto_threshold=0.5)
    assert len(kept) == len(set(kept.tolist())) == max(1, round(fraction * n))
    assert kept.min() >= 0 and kept.max() < n


@pytest.mark.parametrize("fraction", [0.1, 0.4, 0.8])
def test_easy_keeps_the_closest_and_hard_the_farthest(fraction):
    distances = np.random.default_rng(1).random(50)
    easy, hard = prune_order(distances, "easy", fraction), prune_order(distances, "hard", fraction)
    assert np.all(np.diff(distances[easy]) >= 0) and np.all(np.diff(distances[hard]) <= 0)
    assert distances[easy].max() <= np.delete(distances, easy).min(initial=np.inf)
    assert distances[hard].min() >= np.delete(distances, hard).max(initial=-np.inf)


def test_auto_keeps_easy_when_little_is_kept_and_hard_when_much_is():
    distances = np.random.default_rng(2).random(40)
    assert resolve_mode("auto", 0.2, 0.5) == "easy" and resolve_mode("auto", 0.5, 0.5) == "hard"
    np.testing.assert_array_equal(prune_order(distances, "auto", 0.2, 0.5), prune_order(distances, "easy", 0.2))
    np.testing.assert_array_equal(prune_order(distances, "auto", 0.7, 0.5), prune_order(distances, "hard", 0.7))


def test_equal_distances_go_to_the_lower_position():
    distances = np.array([0.5, 0.1, 0.5, 0.1, 0.9])
    assert prune_order(distances, "easy", 0.4).tolist() == [1, 3]
    assert prune_order(distances, "hard", 0.4).tolist() == [4, 0]


def test_centroid_distance_ranks_cluster_cores_easy_and_stragglers_hard():
    rng = np.random.default_rng(0)
    centres = np.eye(3) * 5 + 1
    cores = np.repeat(centres, 20, axis=0) + 0.05 * rng.standard_normal((60, 3))
    stragglers = centres + np.array([[0.0, 3.0, 0.0], [0.0, 0.0, 3.0], [3.0, 0.0, 0.0]])
    distances = centroid_distances(np.vstack([cores, stragglers]), k=3, seed=0)
    assert distances.shape == (63,) and np.all(distances >= 0)
    assert set(prune_order(distances, "hard", 3 / 63).tolist()) == {60, 61, 62}
    np.testing.assert_array_equal(distances, centroid_distances(np.vstack([cores, stragglers]), 3, 0))


def test_kept_subsets_are_sorted_training_indices():
    train = np.array([3, 8, 9, 14, 20, 21, 30, 31])
    kept = kept_subsets(train, np.linspace(1, 0, 8), keep_fraction=0.25, auto_threshold=0.5)
    assert kept["easy"].tolist() == [30, 31] and kept["hard"].tolist() == [3, 8]
    assert kept["auto"].tolist() == kept["easy"].tolist()


def test_single_class_subset_predicts_that_class():
    x = np.zeros((4, 2))
    assert linear_probe_accuracy(x, np.array([1, 1, 1, 1]), x, np.array([1, 0, 1, 1])) == 0.75


# ---------------------------------------------------------------------------------------------
# The train-matrix methods


@pytest.mark.parametrize("method,subset", [("prune_easy", "easy"), ("prune_hard", "hard"),
                                           ("prune_auto", "auto")])
def test_pruned_methods_keep_the_whole_batch_and_name_their_subset(method, subset):
    assert REGISTRY[method].train_subset == subset
    batch = SelectionBatch(indices=torch.arange(8), labels=torch.zeros(8, dtype=torch.long), keep=2,
                           generator=torch.Generator().manual_seed(0))
    assert build(method).select(batch).tolist() == list(range(8))


def test_load_kept_rejects_missing_and_stale_files(tmp_path):
    with pytest.raises(SalnError, match="stage prune"):
        load_kept(tmp_path, "easy", np.arange(10))
    np.savez(tmp_path / "keep.npz", easy=np.array([1, 2]), hard=np.array([8, 12]), auto=np.array([1, 2]))
    assert load_kept(tmp_path, "easy", np.arange(10)).tolist() == [1, 2]
    with pytest.raises(SalnError, match="stale"):
        load_kept(tmp_path, "hard", np.arange(10))


# ---------------------------------------------------------------------------------------------
# Bad input: one-line SalnError before work


@pytest.mark.parametrize("key,value,message", [
    ("k", 0, "prune.k must be >= 1"), ("k", 2.5, "prune.k must be an integer"),
    ("keep_fraction", 0, r"prune.keep_fraction must be a fraction in \(0, 1\]"),
    ("keep_fraction", 1.5, "prune.keep_fraction"), ("keep_fraction", -0.2, "prune.keep_fraction"),
    ("curve_fractions", [0.5, 0.0], "prune.curve_fractions"), ("curve_fractions", [], "curve_fractions"),
    ("auto_threshold", 2, "prune.auto_threshold"),
])
def test_bad_prune_block_is_one_line_error(params, key, value, message):
    params["prune"] = {**PRUNE_BLOCK, key: value}
    with pytest.raises(SalnError, match=message) as err:
        prune_config(params)
    assert "\n" not in str(err.value)


def test_bad_fraction_and_k_are_rejected_by_the_functions_too():
    with pytest.raises(SalnError, match=r"\(0, 1\]"):
        kept_count(10, 0.0)
    with pytest.raises(SalnError, match="prune.k"):
        centroid_distances(np.ones((5, 2)), 0, 0)
    with pytest.raises(SalnError, match="exceeds"):
        centroid_distances(np.ones((5, 2)), 6, 0)


# ---------------------------------------------------------------------------------------------
# The stage, on a small synthetic prepared dataset


def write_toy_dataset(root: Path, name: str = "toy", n: int = 240, dim: int = 16, classes: int = 4):
    """Prepared arrays and features laid out as stages prepare and features leave them."""
    rng = np.random.default_rng(0)
    labels = np.arange(n) % classes
    centres = rng.standard_normal((classes, dim)) * 3
    features = np.abs(centres[labels] + rng.standard_normal((n, dim)))
    order = rng.permutation(n)
    splits = {"train": np.sort(order[:160]), "val": np.sort(order[160:180]),
              "test": np.sort(order[180:]), "reference": np.array([], dtype=np.int64)}
    prepared = root / "data" / "prepared" / name
    prepared.mkdir(parents=True)
    np.save(prepared / "images.npy", np.zeros((n, 8, 8, 3), dtype=np.uint8))
    np.save(prepared / "labels.npy", labels)
    np.savez(prepared / "splits.npz", **splits)
    (prepared / "meta.json").write_text('{"name": "toy", "num_classes": %d}' % classes)
    (root / "data" / "features" / name).mkdir(parents=True)
    np.save(root / "data" / "features" / name / "features.npy", features.astype(np.float16))
    return splits


def run_stage(script: str, root: Path, params: dict, monkeypatch, dataset: str = "toy") -> None:
    """Run stages/<script> in ``root`` with the arguments dvc.yaml gives its stage for ``dataset``."""
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(root)
    monkeypatch.syspath_prepend(str(ROOT / "stages"))
    monkeypatch.setattr(sys, "argv", stage_argv(Path(script).stem, dataset=dataset))
    runpy.run_path(str(ROOT / "stages" / script), run_name="__main__")


def test_prune_stage_writes_kept_training_indices_and_the_probe_curve(tmp_path, monkeypatch):
    import json

    splits = write_toy_dataset(tmp_path)
    run_stage("prune.py", tmp_path, {"prune": PRUNE_BLOCK}, monkeypatch)
    with np.load(tmp_path / "data/prune/toy/keep.npz") as z:
        for mode in ("easy", "hard", "auto"):
            assert len(z[mode]) == 80 and np.isin(z[mode], splits["train"]).all()
        assert np.intersect1d(z["easy"], z["hard"]).size == 0  # half each way: complements
    summary = json.loads((tmp_path / "results/prune/toy/summary.json").read_text())
    curve = summary["curve"]
    assert curve["fractions"] == [0.2, 0.5, 1.0] and curve["kept"] == [32, 80, 160]
    assert set(curve["linear_probe_test_acc"]) == {"easy", "hard", "random"}
    at_full = {accs[-1] for accs in curve["linear_probe_test_acc"].values()}
    assert len(at_full) == 1  # fraction 1 keeps the whole split whichever the mode


def test_prune_stage_rejects_bad_fraction_before_work(tmp_path, monkeypatch, capsys):
    write_toy_dataset(tmp_path)
    with pytest.raises(SystemExit) as done:
        run_stage("prune.py", tmp_path, {"prune": {**PRUNE_BLOCK, "keep_fraction": 0}}, monkeypatch)
    assert done.value.code == 2
    assert capsys.readouterr().err.strip().startswith("error: prune.keep_fraction")
    assert not (tmp_path / "data/prune").exists()
