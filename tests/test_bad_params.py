"""Bad params stop the first stage that can tell, as a script would run under `dvc repro`: exit
non-zero, one line on stderr naming the key, no traceback, nothing written. Stage validate refuses
whatever params alone decide, before any other stage runs; stage features refuses a GPU the
machine lacks before loading anything. The slow test runs `dvc repro` itself on a tiny repo."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from saln.config import load_params
from saln.data import SplitConfig, make_splits, split_sizes
from saln.errors import SalnError
from saln.validate import KNOWN_COUNTS, validate_all
from tests.conftest import ROOT


def run_stage(script: str, params: dict, tmp_path: Path, *paths: str, dataset: str | None = None
              ) -> subprocess.CompletedProcess:
    """``stages/<script>`` run from the repo root on ``params``, each of ``paths`` (--name) under tmp_path."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    args = [arg for name in paths for arg in (f"--{name}", str(tmp_path / "out" / name))]
    args += ["--dataset", dataset] if dataset else []
    return subprocess.run([sys.executable, str(ROOT / "stages" / script), "--params",
                           str(tmp_path / "params.yaml"), *args], cwd=ROOT, capture_output=True, text=True)


def assert_refused(done: subprocess.CompletedProcess, tmp_path: Path, expected: str) -> None:
    assert done.returncode != 0
    assert done.stderr.splitlines() == [f"error: {expected}"], done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "out").exists()


def edited(params: dict, key: str, value) -> dict:
    """A copy of ``params`` with the dotted ``key`` set to ``value`` (blocks created as needed)."""
    params = copy.deepcopy(params)
    *blocks, last = key.split(".")
    node = params
    for block in blocks:
        node = node.setdefault(block, {})
    node[last] = value
    return params


NEGATIVE_BETA = "uncertainty.beta must be a finite number >= 0, got -1"


@pytest.mark.parametrize("changes, expected", [
    # Stage active's infodensity strategies read beta (the default lists two of them).
    ({"uncertainty.beta": -1}, NEGATIVE_BETA),
    # Stage active reads it whatever its strategies (and so does an infodensity run).
    ({"uncertainty.beta": -1, "active.strategies": ["maxent_full", "random"]}, NEGATIVE_BETA),
    # 1149 = 1797 digits less test (ceil 20% = 360), validation (144) and reference (144) splits.
    ({"active.per_round": 1000}, "active.seed_size + active.per_round * active.rounds = 20 + 1000 * 5 = "
                                 "5020 labels exceed the pool of 1149 training examples of dataset digits: "
                                 "lower active.rounds or active.per_round"),
    ({"active.seed_size": 1150}, "active.seed_size=1150 is larger than the pool of 1149 training examples "
                                 "of dataset digits"),
    # Scalars where dvc.yaml's matrices need lists (DVC's own error names no key).
    ({"train.seeds": 0}, "train.seeds must be a non-empty list of integers in [0, 2**32), got 0"),
    ({"data.names": "digits"}, "data.names must be a non-empty list of keys of data.sources, got 'digits'"),
    ({"train.methods.baselines": "standard"}, "train.methods.baselines must be a list of methods (dvc.yaml "
                                              "runs a stage per item), got 'standard': write [standard]"),
    ({"train.methods.uncertainty": None}, "train.methods.uncertainty must be a list of methods (dvc.yaml "
                                          "runs a stage per item), got None: write [] to train none"),
    ({"train.lrs": 0.01}, "train.lrs must be a non-empty list of learning rates, e.g. [0.003, 0.01, 0.03], "
                          "got 0.01"),
    ({"trian": {"epochs": 3}}, "unknown params key trian: did you mean train?"),
])
def test_validate_refuses_in_one_line(repo_params, changes, expected):
    """What stage validate checks, in-process (one subprocess below shows the stage prints it alone)."""
    params = repo_params
    for key, value in changes.items():
        params = edited(params, key, value)
    with pytest.raises(SalnError) as err:
        validate_all(params)
    assert str(err.value) == expected and "\n" not in expected


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("key, value, expected", [
    # Non-finite numbers pass no comparison, so each is refused as such, wherever it is read.
    ("train.filter_ratio", NAN, "train.filter_ratio must be a finite number, got nan"),
    ("train.momentum", NAN, "train.momentum must be a finite number, got nan"),
    ("train.weight_decay", INF, "train.weight_decay must be a finite number, got inf"),
    ("train.lrs", [NAN], "train.lrs.0 must be a finite number, got nan"),
    ("augment.hflip", NAN, "augment.hflip must be a finite number, got nan"),
    ("uncertainty.beta", INF, "uncertainty.beta must be a finite number >= 0, got inf"),
    ("reference.lr", NAN, "reference.lr must be a finite number, got nan"),
    ("data.val_fraction", NAN, "data.val_fraction must be a finite number, got nan"),
    ("prune.auto_threshold", INF, "prune.auto_threshold must be a finite number, got inf"),
    # Seeds are integers in [0, 2**32), what numpy's and scikit-learn's generators take.
    ("train.seeds", [-1], "train.seeds must be a non-empty list of integers in [0, 2**32), got [-1]"),
    ("data.split_seed", -1, "data.split_seed must be >= 0, got -1"),
    ("reference.seed", 2 ** 32, "reference.seed must be < 4294967296, got 4294967296"),
    ("prune.seed", -1, "prune.seed must be >= 0, got -1"),
    ("active.seed", -1, "active.seed must be >= 0, got -1"),
    ("features.seed", 1.5, "features.seed must be an integer, got 1.5"),
    # A quoted "false" is a string, not false: refused, not read as true.
    ("train.save_model", "false", "train.save_model must be true or false, got 'false'"),
    ("train.bf16", 1, "train.bf16 must be true or false, got 1"),
])
def test_non_finite_numbers_seeds_out_of_range_and_non_booleans_get_one_line(repo_params, key, value, expected):
    with pytest.raises(SalnError) as err:
        validate_all(edited(repo_params, key, value))
    assert str(err.value) == expected


def test_params_are_read_by_yaml_1_2_as_dvc_reads_them(tmp_path):
    """`1e-3` is a number and `yes` a string to DVC (YAML 1.2); PyYAML's 1.1 rules disagree on both."""
    (tmp_path / "params.yaml").write_text("train:\n  lrs: [1e-3]\n  bf16: yes\n  save_model: .nan\n")
    train = load_params(tmp_path / "params.yaml")["train"]
    assert train["lrs"] == [0.001] and train["bf16"] == "yes" and train["save_model"] != train["save_model"]
    assert yaml.safe_load("lrs: [1e-3]")["lrs"] == ["1e-3"]   # what the 1.1 reader would have made of it


def test_stage_validate_prints_the_one_line_and_writes_nothing(repo_params, tmp_path):
    params = edited(repo_params, "trian", {"epochs": 3})
    assert_refused(run_stage("validate.py", params, tmp_path, "out"), tmp_path,
                   "unknown params key trian: did you mean train?")


def test_stage_validate_passes_the_repo_params(repo_params, tmp_path):
    done = run_stage("validate.py", repo_params, tmp_path, "out")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "out").read_text() == "params.yaml is valid\n"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA device")
def test_a_missing_gpu_stops_stage_features_before_it_loads_anything(repo_params, tmp_path):
    """The prepared data and augment paths do not exist: reading either would fail differently."""
    done = run_stage("features.py", edited(repo_params, "train.device", "cuda"), tmp_path,
                     "prepared", "augment", "out", "probe", dataset="digits")
    assert_refused(done, tmp_path,
                   "train.device is cuda but no CUDA device is visible: set it to auto or cpu")


# The budget check reproduces make_splits' sizes from params alone: it must agree with make_splits.

@pytest.mark.parametrize("val, test, ref", [(0.1, 0.2, 0.1), (0.15, 0.3, 0.0), (0.333, 0.05, 0.25),
                                            (0.5, 0.9, 0.45)])
def test_split_sizes_from_params_match_make_splits(val, test, ref):
    from sklearn.datasets import load_digits

    labels = load_digits().target
    assert KNOWN_COUNTS["digits"] == (len(labels), None)
    cfg = SplitConfig(val_fraction=val, test_fraction=test, reference_fraction=ref, seed=0)
    made = {name: len(indices) for name, indices in make_splits(labels, None, cfg).items()}
    assert split_sizes(len(labels), None, cfg) == made


def test_split_sizes_keep_an_official_test_split():
    labels = np.arange(587) % 10
    official = np.arange(587) >= 500
    cfg = SplitConfig(val_fraction=0.1, test_fraction=0.2, reference_fraction=0.1, seed=3)
    made = {name: len(indices) for name, indices in make_splits(labels, official, cfg).items()}
    assert split_sizes(587, 87, cfg) == made == {"train": 400, "val": 50, "test": 87, "reference": 50}


# ---------------------------------------------------------------------------------------------
# Through `dvc repro`


def dvc_repro(repo: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1"}
    return subprocess.run(["dvc", "repro"], cwd=repo, env=env, capture_output=True, text=True)


def error_lines(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("error: ")]


def write_params(repo: Path, params: dict) -> None:
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.mark.slow
def test_dvc_repro_stops_at_validate_and_at_best_lr_when_every_rate_diverged(tmp_path):
    """An unknown block stops `dvc repro` at validate, before prepare; a method whose only rate
    diverges stops it at best_lr with one line naming the rate; beside a good rate, the good one wins."""
    from tests.test_pipeline import copy_sources, merge, run

    repo = tmp_path / "repo"
    copy_sources(repo)
    params = merge(yaml.safe_load((repo / "params.yaml").read_text()), {
        "data": {"names": ["digits"], "sources": {"digits": {"image_size": 16}}},
        "augment": {"resize": 16, "test_resize": 16, "test_crop": 16},
        "train": {"methods": {"baselines": ["standard"], "spectral": [], "jest": [], "uncertainty": [],
                              "prune": []},
                  "seeds": [0], "epochs": 1, "batch_size": 32, "lrs": [1000]},
    })
    write_params(repo, {**params, "trian": {"epochs": 3}})
    run(["git", "init", "-q"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "tiny"], repo)

    done = dvc_repro(repo)
    assert done.returncode != 0
    assert error_lines(done) == ["error: unknown params key trian: did you mean train?"]
    assert "Traceback" not in done.stdout + done.stderr
    assert "Running stage 'prepare" not in done.stdout and not (repo / "data/prepared/digits").exists()

    write_params(repo, params)
    done = dvc_repro(repo)
    assert done.returncode != 0
    assert error_lines(done) == ["error: digits: every learning rate of standard diverged (1000): add lower "
                                 "rates to train.lrs"]
    assert "Traceback" not in done.stdout + done.stderr
    assert "best_lr@digits" in done.stdout + done.stderr
    run_folder = repo / "results/train/digits/standard/seed0"
    assert json.loads((run_folder / "lr1000/diverged.json").read_text())["lr"] == 1000
    assert not (repo / "results/lr/digits/best.json").exists()

    params["train"]["lrs"] = [1000, 0.01]
    write_params(repo, params)
    done = dvc_repro(repo)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (run_folder / "lr0.01/metrics.json").is_file()
    best = json.loads((repo / "results/lr/digits/best.json").read_text())["methods"]["standard"]
    assert best["best_lr"] == 0.01 and best["diverged"] == ["1000"]
