"""The reference model of JEST and RHO-LOSS: trained once per dataset on the held-out reference slice.

It is a learner of the same architecture and weights, trained by the same loop (``train_run``
with the ``standard`` method) on ``splits["reference"]`` instead of ``splits["train"]``. Then it
scores every example once under the test-time transform, so a training step only looks up the
reference loss (and penultimate embedding) of its candidates, as RHO-LOSS does with its
irreducible-loss model. Validation and test images are only evaluated, never selected or trained on.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from saln.augment import AugmentSpec
from saln.transforms import test_pipeline
from saln.backbones import build_model, forward_with_embeddings, normalisation
from saln.checkpoint import SAVE_EVERY_S
from saln.config import check_seed, number, require
from saln.data import Prepared
from saln.device import autocast, memory_format, pick_device
from saln.errors import SalnError
from saln.features import images_to_tensor, test_time_batches
from saln.layout import HEAD_FILE, MODEL_FILE, SELECTIONS_FILE
from saln.selection import baselines  # noqa: F401  (registers standard, which trains the reference model)
from saln.train import RunInputs, TrainConfig, train_config, train_run

LOSSES_FILE, EMBEDDINGS_FILE, META_FILE = "losses.npy", "embeddings.npy", "meta.json"


@dataclass(frozen=True)
class ReferenceConfig:
    epochs: int  # a short schedule: the reference slice is small
    batch_size: int
    lr: float  # its own rate: the learners' grid (train.lrs) does not move the reference model
    seed: int


def reference_config(params: dict) -> ReferenceConfig:
    r = require(params, "reference", "params")
    return ReferenceConfig(epochs=number(r, "epochs", "reference", lo=1, integer=True),
                           batch_size=number(r, "batch_size", "reference", lo=2, integer=True),
                           lr=number(r, "lr", "reference", lo=0, lo_open=True),
                           seed=check_seed(r, "seed", "reference"))


# The train.* keys the reference model shares with the learners (its params in dvc.yaml).
SHARED_TRAIN_KEYS = ("momentum", "weight_decay", "eval_batch_size", "device", "bf16", "channels_last", "compile")


def reference_train_config(params: dict, ref: ReferenceConfig) -> TrainConfig:
    """The learner's config for the reference run: model.*, the shared train.* keys, and reference.*
    for the schedule; no selection (standard), one process, no logged batches."""
    t = require(params, "train", "params")
    shared = {key: require(t, key, "train") for key in SHARED_TRAIN_KEYS}
    probe = {"train": {**shared, "epochs": ref.epochs, "batch_size": ref.batch_size, "lrs": [ref.lr],
                       "filter_ratio": 0.0, "log_batches": [], "world_size": 1, "eval_subset": 0,
                       "bn_recalibrate": 0, "save_model": True,
                       "budget": "epochs", "schedule": "constant", "warmup": 0.0},
             "model": require(params, "model", "params")}
    return train_config(probe)


def reference_view(prepared: Prepared) -> Prepared:
    """The same images with the reference slice as the training split (val and test unchanged)."""
    splits = dict(prepared.splits, train=prepared.splits["reference"],
                  reference=prepared.splits["reference"][:0])
    return Prepared(prepared.images, prepared.labels, splits, prepared.meta)


@torch.no_grad()
def score_examples(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                   spec: AugmentSpec, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per-example cross-entropy and penultimate embedding of every image (eval mode, test transform)."""
    device = pick_device(cfg.device)
    fmt = memory_format(cfg.channels_last)
    model = model.to(device, memory_format=fmt).eval()
    transform = test_pipeline(spec, normalisation(cfg.arch)).to(device)
    losses, embeddings = [], []
    for positions, x in test_time_batches(images, transform, cfg.eval_batch_size, device, fmt):
        y = labels[positions].to(device)
        with autocast(device, cfg.bf16):
            logits, emb = forward_with_embeddings(model, x)
        losses.append(F.cross_entropy(logits.float(), y, reduction="none").cpu())
        embeddings.append(emb.float().cpu())
    return torch.cat(losses).numpy(), torch.cat(embeddings).numpy()


def train_reference(prepared: Prepared, spec: AugmentSpec, cfg: TrainConfig, ref: ReferenceConfig,
                    out_dir: str | Path, run_dir: str | Path, progress: bool = True,
                    checkpoint: str | Path | None = None, checkpoint_key: str = "") -> dict:
    """Train the reference model on the reference slice and write its per-example tables.

    Writes ``model.pt``, ``losses.npy`` (float32, N), ``embeddings.npy`` (float16, N x D; float16 halves the
    file and pairwise cosines do not need more) and ``meta.json`` into ``out_dir``; the run's own
    files (model.pt, metrics.json, dvclive/) go to ``run_dir``, kept apart because they hold
    timings, which would change the hash of the tables' folder on every run. Returns the run's metrics.
    With ``checkpoint`` the training resumes after a kill, as a train run does (``train_run``).
    """
    size = len(prepared.splits["reference"])
    if size < ref.batch_size:
        raise SalnError(f"the reference split has {size} images, fewer than reference.batch_size="
                        f"{ref.batch_size}: raise data.reference_fraction or lower reference.batch_size")
    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    # One process: the reference model is small, and its scoring below is not rank-aware.
    metrics = train_run(RunInputs(reference_view(prepared), spec), cfg, "standard", ref.seed,
                        run_dir, progress=progress, curves=False, checkpoint=checkpoint,
                        checkpoint_key=checkpoint_key, checkpoint_every=SAVE_EVERY_S)
    model = build_model(cfg.arch, "none", prepared.num_classes)
    # The weights join the cached tables; the run folder keeps only its (uncached) logs and timings.
    shutil.move(Path(run_dir) / MODEL_FILE, out / MODEL_FILE)
    for name in (HEAD_FILE, SELECTIONS_FILE):  # a learner's extras; nothing reads them for the reference
        (Path(run_dir) / name).unlink(missing_ok=True)
    model.load_state_dict(torch.load(out / MODEL_FILE, map_location="cpu", weights_only=True))
    started = time.perf_counter()
    losses, embeddings = score_examples(model, images_to_tensor(prepared.images),
                                        torch.from_numpy(prepared.labels), spec, cfg)
    metrics["scoring_seconds"] = time.perf_counter() - started  # a one-off cost of the JEST family
    np.save(out / LOSSES_FILE, losses.astype(np.float32))
    np.save(out / EMBEDDINGS_FILE, embeddings.astype(np.float16))
    meta = {"trained": True, "reference_images": size, "examples": len(losses),
            "embedding_dim": int(embeddings.shape[1]), "test_acc": metrics["test_acc"]}
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return metrics


def write_untrained(out_dir: str | Path) -> None:
    """Mark a dataset without a reference slice (data.reference_fraction 0): no tables to look up."""
    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / META_FILE).write_text(json.dumps({"trained": False}, indent=2) + "\n")


def load_reference(directory: str | Path, embeddings: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """The reference losses (and embeddings if asked) of every example; one-line error if absent."""
    d = Path(directory)
    losses_path, emb_path = d / LOSSES_FILE, d / EMBEDDINGS_FILE
    needed = [losses_path] + ([emb_path] if embeddings else [])
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        raise SalnError(f"reference output {missing[0]} not found: set data.reference_fraction > 0 "
                        "and run `dvc repro` (stage reference)")
    return np.load(losses_path), (np.load(emb_path) if embeddings else None)
