"""Data-parallel training over W local processes (torchrun + DistributedDataParallel).

A stage whose ``train.world_size`` is W > 1 calls ``relaunch_under_torchrun(W)`` first thing: the
process replaces itself (``os.execv``) with ``torchrun --standalone --nproc_per_node W`` running the
same command line, so DVC still sees one process and its exit code, and torchrun starts W workers
(each with RANK, LOCAL_RANK and WORLD_SIZE in its environment) and stops them all when one fails.
``saln.train.train_run`` then opens the process group with ``process_group`` (gloo on CPU; nccl on
CUDA, worker r on cuda:r) and runs one training run over the W workers.

The helpers below are the only places that talk to ``torch.distributed``: shard bounds, a row
all-gather for shards of unequal length, broadcasts of rank 0's choices and an all-reduce.
A rank augments its shard with each image's own keyed draws (``saln.transforms.augment_draws``),
so an image's augmentation does not depend on the number of ranks.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist
from torch import nn

from saln.errors import SalnError

WORKER_ENV = ("WORLD_SIZE", "LOCAL_RANK")  # set by torchrun in every worker it starts


# ---------------------------------------------------------------------------------------------
# Launching


def is_torchrun_worker() -> bool:
    return any(name in os.environ for name in WORKER_ENV)


def is_writer() -> bool:
    """Whether this process writes a run's files: rank 0 of a torchrun run, or a single process."""
    return os.environ.get("RANK", "0") == "0"


def torchrun_command(world_size: int) -> list[str]:
    """argv of ``python -m torch.distributed.run`` running this process's own command line.

    A script runs as the script (``sys.argv[0]``); a module started with ``python -m pkg.mod``
    runs as that module again (torchrun's ``-m``), so its package imports keep working.
    """
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    target = ["-m", spec.name] if spec is not None and spec.name != "__main__" else [sys.argv[0]]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={world_size}", *target, *sys.argv[1:]]


def relaunch_under_torchrun(world_size: int) -> None:
    """With ``world_size`` > 1 and outside torchrun: become torchrun running this command W times.

    Returns only when there is nothing to do (W = 1, or this process is already a worker); else
    ``os.execv`` replaces the process, so its pid, stdout/stderr and exit code stay the caller's.
    """
    if world_size <= 1 or is_torchrun_worker():
        return
    command = torchrun_command(world_size)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(command[0], command)


# ---------------------------------------------------------------------------------------------
# The process group


@dataclass(frozen=True)
class Group:
    """This process's place in a W-process run (the default process group)."""

    rank: int
    size: int
    device: torch.device  # this rank's device: cpu, or cuda:LOCAL_RANK

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> tuple[int, int]:
        """[lo, hi) of this rank's share of n items (see ``shard_bounds``)."""
        return shard_bounds(n, self.size)[self.rank]


@contextlib.contextmanager
def process_group(world_size: int, device: torch.device) -> Iterator[Group | None]:
    """Yield this rank's ``Group`` for ``train.world_size`` W > 1, or None for a single process.

    Joins the process group a caller (a test) already initialised, else initialises it from
    torchrun's environment and destroys it on the way out.
    """
    env_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        if env_size != 1:
            raise SalnError(f"train.world_size is 1 but this process is one of {env_size} torchrun workers: "
                            "set train.world_size to the number of processes, or run without torchrun")
        yield None
        return
    created = not dist.is_initialized()
    size = env_size if created else dist.get_world_size()
    if size != world_size:
        raise SalnError(f"train.world_size is {world_size} but this process is one of {size}: run the stage "
                        f"script (it relaunches itself under torchrun) or torchrun --nproc_per_node {world_size}")
    device = rank_device(device)
    if created:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                device_id=device if device.type == "cuda" else None)
    try:
        yield Group(dist.get_rank(), dist.get_world_size(), device)
    finally:
        if created:
            dist.destroy_process_group()


def rank_device(device: torch.device) -> torch.device:
    """cuda:LOCAL_RANK for a CUDA run (made the current device), else ``device``."""
    if device.type != "cuda":
        return device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if local >= torch.cuda.device_count():
        raise SalnError(f"worker {local} has no GPU: {torch.cuda.device_count()} visible, so "
                        f"train.world_size can be at most {torch.cuda.device_count()} on this machine")
    device = torch.device("cuda", local)
    torch.cuda.set_device(device)
    return device


def wrap_model(model: nn.Module, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """(the module to keep, its DistributedDataParallel wrapper).

    On CUDA, BatchNorm layers become SyncBatchNorm first (batch statistics over every rank's
    images, as one process would compute them); SyncBatchNorm needs CUDA, so on CPU each rank
    normalises its own shard. The kept module shares its parameters with the wrapper.
    """
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return model, nn.parallel.DistributedDataParallel(model, device_ids=[device.index])
    return model, nn.parallel.DistributedDataParallel(model)


# ---------------------------------------------------------------------------------------------
# Splitting and collectives


def shard_bounds(n: int, world_size: int) -> list[tuple[int, int]]:
    """n items split into ``world_size`` contiguous runs whose lengths differ by at most one.

    The first n mod W ranks get one more; concatenating the runs in rank order gives 0..n-1 back.
    """
    size, extra = divmod(n, world_size)
    starts = [r * size + min(r, extra) for r in range(world_size + 1)]
    return list(zip(starts[:-1], starts[1:]))


def all_gather_rows(rows: torch.Tensor, sizes: list[int] | None = None) -> torch.Tensor:
    """Every rank's ``rows`` concatenated in rank order; the first dimension may differ per rank.

    ``sizes`` (each rank's row count) saves one collective where every rank knows them already.
    Shards are padded to the longest, gathered, and trimmed.
    """
    if sizes is None:
        count = torch.tensor([len(rows)], device=rows.device)
        counts = [torch.empty_like(count) for _ in range(dist.get_world_size())]
        dist.all_gather(counts, count)
        sizes = [int(c) for c in counts]
    longest = max(sizes)
    padded = rows.new_zeros((longest, *rows.shape[1:]))
    padded[:len(rows)] = rows
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([part[:n] for part, n in zip(parts, sizes)])


def broadcast(tensor: torch.Tensor) -> torch.Tensor:
    """Rank 0's ``tensor`` (same shape and dtype on every rank) on every rank."""
    out = tensor.contiguous().clone()
    dist.broadcast(out, src=0)
    return out


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    out = tensor.contiguous().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def broadcast_int(value: int, device: torch.device) -> int:
    """Rank 0's ``value``: a decision every rank must take alike (a checkpoint is due, epochs done)."""
    return int(broadcast(torch.tensor([int(value)], dtype=torch.long, device=device)))


def gather_objects(obj) -> list | None:
    """Every rank's picklable ``obj`` as a list on rank 0 (rank order); None on the other ranks."""
    out = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out
