"""The training loop on CPU: selection accounting, outputs, and the batch-size rules."""

import json

import numpy as np
import pytest
import torch

from saln import augment
from saln.train import train_config
from saln.errors import SalnError
from saln.train import RunInputs, train_run


def tiny_config(params, **overrides):
    params["train"].update({"epochs": 1, "batch_size": 40, "filter_ratio": 0.8, "log_batches": [0, 2],
                            "device": "cpu", **overrides})
    params["model"].update(arch="resnet18", weights="none")  # small and fast; the loop is arch-generic
    return train_config(params)


def tiny_inputs(params, prepared, with_features=False):
    spec = augment.augment_spec({**params["augment"], "resize": 16, "test_resize": 16, "test_crop": 16})
    features = np.random.default_rng(0).random((len(prepared.labels), 8)) if with_features else None
    return RunInputs(prepared, spec, features=features)


@pytest.mark.parametrize("method", ["standard", "saln"])
def test_run_writes_metrics_model_selections_and_curves(params, digits16, tmp_path, method):
    cfg = tiny_config(params)
    metrics = train_run(tiny_inputs(params, digits16, with_features=True), cfg, method, 0, tmp_path,
                        progress=False)
    n_batches = len(digits16.splits["train"]) // cfg.batch_size
    per_batch = cfg.batch_size if method == "standard" else cfg.keep
    assert metrics["images_backprop"] == n_batches * per_batch  # the partial batch is dropped
    assert metrics["images_scored"] == 0 and metrics["keep_per_batch"] == per_batch
    assert 0 <= metrics["test_acc"] <= 1 and metrics["train_seconds"] > 0
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics

    logged = np.load(tmp_path / "selections.npz")
    assert logged["batch"].tolist() == [0, 2]
    assert logged["indices"].shape == (2, cfg.batch_size)
    assert logged["kept"].sum(axis=1).tolist() == [per_batch, per_batch]
    assert np.isin(logged["indices"], digits16.splits["train"]).all()

    curve = (tmp_path / "dvclive/plots/metrics/val_acc.tsv").read_text().splitlines()
    # One point before training (step 0) and one per epoch.
    assert curve[0].split("\t") == ["step", "val_acc"] and len(curve) == 2 + cfg.epochs
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert state["fc.weight"].shape == (10, 512)


def test_same_seed_same_selection(params, digits16, tmp_path):
    cfg = tiny_config(params)
    runs = [train_run(tiny_inputs(params, digits16), cfg, "random", 3, tmp_path / str(i), progress=False)
            for i in range(2)]
    picks = [np.load(tmp_path / str(i) / "selections.npz")["kept"] for i in range(2)]
    np.testing.assert_array_equal(picks[0], picks[1])
    assert runs[0]["test_acc"] == runs[1]["test_acc"]


def test_training_split_smaller_than_a_batch_is_rejected(params, digits16, tmp_path):
    cfg = tiny_config(params, batch_size=2000)
    with pytest.raises(SalnError, match="fewer than train.batch_size=2000"):
        train_run(tiny_inputs(params, digits16), cfg, "standard", 0, tmp_path, progress=False)


def test_saln_without_features_is_rejected(params, digits16, tmp_path):
    with pytest.raises(SalnError, match="needs features"):
        train_run(tiny_inputs(params, digits16), tiny_config(params), "saln", 0, tmp_path, progress=False)
