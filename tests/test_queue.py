"""DVC's experiment queue on CPU: three queued experiments run by two workers end with the same
accuracy and loss as the same experiments run one at a time in the workspace.

Queued experiments run in temporary copies of the last commit (.dvc/tmp/exps), so they only see
committed files; the run-cache is shared through .dvc/cache, which is why it is emptied before
the runs alone (otherwise they would restore the queued results instead of training).
"""

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.test_pipeline import TINY, TINY_LR, make_tiny_repo, merge, run, tool_env

pytestmark = pytest.mark.slow

# Two methods that both read train.filter_ratio, so each experiment below retrains two runs.
QUEUE_TINY = merge(json.loads(json.dumps(TINY)), {
    "train": {"methods": {"baselines": ["random"], "spectral": ["saln"], "jest": [], "uncertainty": [], "prune": []}},
    "reference": {"epochs": 1},  # the reference stage still runs (a matrix over data.names)
})
EXPERIMENTS = {
    "queue-fr05": ["train.filter_ratio=0.5"],
    "queue-fr075": ["train.filter_ratio=0.75"],
    "queue-seed1": ["train.seeds=[1]"],
}
TRAIN_STAGES = ("train_baselines@digits-random-", "train_spectral@digits-saln-")
METRICS = ("test_acc", "test_loss", "val_acc", "train_loss", "images_backprop")  # not timings or provenance
QUEUE_TIMEOUT_S = 1200


@pytest.fixture(scope="module")
def queue_repo(tmp_path_factory) -> Path:
    """The tiny_repo of test_pipeline with two methods and a one-epoch reference model."""
    return make_tiny_repo(tmp_path_factory.mktemp("queue_repo"), QUEUE_TINY)


def set_flags(overrides: list[str]) -> list[str]:
    return [arg for value in overrides for arg in ("-S", value)]


def queue_status(repo: Path) -> dict[str, str]:
    """Experiment name -> Queued | Running | Success | Failed, from `dvc queue status`'s table."""
    statuses = {}
    for line in run(["dvc", "queue", "status"], repo).splitlines():
        words = line.split()
        if len(words) >= 3 and words[1] in EXPERIMENTS:
            statuses[words[1]] = words[-1]
    return statuses


def wait_for_queue(repo: Path, timeout_s: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout_s
    while True:
        statuses = queue_status(repo)
        if len(statuses) == len(EXPERIMENTS) and all(s in ("Success", "Failed") for s in statuses.values()):
            return statuses
        if time.monotonic() > deadline:
            pytest.fail(f"queue not done after {timeout_s} s: {statuses}")
        time.sleep(3)


def run_metrics_files(seed: int) -> set[str]:
    """The metrics.json of every training run of one seed (one rate each: TINY's)."""
    return {f"results/train/digits/{method}/seed{seed}/lr{TINY_LR:g}/metrics.json" for method in ("random", "saln")}


def training_metrics(repo: Path) -> dict[str, dict]:
    """Experiment name -> {metrics file of a training run of its seed: its accuracy/loss metrics}.

    A run's metrics.json is an uncached out, not a DVC metric: an experiment's commit holds it (its
    tree also keeps the baseline's runs of other seeds, which the experiment did not touch)."""
    shown = run(["dvc", "exp", "show", "--json"], repo)
    found = {}
    for commit in json.loads(shown[shown.index("["):]):
        for exp in commit.get("experiments") or []:
            name, rev = exp["name"], exp["revs"][0]["rev"]
            seed = 1 if name.endswith("seed1") else 0
            tree = set(subprocess.run(["git", "ls-tree", "-r", "--name-only", rev, "results/train"], cwd=repo,
                                      capture_output=True, text=True, check=True).stdout.split())
            found[name] = {}
            for path in run_metrics_files(seed) & tree:
                body = json.loads(subprocess.run(["git", "show", f"{rev}:{path}"], cwd=repo, capture_output=True,
                                                 text=True, check=True).stdout)
                found[name][path] = {key: body[key] for key in METRICS}
    return found


def test_queued_experiments_match_the_same_experiments_run_alone(queue_repo):
    repo = queue_repo
    for name, overrides in EXPERIMENTS.items():
        run(["dvc", "exp", "run", "--queue", "-n", name, *set_flags(overrides)], repo)
    started = time.monotonic()
    assert "Started '2' new experiments task queue workers" in run(["dvc", "queue", "start", "--jobs", "2"], repo)
    try:
        statuses = wait_for_queue(repo, QUEUE_TIMEOUT_S)
    finally:  # workers exit once the queue is empty; after a timeout, stop them and their runs
        subprocess.run(["dvc", "queue", "stop", "--kill"], cwd=repo, capture_output=True, env=tool_env())
    queued_s = time.monotonic() - started
    for name, status in statuses.items():
        logs = run(["dvc", "queue", "logs", name], repo)
        assert status == "Success", f"{name}: {status}\n{logs[-3000:]}"
        for stage in TRAIN_STAGES:  # trained, not restored from the run-cache
            assert f"Running stage '{stage}" in logs, logs[-3000:]
    queued = training_metrics(repo)

    shutil.rmtree(repo / ".dvc" / "cache" / "runs", ignore_errors=True)
    started = time.monotonic()
    for name, overrides in EXPERIMENTS.items():
        run(["git", "checkout", "--", "."], repo)  # back to the committed params and outs
        run(["dvc", "checkout", "--force"], repo)
        out = run(["dvc", "exp", "run", "-n", name.replace("queue-", "alone-"), *set_flags(overrides)], repo)
        for stage in TRAIN_STAGES:
            assert f"Running stage '{stage}" in out, out[-3000:]
    alone_s = time.monotonic() - started
    alone = training_metrics(repo)
    print(f"queued (--jobs 2): {queued_s:.0f} s; the same three alone, one after another: {alone_s:.0f} s")

    seed = {"queue-fr05": 0, "queue-fr075": 0, "queue-seed1": 1}
    for name in EXPERIMENTS:
        assert set(queued[name]) == run_metrics_files(seed[name])
        assert queued[name] == alone[name.replace("queue-", "alone-")], name
    backprop = {name: queued[name][f"results/train/digits/saln/seed{seed[name]}/lr{TINY_LR:g}/metrics.json"]
                ["images_backprop"] for name in EXPERIMENTS}
    assert backprop["queue-fr05"] > backprop["queue-fr075"]  # each ran with its own override
