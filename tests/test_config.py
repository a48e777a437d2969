"""Bad params are rejected with one clear line before any work."""

import pytest

from saln.data import source_config
from saln.train import train_config
from saln.validate import validate_all
from saln.errors import SalnError


def test_committed_params_are_valid(params):
    validate_all(params)


@pytest.mark.parametrize("key, value, message", [
    ("filter_ratio", 1.0, "train.filter_ratio must be < 1"),
    ("filter_ratio", -0.1, "train.filter_ratio must be >= 0"),
    ("epochs", 0, "train.epochs must be >= 1"),
    ("batch_size", -4, "train.batch_size must be >= 1"),
    ("batch_size", 8, "BatchNorm needs at least 2"),  # 8 * 0.2 keeps 1 image
    ("lr", 0, "train.lr must be > 0"),
    ("device", "tpu", "train.device must be one of"),
])
def test_bad_train_values_are_rejected(params, key, value, message):
    params["train"][key] = value
    with pytest.raises(SalnError, match=message.replace("(", r"\(")):
        validate_all(params)


def test_unknown_method_is_rejected(params):
    params["train"]["methods"] = {"baselines": ["standard", "magic"]}
    with pytest.raises(SalnError, match="unknown method 'magic'"):
        validate_all(params)


def test_missing_dataset_path_is_rejected(params, tmp_path):
    params["data"]["sources"]["mine"] = {"kind": "npz", "path": str(tmp_path / "nope.npz"),
                                         "image_size": 32}
    params["data"]["names"] = ["mine"]
    with pytest.raises(SalnError, match="data.sources.mine.path must point to an existing npz"):
        validate_all(params)


def test_unknown_dataset_kind_and_name(params):
    params["data"]["sources"]["digits"]["kind"] = "mnist"
    with pytest.raises(SalnError, match="kind must be one of"):
        source_config(params, "digits")
    with pytest.raises(SalnError, match="not in data.sources"):
        source_config(params, "imagenet")


def test_weights_must_be_known_or_a_file(params):
    params["model"]["weights"] = "/no/such/file.pth"
    with pytest.raises(SalnError, match="model.weights must be none, imagenet or an existing file"):
        train_config(params)


def test_keep_count_follows_algorithm_1(params):
    params["train"].update(batch_size=64, filter_ratio=0.8)
    assert train_config(params).keep == int(64 * (1 - 0.8)) == 12


def test_stage_prints_one_line_and_exits_2(params, tmp_path, monkeypatch, capsys):
    from saln.errors import one_line_errors

    @one_line_errors
    def stage():
        raise SalnError("train.epochs must be >= 1, got 0")

    with pytest.raises(SystemExit) as exit_info:
        stage()
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: train.epochs must be >= 1, got 0\n"
