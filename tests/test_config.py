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
    ("lrs", [0.01, 0], "train.lrs.1 must be > 0"),
    ("lrs", [], "train.lrs must be a non-empty list"),
    ("lrs", 0.01, "train.lrs must be a non-empty list"),
    ("lrs", [0.01, "fast"], "train.lrs.1 must be a number"),
    ("lrs", [0.01, 0.03, 0.01], "train.lrs lists a rate more than once"),
    ("eval_subset", -1, "train.eval_subset must be >= 0"),
    ("bn_recalibrate", 0.5, "train.bn_recalibrate must be an integer"),
    ("device", "tpu", "train.device must be one of"),
])
def test_bad_train_values_are_rejected(params, key, value, message):
    params["train"][key] = value
    with pytest.raises(SalnError, match=message.replace("(", r"\(")):
        validate_all(params)


@pytest.mark.parametrize("block, key, value, message", [
    ("train", "lr", 0.01, "unknown params key train.lr: did you mean train.lrs?"),  # the old single rate
    ("sweep", "lrs", [0.003], "unknown params key sweep"),  # the old sweep block: now train.lrs
    ("reference", "lr", 0, "reference.lr must be > 0"),
])
def test_old_rate_keys_and_a_bad_reference_rate_are_rejected(params, block, key, value, message):
    params.setdefault(block, {})[key] = value
    with pytest.raises(SalnError, match=message):
        validate_all(params)


def test_run_config_is_at_the_given_rate_else_the_first_of_the_grid(params):
    params["train"]["lrs"] = [0.02, 0.005]
    assert train_config(params).lr == 0.02
    assert train_config(params, 0.005).lr == 0.005
    assert train_config(params, 0.005).epochs == train_config(params).epochs


def test_reference_model_has_its_own_rate(params):
    """The learners' grid does not move the reference model: it trains at reference.lr."""
    from saln.reference import reference_config, reference_train_config

    params["train"]["lrs"] = [0.5, 0.7]
    ref = reference_config(params)
    cfg = reference_train_config(params, ref)
    assert ref.lr == params["reference"]["lr"] == cfg.lr
    assert (cfg.epochs, cfg.batch_size, cfg.world_size, cfg.log_batches) == (ref.epochs, ref.batch_size, 1, ())


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
