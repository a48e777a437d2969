"""Speed of the training pipeline, measured in one run on one machine (issue 5).

    python bench/bench.py --small            # CPU, under a minute: 32 px, batch 32
    python bench/bench.py --paper            # GPU, the paper's setting: ResNet-18, 224 px, batch 64

Every number comes from ``saln.train.Trainer``, the step ``train_run`` uses, on synthetic uint8
images (content does not change the cost of any operation here):

- P1: images/s of the real pipeline (select -> gather -> augment -> forward/backward) over the
  ceiling: the same model, batch and precision trained on random float tensors already on the
  device. Reported for ``standard`` at batch B, and for ``saln`` against a ceiling at its keep.
- P2: epoch wall time of ``standard`` over that of ``saln`` at filter_ratio f, beside 1/(1-f)
  and beside what the learner alone allows (its ceiling step at B over its ceiling step at keep).
- P3: candidate images/s of the ``saln`` pipeline over a paper-style loop: a torch DataLoader of
  PIL images with torchvision transforms on CPU workers, the Fiedler vector in numpy on the CPU
  per batch, then the same step on the device (same model, batch, keep and precision).
- P6: selection time as a share of step time, for ``saln`` and, when registered, ``jest``.
- peak memory: CUDA's max_memory_allocated, or on CPU this process's peak RSS.
- communication of a 2-process data-parallel run (docs/distributed.md): the all-gather of one
  batch's learner view (B x (classes + 512) float32: what ``jest`` and the uncertainty selectors
  gather every step) and DDP's all-reduce of ResNet-18's gradients, timed between 2 local
  processes (gloo on CPU tensors; nccl when the device is CUDA and 2 GPUs are visible).

Each timed figure is the second of two epochs of ``steps`` batches: the first warms up cuDNN
autotuning, torch.compile and the DataLoader's workers (a new epoch's workers start with an
empty queue, as they do in training, so the baseline gets no prefetched head start).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import socket
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from saln.augment import AugmentSpec  # noqa: E402
from saln.data import Prepared  # noqa: E402
from saln.device import pick_device, sync  # noqa: E402
from saln.distributed import all_gather_rows, shard_bounds  # noqa: E402
from saln.selection.all import REGISTRY  # noqa: E402
from saln.train import RunInputs, TrainConfig, Trainer, build_trainer  # noqa: E402

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
TARGETS = {"P1": 0.90, "P2": 4.5, "P3": 5.0, "P6_saln": 0.02}  # on a GPU at --paper


@dataclass(frozen=True)
class Setting:
    stored: int  # side of the stored uint8 images
    resize: int  # train resize (the model's input side)
    test_resize: int
    test_crop: int
    batch: int
    filter_ratio: float
    steps: int  # batches per epoch
    classes: int
    feature_dim: int  # SALN's precomputed features (ResNet-50: 2048)
    workers: int  # DataLoader workers of the paper-style loop
    device: str = "auto"
    compile: bool = False
    comm_iters: int = 50  # timed all-gathers (all-reduces: a tenth) between 2 processes


    @property
    def keep(self) -> int:
        """What the trainer keeps per step: TrainConfig's own rule, so the two never disagree."""
        return train_config(self).keep


def default_workers() -> int:
    return min(8, os.cpu_count() or 1)


PRESETS = {
    # Pets-like: stored at 256 px, trained at 224, 37 classes; 51 batches = 3312 train images / 64.
    "paper": Setting(stored=256, resize=224, test_resize=256, test_crop=224, batch=64,
                     filter_ratio=0.8, steps=51, classes=37, feature_dim=2048,
                     workers=default_workers()),
    "small": Setting(stored=32, resize=32, test_resize=32, test_crop=32, batch=32, filter_ratio=0.8,
                     steps=6, classes=10, feature_dim=2048, workers=default_workers(), device="cpu"),
    # For the test suite: seconds, not a measurement.
    "tiny": Setting(stored=16, resize=16, test_resize=16, test_crop=16, batch=16, filter_ratio=0.8,
                    steps=2, classes=4, feature_dim=32, workers=0, device="cpu", comm_iters=5),
}


# ---------------------------------------------------------------- inputs

def synthetic_inputs(s: Setting, seed: int = 0) -> RunInputs:
    """Random uint8 images, labels, features and reference tables for one epoch of batches."""
    rng = np.random.default_rng(seed)
    n = s.batch * s.steps
    images = rng.integers(0, 256, (n, s.stored, s.stored, 3), dtype=np.uint8)
    labels = rng.integers(0, s.classes, n).astype(np.int64)
    prepared = Prepared(images, labels, {"train": np.arange(n)}, {"num_classes": s.classes})
    spec = AugmentSpec(resize=s.resize, hflip=0.5, rotation=15, brightness=0.2, contrast=0.2,
                       saturation=0.2, hue=0.1, test_resize=s.test_resize, test_crop=s.test_crop)
    return RunInputs(prepared, spec,
                     features=rng.standard_normal((n, s.feature_dim)).astype(np.float32),
                     reference_losses=rng.gamma(2.0, 1.0, n).astype(np.float32),
                     reference_embeddings=rng.standard_normal((n, 512)).astype(np.float32))


def train_config(s: Setting) -> TrainConfig:
    return TrainConfig(epochs=1, batch_size=s.batch, lr=0.01, momentum=0.9, weight_decay=0.0,
                       filter_ratio=s.filter_ratio, eval_batch_size=256, log_batches=(),
                       device=s.device, bf16=True, channels_last=True, compile=s.compile,
                       arch="resnet18", weights="none")


# ---------------------------------------------------------------- timing

def timed_second_epoch(run_epoch, device: torch.device) -> float:
    """Wall seconds of the second of two calls of ``run_epoch``; the first is warm-up."""
    run_epoch()
    sync(device)
    start = time.perf_counter()
    run_epoch()
    sync(device)
    return time.perf_counter() - start


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_bytes(device: torch.device) -> int | None:
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def release(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def rate(images: int, seconds: float) -> dict:
    return {"images": images, "seconds": seconds, "images_per_s": images / seconds}


# ---------------------------------------------------------------- measurements

def measure_ceiling(inputs: RunInputs, s: Setting, batch: int, device: torch.device) -> dict:
    """The same learner step on random float tensors already on the device: no data path at all."""
    trainer = build_trainer(inputs, train_config(s), "standard", 0, device)
    x = torch.randn(batch, 3, s.resize, s.resize, device=device).contiguous(memory_format=trainer.fmt)
    y = torch.randint(0, s.classes, (batch,), device=device)

    def epoch():
        for _ in range(s.steps):
            trainer.learn(x, y)

    reset_peak(device)
    seconds = timed_second_epoch(epoch, device)
    out = rate(batch * s.steps, seconds) | {"batch": batch, "peak_memory_bytes": peak_bytes(device)}
    del trainer
    release(device)
    return out


def pipeline_epoch(trainer: Trainer, s: Setting) -> None:
    """One epoch of ``Trainer.step`` over a fresh shuffle, exactly as ``train_run`` drives it."""
    n = len(trainer.labels)
    order = torch.randperm(n, generator=trainer.shuffle_generator, device=trainer.device)
    for b in range(s.steps):
        trainer.step(order[b * s.batch:(b + 1) * s.batch], 1)


def measure_pipeline(inputs: RunInputs, s: Setting, method: str, device: torch.device) -> dict:
    trainer = build_trainer(inputs, train_config(s), method, 0, device)
    kept = s.batch if method == "standard" else s.keep
    before = {}

    def epoch():
        before["select"] = trainer.select_clock.seconds
        pipeline_epoch(trainer, s)

    reset_peak(device)
    seconds = timed_second_epoch(epoch, device)
    select_seconds = trainer.select_clock.seconds - before["select"]
    out = {
        "candidates": rate(s.batch * s.steps, seconds),
        "trained": rate(kept * s.steps, seconds),
        "epoch_seconds": seconds,
        "step_seconds": seconds / s.steps,
        "selection_seconds_per_step": select_seconds / s.steps,
        "selection_share": select_seconds / seconds,
        "peak_memory_bytes": peak_bytes(device),
        "host_syncs_per_step": count_host_syncs(trainer, s),
    }
    del trainer
    release(device)
    return out


def count_host_syncs(trainer: Trainer, s: Setting) -> int | None:
    """Host-device synchronisations in one step, as CUDA's sync debug mode reports them."""
    if trainer.device.type != "cuda":
        return None
    idx = torch.arange(s.batch, device=trainer.device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            trainer.step(idx, 1)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message).lower() for w in caught)


def measure_jest(inputs: RunInputs, s: Setting, device: torch.device) -> tuple[dict | None, str | None]:
    """The ``jest`` selector from the registry when present; else why not."""
    if "jest" not in REGISTRY:
        return None, "no 'jest' selector is registered in saln.selection"
    try:
        return measure_pipeline(inputs, s, "jest", device), None
    except Exception as err:  # a selector still being written: report, do not abort the benchmark
        return None, f"jest failed: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"


# ---------------------------------------------------------------- the paper-style baseline

class PilDataset(torch.utils.data.Dataset):
    """uint8 H x W x 3 arrays served as PIL images through torchvision transforms, with their index."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i]), i


def paper_transform(s: Setting):
    from torchvision import transforms as T

    return T.Compose([
        T.RandomHorizontalFlip(), T.RandomRotation(15), T.ColorJitter(0.2, 0.2, 0.2, 0.1),
        T.Resize((s.resize, s.resize)), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def fiedler_numpy(features: np.ndarray) -> np.ndarray:
    """SALN's Fiedler vector as a numpy implementation would compute it, on the CPU in float64."""
    x = features.astype(np.float64)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    similarity = x @ x.T
    laplacian = np.diag(similarity.sum(axis=1)) - similarity
    return np.linalg.eigh(laplacian)[1][:, 1]


def measure_paper_style(inputs: RunInputs, s: Setting, device: torch.device) -> dict:
    """DataLoader + PIL/torchvision on CPU workers, numpy SALN per batch, then the device step."""
    trainer = build_trainer(inputs, train_config(s), "standard", 0, device)
    features = np.asarray(inputs.features)
    loader = torch.utils.data.DataLoader(
        PilDataset(inputs.prepared.images, inputs.prepared.labels, paper_transform(s)),
        batch_size=s.batch, shuffle=True, drop_last=True, num_workers=s.workers,
        pin_memory=device.type == "cuda", persistent_workers=s.workers > 0)

    def epoch():
        for x, y, idx in loader:
            fiedler = fiedler_numpy(features[idx.numpy()])
            kept = torch.from_numpy(np.argsort(-np.abs(fiedler), kind="stable")[:s.keep])
            x = x[kept].to(device, non_blocking=True).contiguous(memory_format=trainer.fmt)
            trainer.learn(x, y[kept].to(device, non_blocking=True))

    reset_peak(device)
    seconds = timed_second_epoch(epoch, device)
    out = {"candidates": rate(s.batch * s.steps, seconds), "epoch_seconds": seconds,
           "workers": s.workers, "peak_memory_bytes": peak_bytes(device)}
    del loader, trainer
    release(device)
    return out


# ---------------------------------------------------------------- data parallelism

EMBEDDING_DIM = 512  # ResNet-18's penultimate features: the learner view is B x (classes + 512)
COMM_RANKS = 2


def measure_communication(s: Setting, device: torch.device) -> dict:
    """Per-step collectives of a 2-process run, timed between 2 processes on this machine."""
    from saln.backbones import build_model

    grad_numel = sum(p.numel() for p in build_model("resnet18", "none", s.classes).parameters())
    nccl = device.type == "cuda" and torch.cuda.device_count() >= COMM_RANKS
    spec = {"rows": s.batch, "cols": s.classes + EMBEDDING_DIM, "grad_numel": grad_numel,
            "iters": s.comm_iters, "backend": "nccl" if nccl else "gloo"}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "comm.json"
        torch.multiprocessing.spawn(comm_worker, args=(free_port(), spec, str(out)), nprocs=COMM_RANKS,
                                    join=True)
        seconds = json.loads(out.read_text())
    where = ("nccl between 2 GPUs" if nccl else
             "gloo between 2 local CPU processes (loopback; not a GPU interconnect)")
    return {
        "ranks": COMM_RANKS, "backend": spec["backend"], "where": where,
        "all_gather": {"rows": spec["rows"], "cols": spec["cols"], "bytes": spec["rows"] * spec["cols"] * 4,
                       "seconds_per_call": seconds["all_gather"]},
        "grad_all_reduce": {"numel": grad_numel, "bytes": grad_numel * 4,
                            "seconds_per_call": seconds["all_reduce"]},
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def comm_worker(rank: int, port: int, spec: dict, out: str) -> None:
    """One of the 2 processes: time the learner-view all-gather and the gradient all-reduce."""
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    device = torch.device("cuda", rank) if spec["backend"] == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(spec["backend"], rank=rank, world_size=COMM_RANKS)
    try:
        sizes = [hi - lo for lo, hi in shard_bounds(spec["rows"], COMM_RANKS)]
        view = torch.randn(sizes[rank], spec["cols"], device=device)
        grads = torch.randn(spec["grad_numel"], device=device)
        seconds = {"all_gather": time_collective(lambda: all_gather_rows(view, sizes), spec["iters"], device),
                   "all_reduce": time_collective(lambda: dist.all_reduce(grads), max(1, spec["iters"] // 10),
                                                 device)}
        if rank == 0:
            Path(out).write_text(json.dumps(seconds))
    finally:
        dist.destroy_process_group()


def time_collective(call, iters: int, device: torch.device) -> float:
    """Mean seconds of ``call`` over ``iters`` calls after one warm-up, both ranks started together."""
    import torch.distributed as dist

    call()
    sync(device)
    dist.barrier()
    start = time.perf_counter()
    for _ in range(iters):
        call()
    sync(device)
    return (time.perf_counter() - start) / iters


# ---------------------------------------------------------------- report

def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def peak_memory(device: torch.device, parts: dict) -> dict:
    if device.type == "cuda":
        values = [p["peak_memory_bytes"] for p in parts.values() if p and p.get("peak_memory_bytes")]
        return {"bytes": max(values), "kind": "cuda max_memory_allocated (largest of the measurements)"}
    # ru_maxrss is KiB on Linux, bytes on macOS
    scale = 1 if sys.platform == "darwin" else 1024
    return {"bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale,
            "kind": "host peak RSS of this process (ru_maxrss; CPU run, DataLoader workers excluded)"}


def run(s: Setting, preset: str) -> dict:
    device = pick_device(s.device)  # turns on cuDNN autotuning on CUDA
    inputs = synthetic_inputs(s)
    ceiling = measure_ceiling(inputs, s, s.batch, device)
    ceiling_keep = measure_ceiling(inputs, s, s.keep, device)
    standard = measure_pipeline(inputs, s, "standard", device)
    saln = measure_pipeline(inputs, s, "saln", device)
    jest, jest_reason = measure_jest(inputs, s, device)
    paper = measure_paper_style(inputs, s, device)
    comm = measure_communication(s, device)
    parts = {"ceiling": ceiling, "ceiling_keep": ceiling_keep, "standard": standard, "saln": saln,
             "jest": jest, "paper_style": paper}
    return {
        "preset": preset,
        "device": {"type": device.type, "name": device_name(device), "cpu_count": os.cpu_count()},
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "setting": asdict(s) | {"keep": s.keep, "precision": precision(device),
                                "images_per_epoch": s.batch * s.steps},
        "P1": {"value": standard["trained"]["images_per_s"] / ceiling["images_per_s"],
               "saln": saln["trained"]["images_per_s"] / ceiling_keep["images_per_s"],
               "target": TARGETS["P1"]},
        # model_bound: the speedup the learner alone allows, a step at B over a step at keep on
        # device-resident tensors; when it is below the target, the data path is not the limit.
        "P2": {"value": standard["epoch_seconds"] / saln["epoch_seconds"],
               "bound": 1 / (1 - s.filter_ratio),
               "model_bound": ceiling["seconds"] / ceiling_keep["seconds"], "target": TARGETS["P2"]},
        "P3": {"value": saln["candidates"]["images_per_s"] / paper["candidates"]["images_per_s"],
               "target": TARGETS["P3"]},
        "P6": {"saln": saln["selection_share"],
               "jest": jest["selection_share"] if jest else None, "jest_reason": jest_reason,
               "target_saln": TARGETS["P6_saln"]},
        "peak_memory": peak_memory(device, parts),
        "communication": comm | {"all_gather_share_of_jest_step": (
            comm["all_gather"]["seconds_per_call"] / jest["step_seconds"] if jest else None)},
        "measurements": parts,
    }


def precision(device: torch.device) -> str:
    return "bf16 autocast, channels_last" if device.type == "cuda" else "float32"


def format_table(r: dict) -> str:
    m, on_gpu = r["measurements"], r["device"]["type"] == "cuda"
    note = "" if on_gpu and r["preset"] == "paper" else "  (targets apply on a GPU at --paper)"
    jest = (f"{r['P6']['jest']:.2%}" if r["P6"]["jest"] is not None
            else f"null: {r['P6']['jest_reason']}")
    s = r["setting"]
    rows = [
        f"SALN benchmark, preset {r['preset']}: {r['device']['name']} ({r['device']['type']}), "
        f"torch {r['versions']['torch']}",
        f"ResNet-18, {s['resize']} px, batch {s['batch']}, keep {s['keep']} (filter {s['filter_ratio']}), "
        f"{s['steps']} batches/epoch, {s['precision']}, workers {s['workers']}{note}",
        "",
        f"{'metric':<44}{'value':>12}   target",
        f"{'P1  standard / ceiling (images/s)':<44}{r['P1']['value']:>12.3f}   >= {r['P1']['target']}",
        f"{'    saln kept / ceiling at keep':<44}{r['P1']['saln']:>12.3f}",
        f"{'P2  SALN epoch speedup over standard':<44}{r['P2']['value']:>11.2f}x   >= "
        f"{r['P2']['target']}x (bound {r['P2']['bound']:.1f}x)",
        f"{'    the learner alone: ceiling at B / at keep':<44}{r['P2']['model_bound']:>11.2f}x",
        f"{'P3  SALN pipeline / paper-style loop':<44}{r['P3']['value']:>11.2f}x   >= {r['P3']['target']}x",
        f"{'P6  selection share of step, saln':<44}{r['P6']['saln']:>12.2%}   <= {r['P6']['target_saln']:.0%}",
        f"{'    selection share of step, jest':<44}{jest:>12}",
        f"{'peak memory':<44}{r['peak_memory']['bytes'] / 2**20:>8.0f} MiB   {r['peak_memory']['kind']}",
        "",
        f"{'images/s':<44}{'candidates':>12}{'trained':>12}{'epoch s':>10}",
    ]
    for name in ("ceiling", "ceiling_keep"):
        rows.append(f"{name:<44}{'':>12}{m[name]['images_per_s']:>12.1f}{m[name]['seconds']:>10.3f}")
    for name in ("standard", "saln", "jest"):
        if m[name]:
            rows.append(f"{name + ' pipeline':<44}{m[name]['candidates']['images_per_s']:>12.1f}"
                        f"{m[name]['trained']['images_per_s']:>12.1f}{m[name]['epoch_seconds']:>10.3f}")
    p = m["paper_style"]
    rows.append(f"{'paper-style loop (saln)':<44}{p['candidates']['images_per_s']:>12.1f}"
                f"{p['candidates']['images_per_s'] * s['keep'] / s['batch']:>12.1f}{p['epoch_seconds']:>10.3f}")
    if on_gpu:
        rows.append(f"host syncs per step: standard {m['standard']['host_syncs_per_step']}, "
                    f"saln {m['saln']['host_syncs_per_step']}")
    c = r["communication"]
    gather, reduce = c["all_gather"], c["grad_all_reduce"]
    share = c["all_gather_share_of_jest_step"]
    rows += ["", f"2-process communication per step, {c['where']}:",
             f"{'  all-gather of the learner view':<44}{gather['seconds_per_call'] * 1e3:>9.3f} ms   "
             f"{gather['rows']} x {gather['cols']} f32 = {gather['bytes'] / 2**10:.0f} KiB"
             + (f", {share:.2%} of a jest step" if share is not None else ""),
             f"{'  all-reduce of the gradients (DDP)':<44}{reduce['seconds_per_call'] * 1e3:>9.3f} ms   "
             f"{reduce['numel'] / 1e6:.2f} M params f32 = {reduce['bytes'] / 2**20:.1f} MiB"]
    return "\n".join(rows)


def default_out(device_type: str, name: str) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", f"{device_type}-{name}".lower()).strip("-")
    return ROOT / "results" / "bench" / f"{slug}.json"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = p.add_mutually_exclusive_group()
    size.add_argument("--paper", dest="preset", action="store_const", const="paper",
                      help="the paper's setting (default): 224 px, batch 64, 37 classes")
    size.add_argument("--small", dest="preset", action="store_const", const="small",
                      help="CPU, under a minute: 32 px, batch 32")
    size.add_argument("--tiny", dest="preset", action="store_const", const="tiny",
                      help="seconds; for the test suite, not a measurement")
    p.set_defaults(preset="paper")
    p.add_argument("--out", type=Path, help="JSON path (default results/bench/<device>.json)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument("--workers", type=int, help="DataLoader workers of the paper-style loop "
                                               f"(default min(8, cpu count) = {default_workers()})")
    p.add_argument("--batch", type=int)
    p.add_argument("--steps", type=int, help="batches per epoch")
    p.add_argument("--filter-ratio", type=float)
    p.add_argument("--compile", action="store_true", help="torch.compile the learner")
    return p.parse_args(argv)


def setting_from(args: argparse.Namespace) -> Setting:
    s = PRESETS[args.preset]
    overrides = {"device": args.device, "workers": args.workers, "batch": args.batch,
                 "steps": args.steps, "filter_ratio": args.filter_ratio,
                 "compile": args.compile or None}
    s = replace(s, **{k: v for k, v in overrides.items() if v is not None})
    if s.keep < 2:
        raise SystemExit(f"batch {s.batch} at filter ratio {s.filter_ratio} keeps {s.keep} < 2 images "
                         "(BatchNorm needs 2)")
    return s


def main(argv=None) -> dict:
    args = parse_args(argv)
    result = run(setting_from(args), args.preset)
    print(format_table(result))
    out = args.out or default_out(result["device"]["type"], result["device"]["name"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    print(f"\nwrote {out}")
    return result


if __name__ == "__main__":
    main()
