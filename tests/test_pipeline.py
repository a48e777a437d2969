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
TINY = {
    "data": {"names": ["digits"]},
    "features": {"batch_size": 256},
    "train": {"methods": {"baselines": ["standard", "random"], "spectral": ["saln"], "jest": ["jest"],
                          "uncertainty": ["infodensity"], "prune": ["prune_easy"]},
              "seeds": [0], "epochs": 1, "batch_size": 32, "filter_ratio": 0.8},
}


def run(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
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


def metrics_by_method(repo: Path) -> dict:
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], repo))
    files = next(iter(shown.values()))["data"]
    return {path.split("/")[3]: body["data"] for path, body in files.items()
            if path.startswith("results/train/")}


def test_repro_trains_every_method_and_reports(tiny_repo):
    metrics = metrics_by_method(tiny_repo)
    assert set(metrics) == {"standard", "random", "saln", "jest", "infodensity", "prune_easy"}
    for values in metrics.values():
        assert 0 <= values["test_acc"] <= 1
    assert metrics["saln"]["images_backprop"] == metrics["random"]["images_backprop"]
    assert metrics["saln"]["images_backprop"] * 5 <= metrics["standard"]["images_backprop"]
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
    return {name for name in status if name.startswith(("train_", "sweep_"))}


@pytest.mark.parametrize("key, value, upstream, stale", [
    ("jest.n_chunks", 2, None, {"train_jest@digits-jest-0"}),
    ("uncertainty.beta", 0.5, None, {"train_uncertainty@digits-infodensity-0"}),
    ("prune.k", 3, "prune@digits", {"train_prune@digits-prune_easy-0"}),
    ("reference.epochs", 2, "reference@digits", {"train_jest@digits-jest-0"}),
])
def test_a_param_change_makes_stale_only_the_runs_that_read_it(tiny_repo, key, value, upstream, stale):
    """Each training family reads only its own params and inputs: no standard or random run reruns.
    For a key of an upstream stage, that stage reruns first, as `dvc repro` would."""
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
    out = run(["dvc", "exp", "run", "-S", "train.filter_ratio=0.5"], tiny_repo)
    assert "Running stage 'train_spectral@digits-saln-0'" in out
    assert "Running stage 'prepare" not in out and "Running stage 'features" not in out
    diff = run(["dvc", "params", "diff", "--all"], tiny_repo)
    assert "train.filter_ratio" in diff and "0.5" in diff
    metrics_diff = run(["dvc", "metrics", "diff"], tiny_repo)
    assert "images_backprop" in metrics_diff and "keep_per_batch" in metrics_diff


def test_bad_param_stops_before_any_work(tiny_repo):
    env_bad = subprocess.run(["dvc", "exp", "run", "-S", "train.filter_ratio=1.5"], cwd=tiny_repo,
                             capture_output=True, text=True,
                             env={**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"})
    assert env_bad.returncode != 0
    output = env_bad.stdout + env_bad.stderr
    assert "error: train.filter_ratio must be < 1, got 1.5" in output
    assert "Running stage 'train" not in output

