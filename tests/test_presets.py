"""Presets become `dvc exp run -S` flags that parse back to the same values and name real params."""

import yaml

from saln.validate import validate_all
from saln.presets import flatten, set_param_flags
from tests.conftest import ROOT


def test_paper_preset_flags_round_trip_and_name_existing_keys(repo_params):
    preset = yaml.safe_load((ROOT / "presets/paper.yaml").read_text())
    flags = set_param_flags(preset)
    assert flags[::2] == ["-S"] * (len(flags) // 2)
    known = flatten(repo_params)
    for pair in flags[1::2]:
        key, text = pair.split("=", 1)
        assert key in known, f"{key} is not a key of params.yaml"
        assert " " not in pair
        assert yaml.safe_load(text) == flatten(preset)[key]


def test_paper_preset_is_valid_apart_from_network_resources(params):
    preset = flatten(yaml.safe_load((ROOT / "presets/paper.yaml").read_text()))
    for key, value in preset.items():
        section, *rest = key.split(".")
        node = params[section]
        for part in rest[:-1]:
            node = node[part]
        node[rest[-1]] = value
    params["model"]["weights"] = params["features"]["weights"] = "none"  # no download in tests
    validate_all(params)
