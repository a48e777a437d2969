"""End to end: `dvc repro` on a tiny configuration in a temporary copy of the repo, then an experiment."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

pytestmark = pytest.mark.slow
TINY_LR = 0.01  # one rate: each run trains once (the walk over several is tests/test_train.py's)
TINY = {
    "data": {"names": ["digits"]},
    "features": {"batch_size": 256},
    "train": {"methods": {"baselines": ["standard", "random"], "spectral": ["saln"], "jest": ["jest"],
                          "uncertainty": ["infodensity"], "prune": ["prune_easy"]},
              "seeds": [0], "epochs": 1, "batch_size": 32, "filter_ratio": 0.8, "lrs": [TINY_LR],
              # the DVC mechanics, not the protocol: a selector's image budget would take 5x the steps
              # (tests/test_train.py walks an image budget's fractions through the stage)
              "budget": "epochs", "budget_fractions": [1.0]},
}
# Every training process of TINY: one per (dataset, method, seed), covering all of train.lrs.
TRAIN_RUNS = {"train_baselines@digits-standard-0", "train_baselines@digits-random-0",
              "train_spectral@digits-saln-0", "train_jest@digits-jest-0",
              "train_uncertainty@digits-infodensity-0", "train_prune@digits-prune_easy-0"}


def tool_env() -> dict[str, str]:
    """The environment of dvc and git here: this interpreter's bin/ (its dvc) first on PATH."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}


def run(cmd: list[str], cwd: Path) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=tool_env(), capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def copy_sources(repo: Path) -> None:
    """The repo's tracked and untracked-but-not-ignored files, without results, reports or dvc.lock."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    for name in listed:
        if name.startswith(("results/", "reports/")) or name == "dvc.lock" or not (ROOT / name).is_file():
            continue
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, repo / name)


def merge(base: dict, override: dict) -> dict:
    for key, value in override.items():
        base[key] = merge(base.get(key, {}), value) if isinstance(value, dict) else value
    return base


def make_tiny_repo(repo: Path, override: dict) -> Path:
    """The repo's tracked files (no results, no lock) with ``override`` on 16 px digits, as a fresh
    git repo, reproduced and committed (queued experiments run from the last commit)."""
    copy_sources(repo)
    params = merge(yaml.safe_load((repo / "params.yaml").read_text()), override)
    params["data"]["sources"]["digits"]["image_size"] = 16
    params["augment"].update(resize=16, test_resize=16, test_crop=16)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "tiny"], repo)
    run(["dvc", "repro"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "repro"], repo)
    return repo


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory) -> Path:
    return make_tiny_repo(tmp_path_factory.mktemp("repo"), TINY)


def rate_metrics(repo: Path) -> dict[tuple[str, str], dict]:
    """(method, rate folder) -> metrics.json of every finished rate under results/train/digits
    (uncached, not a DVC metric: read from the files)."""
    found = {}
    for path in (repo / "results/train/digits").glob("*/seed0/lr*/metrics.json"):
        found[(path.parts[-4], path.parts[-2])] = json.loads(path.read_text())
    return found


def metrics_by_method(repo: Path) -> dict:
    found = rate_metrics(repo)
    assert {rate for _, rate in found} == {f"lr{TINY_LR:g}"}, sorted(found)
    return {method: values for (method, _), values in found.items()}


def test_repro_trains_every_method_and_reports(tiny_repo):
    metrics = metrics_by_method(tiny_repo)
    methods = {"standard", "random", "saln", "jest", "infodensity", "prune_easy"}
    assert set(metrics) == methods
    for values in metrics.values():
        assert 0 <= values["test_acc"] <= 1 and values["lr"] == TINY_LR
    assert metrics["saln"]["images_backprop"] == metrics["random"]["images_backprop"]
    assert metrics["saln"]["images_backprop"] * 5 <= metrics["standard"]["images_backprop"]
    for method in methods:  # the cached half of a run: its head and logged selections, no whole network
        models = tiny_repo / f"results/models/digits/{method}/seed0/lr{TINY_LR:g}"
        assert sorted(p.name for p in models.iterdir()) == ["head.pt", "selections.npz"], method
    best = json.loads((tiny_repo / "results/lr/digits/best.json").read_text())
    assert {m: e["best_lr"] for m, e in best["methods"].items()} == {m: TINY_LR for m in methods}
    summary = json.loads((tiny_repo / "results/summary/digits.json").read_text())  # the DVC metrics file
    assert {m: e["best_lr"] for m, e in summary.items()} == {m: TINY_LR for m in methods}
    assert summary["saln"][f"lr{TINY_LR:g}"]["images_backprop"]["mean"] == metrics["saln"]["images_backprop"]
    assert "| saln |" in (tiny_repo / "reports/metrics.md").read_text()
    assert "up to date" in run(["dvc", "status"], tiny_repo).lower()


def test_remote_push_then_pull_into_a_fresh_clone_finds_nothing_stale(tiny_repo, tmp_path):
    """A second machine gets every result from a DVC remote without rerunning anything: the cached
    outs hold nothing that varies by run (timings live in uncached metrics, committed to git).
    `--all-commits` pushes every commit's outs, not the workspace's (an experiment may have left
    its own there); the remote is set in .dvc/config.local, which every commit then sees."""
    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "--local", "-f", "-d", "local", str(remote)], tiny_repo)
    run(["dvc", "push", "--all-commits"], tiny_repo)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(tiny_repo), str(clone)], tmp_path)
    run(["dvc", "remote", "add", "--local", "-f", "-d", "local", str(remote)], clone)
    run(["dvc", "pull"], clone)
    status = run(["dvc", "status"], clone)
    assert "up to date" in status.lower(), status
    assert (clone / "reports/report.md").is_file()


def stale_training_runs(repo: Path) -> set[str]:
    status = json.loads(run(["dvc", "status", "--json"], repo).strip().splitlines()[-1])
    return {name for name in status if name.startswith("train_")}


@pytest.mark.parametrize("key, value, upstream, stale", [
    ("jest.n_chunks", 2, None, {"train_jest@digits-jest-0"}),
    ("uncertainty.beta", 0.5, None, {"train_uncertainty@digits-infodensity-0"}),
    ("prune.k", 3, "prune@digits", {"train_prune@digits-prune_easy-0"}),
    ("reference.epochs", 2, "reference@digits", {"train_jest@digits-jest-0"}),
    ("reference.lr", 0.003, "reference@digits", {"train_jest@digits-jest-0"}),  # its own rate, not train.lrs
    ("train.lrs", [TINY_LR, 0.03], None, TRAIN_RUNS),  # a process walks every rate: each one reruns
    ("train.bn_recalibrate", 16, None, TRAIN_RUNS),
])
def test_a_param_change_makes_stale_only_the_runs_that_read_it(tiny_repo, key, value, upstream, stale):
    """Each training family reads only its own params and inputs: no standard or random run reruns.
    For a key of an upstream stage, that stage reruns first, as `dvc repro` would. A stale run is
    one (dataset, method, seed) process, with every rate of train.lrs."""
    params = yaml.safe_load((tiny_repo / "params.yaml").read_text())
    block, name = key.split(".")
    params[block][name] = value
    (tiny_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        if upstream:
            run(["dvc", "repro", "--single-item", upstream], tiny_repo)
        assert stale_training_runs(tiny_repo) == stale
    finally:
        run(["git", "checkout", "--", "."], tiny_repo)
        run(["dvc", "checkout", "--force"], tiny_repo)
    assert stale_training_runs(tiny_repo) == set()


def test_experiment_reruns_only_what_depends_on_the_param(tiny_repo):
    before = metrics_by_method(tiny_repo)
    out = run(["dvc", "exp", "run", "-S", "train.filter_ratio=0.5"], tiny_repo)
    assert "Running stage 'train_spectral@digits-saln-0'" in out
    assert "Running stage 'prepare" not in out and "Running stage 'features" not in out
    diff = run(["dvc", "params", "diff", "--all"], tiny_repo)
    assert "train.filter_ratio" in diff and "0.5" in diff
    after = metrics_by_method(tiny_repo)  # the experiment's results, in the workspace
    assert after["saln"]["keep_per_batch"] == 16 > before["saln"]["keep_per_batch"]  # batch 32, keep half
    assert after["saln"]["images_backprop"] > before["saln"]["images_backprop"]
    assert after["standard"]["images_backprop"] == before["standard"]["images_backprop"]
    assert "images_backprop" in run(["dvc", "metrics", "diff"], tiny_repo)  # through results/summary


def test_bad_param_stops_before_any_work(tiny_repo):
    env_bad = subprocess.run(["dvc", "exp", "run", "-S", "train.filter_ratio=1.5"], cwd=tiny_repo,
                             capture_output=True, text=True, env=tool_env())
    assert env_bad.returncode != 0
    output = env_bad.stdout + env_bad.stderr
    assert "error: train.filter_ratio must be < 1, got 1.5" in output
    assert "Running stage 'train" not in output

