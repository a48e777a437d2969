"""Bad data files and params are refused with one line naming what is wrong; a diverging run
stops at once, names its rate and writes no metrics; stage best_lr never picks a diverged rate."""

import json

import numpy as np
import yaml
import pytest

from saln.data import SourceConfig, load_npz
from saln.errors import SalnError
from saln.layout import DIVERGED_FILE, METRICS_FILE, rate_dir, run_dir
from saln.rates import check_every_method_trained, choose_best, learning_rates, record_divergence
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
    assert "y must lie in >= 0, got labels from -1 to 2" in refused(tmp_path / "neg.npz")  # no class count
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


@pytest.mark.parametrize("lrs, expected", [
    ([0.01, 0.03, 0.01], r"train.lrs lists a rate more than once: \[0.01, 0.03, 0.01\]"),
    ([0.01, 0], "train.lrs.1 must be > 0, got 0"),
    ([-0.1], "train.lrs.0 must be > 0, got -0.1"),
    (["fast"], "train.lrs.0 must be a number, got 'fast'"),
    ([], "train.lrs must be a non-empty list of learning rates"),
    (0.01, "train.lrs must be a non-empty list of learning rates, e.g. .*, got 0.01"),
])
def test_bad_learning_rates_are_refused(params, lrs, expected):
    params["train"]["lrs"] = lrs
    with pytest.raises(SalnError, match=expected):
        validate_all(params)
    with pytest.raises(SalnError, match=expected):
        learning_rates(params)


def diverging_run(params, digits16, tmp_path, lr):
    from saln.augment import augment_spec
    from saln.train import RunInputs, train_config, train_run

    params["train"].update(epochs=2, batch_size=40, device="cpu")
    params["model"].update(arch="resnet18", weights="none")
    spec = augment_spec({**params["augment"], "resize": 16, "test_resize": 16, "test_crop": 16})
    train_run(RunInputs(digits16, spec), train_config(params, lr=lr), "standard", 0, tmp_path,
              progress=False)


def test_an_exploding_loss_stops_the_run_naming_its_rate(params, digits16, tmp_path):
    """At lr 1000 the loss is still finite when it passes 100 x ln(10): that already counts."""
    from saln.train import DivergedError

    with pytest.raises(DivergedError, match=r"training loss reached \S+ \(above 230\) at epoch 1, step \d+ "
                                            r"with learning rate 1000: the rate diverged; lower it"):
        diverging_run(params, digits16, tmp_path, lr=1000)
    assert not (tmp_path / METRICS_FILE).exists()


def test_a_non_finite_loss_stops_the_run_naming_its_rate(params, digits16, tmp_path, monkeypatch):
    """With no bound on a finite loss, the same run goes on until its loss overflows."""
    import saln.train
    from saln.train import DivergedError

    monkeypatch.setattr(saln.train, "DIVERGENCE_FACTOR", float("inf"))
    with pytest.raises(DivergedError, match=r"training loss became non-finite at epoch 1, step \d+ with "
                                            r"learning rate 1000: the rate diverged; lower it"):
        diverging_run(params, digits16, tmp_path, lr=1000)
    assert not (tmp_path / METRICS_FILE).exists()


def test_the_divergence_bound_is_a_hundred_times_chance_loss():
    from saln.train import DivergedError, check_loss

    bound = 100 * np.log(10)
    check_loss(bound, bound, 0.1, 1, 1)
    with pytest.raises(DivergedError, match=r"reached 231 \(above 230\) at epoch 2, step 7 with learning "
                                            r"rate 0.1"):
        check_loss(231.0, bound, 0.1, 2, 7)
    with pytest.raises(DivergedError, match="became non-finite at epoch 1, step 3 with learning rate 1000"):
        check_loss(float("inf"), bound, 1000, 1, 3)


def write_rate(root, method, seed, lr, val_acc=None):
    """A finished rate (metrics with ``val_acc``), or a diverged one when ``val_acc`` is None."""
    d = rate_dir(run_dir(root, "ds", method, seed), lr)
    if val_acc is None:
        record_divergence(d, lr, "training loss became non-finite")
    else:
        d.mkdir(parents=True)
        (d / METRICS_FILE).write_text(json.dumps({"val_acc": val_acc}))


def test_best_lr_skips_diverged_rates_and_unfinished_ones(tmp_path):
    for seed, (small, middle, large) in enumerate([(0.5, 0.6, None), (0.7, 0.8, 0.9)]):
        write_rate(tmp_path, "saln", seed, 0.001, small)
        write_rate(tmp_path, "saln", seed, 0.01, middle)
        write_rate(tmp_path, "saln", seed, 0.1, large)  # seed 0 diverged: seed 1's 0.9 does not count
    write_rate(tmp_path, "random", 0, 0.01, 0.4)  # seed 1 never ran
    summary = choose_best("ds", ["saln", "random"], [0, 1], [0.1, 0.001, 0.01], tmp_path)
    saln = summary["methods"]["saln"]
    assert saln["best_lr"] == 0.01 and saln["diverged"] == ["0.1"]
    assert saln["val_acc"]["0.01"] == pytest.approx(0.7) and saln["val_acc"]["0.1"] is None
    diverged = rate_dir(run_dir(tmp_path, "ds", "saln", 0), 0.1) / DIVERGED_FILE
    assert json.loads(diverged.read_text())["lr"] == 0.1
    assert summary["methods"]["random"]["best_lr"] is None
    with pytest.raises(SalnError) as err:  # random did not diverge: unfinished, and said so, not as diverged
        check_every_method_trained(summary)
    assert str(err.value) == ("ds: random has no rate at which every seed finished (diverged: none): "
                              "rerun its training stage")


def test_a_method_whose_every_rate_diverged_is_refused_in_one_line(tmp_path):
    for lr in (1000, 10):
        write_rate(tmp_path, "saln", 0, lr)
    write_rate(tmp_path, "standard", 0, 1000)
    write_rate(tmp_path, "standard", 0, 10, 0.5)
    summary = choose_best("ds", ["standard", "saln"], [0], [1000, 10], tmp_path)
    assert summary["methods"]["standard"]["best_lr"] == 10
    with pytest.raises(SalnError) as err:
        check_every_method_trained(summary)
    assert str(err.value) == ("ds: every learning rate of saln diverged (10, 1000): add lower rates to "
                              "train.lrs")


@pytest.mark.parametrize("block, key, expected", [
    ("train", "lrr", "unknown params key train.lrr: did you mean train.lrs?"),
    ("reference", "lrs", "unknown params key reference.lrs: did you mean reference.lr?"),
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
