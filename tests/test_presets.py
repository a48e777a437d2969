"""Presets become `dvc exp run -S` flags that parse back to the same values and name real params."""

import pytest
import yaml

from saln.validate import validate_all
from saln.presets import flatten, set_param_flags
from tests.conftest import ROOT

PRESETS = sorted(p.name for p in (ROOT / "presets").glob("*.yaml"))


def load_preset(name: str) -> dict:
    return yaml.safe_load((ROOT / "presets" / name).read_text())


def test_every_preset_is_tested():
    assert {"all_methods.yaml", "cifar10_subset.yaml", "paper.yaml", "scratch.yaml"} <= set(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_flags_round_trip_and_name_existing_keys(repo_params, name):
    preset = load_preset(name)
    flags = set_param_flags(preset)
    assert flags[::2] == ["-S"] * (len(flags) // 2)
    known = flatten(repo_params)
    for pair in flags[1::2]:
        key, text = pair.split("=", 1)
        # data.sources.<name> entries are whole sources: a preset may add one params.yaml lacks.
        assert key in known or key.startswith("data.sources."), f"{name}: {key} is not a key of params.yaml"
        assert " " not in pair
        assert yaml.safe_load(text) == flatten(preset)[key]


@pytest.mark.parametrize("name", PRESETS)
def test_preset_is_valid_apart_from_network_resources(params, name):
    preset = flatten(load_preset(name))
    for key, value in preset.items():
        section, *rest = key.split(".")
        node = params[section]
        for part in rest[:-1]:
            node = node.setdefault(part, {})
        node[rest[-1]] = value
    params["model"]["weights"] = params["features"]["weights"] = "none"  # no download in tests
    validate_all(params)


@pytest.mark.parametrize("name", PRESETS)
def test_no_preset_names_the_old_single_rate_or_the_sweep(name):
    """train.lr and sweep.lrs became the one grid train.lrs; the reference model has reference.lr."""
    preset = flatten(load_preset(name))
    assert "train.lr" not in preset and not any(key.startswith("sweep.") for key in preset)


def test_paper_preset_keeps_the_papers_one_rate():
    preset = flatten(load_preset("paper.yaml"))
    assert preset["train.lrs"] == [0.001] and preset["reference.lr"] == 0.001


def test_cifar10_subset_preset_is_the_budgeted_protocol_and_brackets_every_best_rate_seen():
    """Best rates seen there at a constant rate: 0.003 (every selector) and 0.01 (standard): each has a rate on
    both sides. Every method gets standard's images at a decaying rate; the fractions give equal epochs (keep /
    B), standard's flattening (0.8) and the full budget; at least 3 seeds."""
    preset = flatten(load_preset("cifar10_subset.yaml"))
    lrs = preset["train.lrs"]
    assert lrs == sorted(lrs) and all(min(lrs) < best < max(lrs) for best in (0.003, 0.01))
    assert len(preset["train.seeds"]) >= 3 and preset["reference.lr"] == 0.01
    assert (preset["train.budget"], preset["train.schedule"]) == ("images", "linear")
    assert preset["train.budget_fractions"] == [0.1875, 0.8, 1.0]
    assert "rholoss" in preset["train.methods.jest"]
