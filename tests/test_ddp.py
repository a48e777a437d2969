"""Data-parallel training (saln/distributed.py, DistributedTrainer) on CPU: gloo, 2 processes.

Two processes train the same run as one process does: the same kept images at every step, and
parameters equal up to float rounding. The model here has no BatchNorm: on CPU, where there is no
SyncBatchNorm, each rank's BatchNorm normalises its own shard, so a BatchNorm learner follows the
single-process run only approximately (a ResNet-18 run is smoke-tested instead). One spawn of two
processes runs every distributed scenario; the assertions read what they wrote.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from saln import distributed
from saln import train as train_module
from saln.augment import AugmentSpec
from saln.distributed import Group, shard_bounds
from saln.errors import SalnError
from saln.train import DivergedError, check_world, train_config, train_run
from saln.transforms import augment_draws, train_pipeline
from tests.test_jest import tiny_config as jest_tiny_config
from tests.test_resume import Killed, assert_same_run, tiny_inputs

ROOT = Path(__file__).resolve().parents[1]
WORLD = 2
METHODS = ("standard", "saln", "jest")
REL_TOL = 1e-5  # parameters after 10 steps: DDP sums gradients in another order than one process


class TinyNet(nn.Module):
    """conv -> ReLU -> global pool -> fc: a learner without BatchNorm, ``fc`` its classifier."""

    def __init__(self, classes: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten())
        self.fc = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x))


def tiny_net(arch: str, weights: str, num_classes: int) -> nn.Module:
    return TinyNet(num_classes)


def ddp_config(world_size: int, **overrides):
    """80 training images in 5 batches of 15 per epoch; kept 5 of 15 (shards 3 + 2), standard 15 (8 + 7)."""
    return jest_tiny_config(**{"epochs": 2, "batch_size": 15, "filter_ratio": 0.65, "weight_decay": 5e-4,
                               "log_batches": (0, 1, 2, 3, 4), "world_size": world_size, **overrides})


def record_steps(cls, steps: list) -> None:
    """Wrap ``cls.step`` to append every step's kept dataset indices to ``steps``."""
    real = cls.step

    def step(self, idx, pass_number):
        result = real(self, idx, pass_number)
        steps.append(result.kept.cpu().numpy().copy())
        return result

    cls.step = step


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# What each of the two processes runs (spawned: a fresh interpreter each)


def ddp_worker(rank: int, port: int, tmp: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD))
    torch.set_num_threads(1)
    import saln.selection.all  # noqa: F401  (registers every selector)

    tmp = Path(tmp)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)  # train_run joins it
    try:
        report = {"gather": gather_job(rank)}
        real_model = train_module.build_model
        train_module.build_model = tiny_net
        report["steps"] = matching_runs(rank, tmp)
        report["resume"] = resume_job(rank, tmp)
        report["diverged"] = diverge_job(rank, tmp)
        train_module.build_model = real_model
        report["resnet_returned_none"] = resnet_job(rank, tmp)
        (tmp / f"report{rank}.json").write_text(json.dumps(report))
    finally:
        dist.destroy_process_group()


def gather_job(rank: int) -> list:
    """all_gather_rows with shards of unequal length, sizes given and sizes gathered."""
    rows = torch.arange(3 * (rank + 1), dtype=torch.float32).reshape(rank + 1, 3) + 100 * rank
    return [distributed.all_gather_rows(rows, [1, 2]).tolist(), distributed.all_gather_rows(rows).tolist()]


def matching_runs(rank: int, tmp: Path) -> dict:
    steps = {}
    for method in METHODS:
        steps[method] = []
        real = train_module.DistributedTrainer.step
        record_steps(train_module.DistributedTrainer, steps[method])
        try:
            out = train_run(tiny_inputs(method), ddp_config(WORLD), method, 0, tmp / "ddp" / method / f"rank{rank}",
                            progress=False)
        finally:
            train_module.DistributedTrainer.step = real
        assert (out is None) == (rank != 0)
    return {m: [s.tolist() for s in v] for m, v in steps.items()}


def resume_job(rank: int, tmp: Path) -> dict:
    """jest killed after epoch 1's checkpoint, then resumed; python's RNG is made to differ per rank."""
    cfg, ck, out = ddp_config(WORLD), tmp / "ck" / "seed0.pt", tmp / "resumed" / f"rank{rank}"
    random.seed(100 + rank)  # training never draws from it: a resumed rank must get its own back
    saved = random.getstate()
    real_epoch = train_module.run_epoch

    def killed_in_epoch_2(state, live, split, plan, cfg, method, this, *rest):
        if this.number == 2:
            raise Killed
        return real_epoch(state, live, split, plan, cfg, method, this, *rest)

    train_module.run_epoch = killed_in_epoch_2
    try:
        train_run(tiny_inputs("jest"), cfg, "jest", 0, out, progress=False, checkpoint=ck, checkpoint_key="k")
    except Killed:
        pass
    finally:
        train_module.run_epoch = real_epoch
    dist.barrier()  # rank 1 may get here while rank 0 is still writing the checkpoint
    payload = torch.load(ck, weights_only=True)
    if rank == 0:
        shutil.rmtree(out)  # DVC deletes a stage's outs before rerunning it
    random.seed(7)
    train_run(tiny_inputs("jest"), cfg, "jest", 0, out, progress=False, checkpoint=ck, checkpoint_key="k")
    dist.barrier()  # rank 0 deletes the checkpoint once it has written the outputs
    return {"ranks_in_checkpoint": len(payload["rng_by_rank"]), "epoch": payload["epoch"],
            "own_python_rng_restored": random.getstate() == saved, "checkpoint_left": ck.exists()}


def diverge_job(rank: int, tmp: Path) -> str:
    """Rank 1 alone sees a NaN loss at the third step: every rank must stop there, none hang."""
    real = train_module.DistributedTrainer.learn_shard
    calls = []

    def nan_on_rank_1(self, x, y, kept):
        ce_sum, correct = real(self, x, y, kept)
        calls.append(1)
        return (ce_sum * float("nan"), correct) if rank == 1 and len(calls) == 3 else (ce_sum, correct)

    train_module.DistributedTrainer.learn_shard = nan_on_rank_1
    try:
        train_run(tiny_inputs("standard"), ddp_config(WORLD), "standard", 0, tmp / "nan" / f"rank{rank}",
                  progress=False)
    except DivergedError as err:
        return str(err)
    finally:
        train_module.DistributedTrainer.learn_shard = real
    return "no error"


def resnet_job(rank: int, tmp: Path) -> bool:
    """The real learner (ResNet-18, BatchNorm per rank on CPU) trains under DDP; rank 0 writes."""
    out = train_run(tiny_inputs("standard"), ddp_config(WORLD, epochs=1), "standard", 0,
                    tmp / "resnet" / f"rank{rank}", progress=False, curves=False)
    return out is None


# ---------------------------------------------------------------------------------------------
# Fixtures: the two-process runs once, and the single-process runs they are compared with


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory) -> tuple[Path, list[dict]]:
    tmp = tmp_path_factory.mktemp("ddp")
    mp.spawn(ddp_worker, args=(free_port(), str(tmp)), nprocs=WORLD, join=True)
    return tmp, [json.loads((tmp / f"report{r}.json").read_text()) for r in range(WORLD)]


@pytest.fixture(scope="module")
def single_runs(tmp_path_factory) -> tuple[Path, dict]:
    tmp, steps, threads = tmp_path_factory.mktemp("single"), {}, torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp_:
        mp_.setattr(train_module, "build_model", tiny_net)
        for method in METHODS:
            steps[method] = []
            with pytest.MonkeyPatch.context() as rec:
                rec.setattr(train_module.Trainer, "step", train_module.Trainer.step)
                record_steps(train_module.Trainer, steps[method])
                train_run(tiny_inputs(method), ddp_config(1), method, 0, tmp / method, progress=False)
    torch.set_num_threads(threads)
    return tmp, {m: [s.tolist() for s in v] for m, v in steps.items()}


def max_relative_difference(a: dict, b: dict) -> float:
    return max(float((a[k].double() - b[k].double()).abs().max() / b[k].double().abs().max().clamp_min(1e-12))
               for k in b if b[k].is_floating_point())


# ---------------------------------------------------------------------------------------------
# Two processes = one process


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_ddp_selects_the_same_images_at_every_step(ddp_runs, single_runs, method):
    (ddp_dir, reports), (single_dir, single_steps) = ddp_runs, single_runs
    assert len(single_steps[method]) == 10  # 2 epochs of 5 batches
    for report in reports:  # both ranks trained on the same global kept sets
        assert report["steps"][method] == single_steps[method]
    with np.load(ddp_dir / "ddp" / method / "rank0" / "selections.npz") as a, \
            np.load(single_dir / method / "selections.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name])
    assert not (ddp_dir / "ddp" / method / "rank1").exists()  # only rank 0 writes


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_ddp_parameters_and_metrics_match_one_process(ddp_runs, single_runs, method):
    (ddp_dir, _), (single_dir, _) = ddp_runs, single_runs
    a = torch.load(ddp_dir / "ddp" / method / "rank0" / "model.pt", weights_only=True)
    b = torch.load(single_dir / method / "model.pt", weights_only=True)
    assert a.keys() == b.keys()
    with torch.random.fork_rng():
        torch.manual_seed(0)  # build_trainer seeds 0, then builds the learner
        initial = TinyNet(3).state_dict()
    assert max_relative_difference(initial, b) > 1e-2  # the run did move the weights
    assert max_relative_difference(a, b) < REL_TOL
    ma, mb = (json.loads((d / "metrics.json").read_text())
              for d in (ddp_dir / "ddp" / method / "rank0", single_dir / method))
    for key in ("images_backprop", "images_scored", "keep_per_batch", "train_acc", "val_acc", "test_acc"):
        assert ma[key] == mb[key], key
    for key in ("train_loss", "val_loss", "test_loss"):
        assert ma[key] == pytest.approx(mb[key], rel=REL_TOL), key


@pytest.mark.slow
def test_ddp_killed_run_resumes_every_rank_to_the_uninterrupted_result(ddp_runs):
    tmp, reports = ddp_runs
    for report in reports:
        assert report["resume"] == {"ranks_in_checkpoint": WORLD, "epoch": 1, "own_python_rng_restored": True,
                                    "checkpoint_left": False}
    assert_same_run(tmp / "ddp" / "jest" / "rank0", tmp / "resumed" / "rank0")


@pytest.mark.slow
def test_ddp_non_finite_loss_on_one_rank_stops_every_rank(ddp_runs):
    _, reports = ddp_runs
    for report in reports:
        assert report["diverged"].startswith("training loss became non-finite at epoch 1, step 3 with learning "
                                             "rate 0.01:"), report["diverged"]


@pytest.mark.slow
def test_ddp_all_gather_rows_of_unequal_shards(ddp_runs):
    expected = [[0.0, 1.0, 2.0], [100.0, 101.0, 102.0], [103.0, 104.0, 105.0]]
    for report in ddp_runs[1]:
        assert report["gather"] == [expected, expected]


@pytest.mark.slow
def test_ddp_batchnorm_learner_trains_and_rank_0_alone_writes(ddp_runs):
    tmp, reports = ddp_runs
    assert [r["resnet_returned_none"] for r in reports] == [False, True]
    metrics = json.loads((tmp / "resnet" / "rank0" / "metrics.json").read_text())
    assert metrics["images_backprop"] == 5 * 15 and np.isfinite(metrics["train_loss"])
    assert torch.load(tmp / "resnet" / "rank0" / "model.pt", weights_only=True)["fc.weight"].shape == (3, 512)
    assert not (tmp / "resnet" / "rank1").exists()


# ---------------------------------------------------------------------------------------------
# Pieces, in one process


def test_ddp_shard_bounds_split_evenly_in_order():
    assert shard_bounds(5, 2) == [(0, 3), (3, 5)]
    assert shard_bounds(12, 64)[:13] == [(r, r + 1) for r in range(12)] + [(12, 12)]
    for n in range(0, 20):
        for w in range(1, 6):
            bounds = shard_bounds(n, w)
            sizes = [hi - lo for lo, hi in bounds]
            assert bounds[0][0] == 0 and bounds[-1][1] == n and max(sizes) - min(sizes) <= 1
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))


@pytest.mark.parametrize("n", [4, 5, 7])
def test_ddp_shards_augment_as_the_whole_batch(n):
    """Keyed draws: each rank's shard gets exactly its rows of the whole batch's augmentation."""
    spec = AugmentSpec(resize=8, hflip=0.5, rotation=10, brightness=0.1, contrast=0.1, saturation=0.1,
                       hue=0.05, test_resize=8, test_crop=8)
    pipeline = train_pipeline(spec, ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)))
    images = torch.randint(0, 256, (n, 3, 12, 12), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    kept = torch.arange(10, 10 + n)
    whole = pipeline(images, augment_draws(1, 2, kept))
    for world in (2, 3):
        parts = [pipeline(images[lo:hi], augment_draws(1, 2, kept[lo:hi])) for lo, hi in shard_bounds(n, world)
                 if hi > lo]
        assert torch.equal(torch.cat(parts), whole)


def test_ddp_too_many_processes_for_the_kept_images_is_rejected():
    cfg = ddp_config(3)  # keeps 5: shards of 2, 2, 1
    with pytest.raises(SalnError, match=r"train.world_size=3 leaves 1 of the 5 .* at least 2 per process"):
        check_world(cfg, Group(0, 3, torch.device("cpu")))
    check_world(cfg, Group(0, 2, torch.device("cpu")))


def test_ddp_world_size_is_read_and_checked(params):
    params["train"]["world_size"] = 2
    assert train_config(params).world_size == 2
    for bad in (0, 1.5, "2", True):
        params["train"]["world_size"] = bad
        with pytest.raises(SalnError, match="train.world_size must be") as err:
            train_config(params)
        assert "\n" not in str(err.value)


def test_ddp_world_size_must_match_the_launch(monkeypatch, tmp_path):
    for name in ("WORLD_SIZE", "LOCAL_RANK", "RANK"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SalnError, match="world_size is 2 but this process is one of 1: run the stage script"):
        train_run(tiny_inputs("standard"), ddp_config(2), "standard", 0, tmp_path, progress=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SalnError, match="world_size is 1 but this process is one of 2 torchrun workers"):
        train_run(tiny_inputs("standard"), ddp_config(1), "standard", 0, tmp_path, progress=False)


def test_ddp_relaunch_under_torchrun_builds_the_command(monkeypatch):
    calls = []
    monkeypatch.setattr(os, "execv", lambda path, argv: calls.append((path, argv)))
    for name in ("WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "argv", ["stages/train_jest.py", "--dataset", "pets", "--method", "jest",
                                      "--seed", "1"])
    monkeypatch.setitem(sys.modules, "__main__", ModuleType("__main__"))  # a script: __spec__ is None
    distributed.relaunch_under_torchrun(1)
    assert calls == []  # one process: nothing to do
    distributed.relaunch_under_torchrun(4)
    assert calls == [(sys.executable, [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                       "--nproc_per_node=4", "stages/train_jest.py", "--dataset", "pets",
                                       "--method", "jest", "--seed", "1"])]
    module = ModuleType("__main__")
    module.__spec__ = SimpleNamespace(name="stages.train_jest")  # started as python -m stages.train_jest
    monkeypatch.setitem(sys.modules, "__main__", module)
    distributed.relaunch_under_torchrun(2)
    assert calls[-1][1][4:7] == ["--nproc_per_node=2", "-m", "stages.train_jest"]
    monkeypatch.setenv("LOCAL_RANK", "0")  # already a torchrun worker: never relaunch again
    distributed.relaunch_under_torchrun(2)
    assert len(calls) == 2


SCRIPT = """
import os
import sys
import torch
sys.path[:0] = [{root!r}]
from saln.distributed import relaunch_under_torchrun
relaunch_under_torchrun(2)
if sys.argv[2] == "fail":  # a worker that fails: torchrun must report it
    sys.exit(3 if os.environ["RANK"] == "1" else 0)
torch.set_num_threads(1)
import saln.selection.all
from saln import train as train_module
from tests.test_ddp import ddp_config, tiny_net
from tests.test_resume import tiny_inputs
train_module.build_model = tiny_net
out = train_module.train_run(tiny_inputs("saln"), ddp_config(2, epochs=1), "saln", 0, sys.argv[1], progress=False)
print("rank", os.environ["RANK"], "of", os.environ["WORLD_SIZE"], "returned", "metrics" if out else None)
"""


@pytest.mark.slow
def test_ddp_relaunched_script_runs_under_torchrun_and_reports_its_outcome(tmp_path):
    """The real thing: a script relaunches itself; torchrun starts 2 workers that train one run."""
    script = tmp_path / "stage.py"
    script.write_text(SCRIPT.format(root=str(ROOT)))
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "LOCAL_RANK", "RANK")}

    def run(mode: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(script), str(tmp_path / "run"), mode], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)

    done = run("train")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rank 0 of 2 returned metrics" in done.stdout and "rank 1 of 2 returned None" in done.stdout
    assert (tmp_path / "run" / "metrics.json").is_file()
    assert run("fail").returncode != 0  # one worker exited 3: DVC sees the stage fail
