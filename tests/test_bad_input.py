"""Bad data files and params are refused with one line naming what is wrong; a diverging run
stops at once and writes no metrics; the lr sweep picks each method's best finished rate."""

import json

import numpy as np
import yaml
import pytest

from saln.data import SourceConfig, load_npz
from saln.errors import SalnError
from saln.sweep import DIVERGED_FILE, choose_best, run_dir, sweep_lrs
from saln.validate import validate_all
from tests.conftest import write_npz


def npz_source(path) -> SourceConfig:
    return SourceConfig(name="mine", kind="npz", image_size=12, path=str(path))


def refused(path) -> str:
    with pytest.raises(SalnError) as err:
        load_npz(npz_source(path))
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    return message


def images(n: int) -> np.ndarray:
    return np.zeros((n, 12, 12, 3), dtype=np.uint8)


def test_x_and_y_of_different_lengths(tmp_path):
    np.savez(tmp_path / "d.npz", x=images(30), y=np.arange(20) % 3)
    assert "differ in length: 30 images, 20 labels" in refused(tmp_path / "d.npz")


def test_truncated_and_non_npz_files(tmp_path):
    np.savez(tmp_path / "whole.npz", x=images(30), y=np.arange(30) % 3)
    data = (tmp_path / "whole.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    assert "not a readable npz" in refused(tmp_path / "cut.npz")
    (tmp_path / "text.npz").write_text("just text\n")
    assert "not a readable npz" in refused(tmp_path / "text.npz")


def test_labels_negative_or_out_of_range(tmp_path):
    np.savez(tmp_path / "neg.npz", x=images(4), y=np.array([0, 1, -1, 2]))
    assert "must lie in [0, 3)" in refused(tmp_path / "neg.npz")
    np.savez(tmp_path / "big.npz", x=images(4), y=np.array([0, 1, 7, 2]),
             class_names=np.array(["a", "b", "c"]))
    assert "got labels from 0 to 7" in refused(tmp_path / "big.npz")


def test_images_of_the_wrong_dtype_or_shape(tmp_path):
    np.savez(tmp_path / "f.npz", x=images(4).astype(np.float32), y=np.arange(4))
    assert "must be uint8" in refused(tmp_path / "f.npz")
    np.savez(tmp_path / "g.npz", x=np.zeros((4, 12, 12), dtype=np.uint8), y=np.arange(4))
    assert "must be uint8 N x H x W x 3" in refused(tmp_path / "g.npz")


@pytest.mark.parametrize("key, value, expected", [
    ("seeds", [0, 0], "train.seeds lists 0 more than once"),
    ("methods", {"baselines": ["standard", "standard"]}, "train.methods lists standard more than once"),
    ("methods", {"baselines": ["standard"], "spectral": ["saln"], "jest": ["saln"]},
     "train.methods lists saln more than once"),
    ("methods", {"baselines": ["standard", "saln"]}, "train.methods.baselines lists saln, which belongs in "
                                                     "train.methods.spectral"),
    ("methods", {"baseline": ["standard"]}, "train.methods.baseline is not a selector family"),
    ("methods", ["standard", "saln"], "train.methods must map selector families to lists of methods"),
])
def test_repeated_seeds_or_misfiled_methods(params, key, value, expected):
    params["train"][key] = value
    with pytest.raises(SalnError, match=expected):
        validate_all(params)


def test_sweep_rates_are_checked(params):
    params["sweep"]["lrs"] = [params["train"]["lr"]]
    with pytest.raises(SalnError, match="repeats train.lr"):
        validate_all(params)
    params["sweep"]["lrs"] = [-0.1]
    with pytest.raises(SalnError, match="sweep.lrs"):
        sweep_lrs(params)


def test_a_diverging_run_stops_and_writes_no_metrics(params, digits16, tmp_path):
    from saln.augment import augment_spec
    from saln.train import DivergedError, RunInputs, train_config, train_run

    params["train"].update(epochs=2, batch_size=40, lr=1e6, device="cpu")
    params["model"].update(arch="resnet18", weights="none")
    spec = augment_spec({**params["augment"], "resize": 16, "test_resize": 16, "test_crop": 16})
    with pytest.raises(DivergedError, match=r"non-finite at epoch 1, step \d+ with train.lr=1000000"):
        train_run(RunInputs(digits16, spec), train_config(params), "standard", 0, tmp_path, progress=False)
    assert not (tmp_path / "metrics.json").exists()


def write_run(root, method, seed, lr, val_acc=None):
    d = run_dir("ds", method, seed, lr, root)
    d.mkdir(parents=True)
    name, body = ("metrics.json", {"val_acc": val_acc}) if val_acc is not None else (DIVERGED_FILE, {})
    (d / name).write_text(json.dumps(body))


def test_best_lr_skips_diverged_rates_and_unfinished_ones(tmp_path):
    for seed, (common, small, large) in enumerate([(0.5, 0.6, None), (0.7, 0.8, 0.9)]):
        write_run(tmp_path, "saln", seed, None, common)
        write_run(tmp_path, "saln", seed, 0.001, small)
        write_run(tmp_path, "saln", seed, 0.1, large)  # seed 0 diverged at 0.1
    write_run(tmp_path, "random", 0, None, 0.4)  # seed 1 never ran
    summary = choose_best("ds", ["saln", "random"], [0, 1], 0.01, [0.001, 0.1], tmp_path)
    saln = summary["methods"]["saln"]
    assert saln["best_lr"] == 0.001 and saln["diverged"] == ["0.1"]
    assert saln["val_acc"]["0.001"] == pytest.approx(0.7) and saln["val_acc"]["0.1"] is None
    assert summary["methods"]["random"]["best_lr"] is None


@pytest.mark.parametrize("block, key, expected", [
    ("train", "lrr", "unknown params key train.lrr: did you mean train.lr?"),
    ("augment", "hflp", "unknown params key augment.hflp: did you mean augment.hflip?"),
])
def test_unknown_keys_name_the_nearest_valid_one(params, block, key, expected):
    params[block][key] = 0.1
    with pytest.raises(SalnError) as err:
        validate_all(params)
    assert str(err.value) == expected


def test_the_repo_params_and_presets_use_only_known_keys(repo_params):
    from saln.presets import flatten
    from saln.validate import check_known_keys
    from tests.conftest import ROOT

    check_known_keys(repo_params)
    for preset in sorted((ROOT / "presets").glob("*.yaml")):
        for key in flatten(yaml.safe_load(preset.read_text()) or {}):
            tree = {}
            node = tree
            *parents, last = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = 0
            check_known_keys(tree)


def test_files_outside_the_tracked_folders_are_refused(params, tmp_path):
    """DVC sees a data or weights file change only inside the folders dvc.yaml lists as deps."""
    write_npz(tmp_path / "mine.npz")
    params["data"]["sources"]["mine"] = {"kind": "npz", "path": str(tmp_path / "mine.npz"), "image_size": 16}
    params["data"]["names"] = ["mine"]
    with pytest.raises(SalnError, match=r"data.sources.mine.path must lie under data/sources/, which stage "
                                        r"prepare depends on: move or link .*mine.npz there"):
        validate_all(params)
    params["data"]["names"] = ["digits"]
    (tmp_path / "w.pth").write_bytes(b"")
    params["model"]["weights"] = str(tmp_path / "w.pth")
    with pytest.raises(SalnError, match="model.weights must lie under weights/"):
        validate_all(params)
