"""The training loop: batch -> selector -> augment and train on the kept images -> metrics.

Images stay uint8 on the training device; a selector picks positions before the batch is
augmented, so dropped images are never augmented, forwarded or back-propagated. The last
partial batch of every epoch is dropped (for every method alike), so each step sees exactly
``batch_size`` candidates and keeps ``int(batch_size * (1 - filter_ratio))`` >= 2 of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from saln.augment import AugmentSpec, test_pipeline, train_pipeline
from saln.backbones import build_resnet
from saln.config import TrainConfig
from saln.data import Prepared
from saln.device import Stopwatch, autocast, memory_format, pick_device
from saln.errors import SalnError
from saln.features import images_to_tensor
from saln.selection import LearnerView, SelectionBatch, build


@dataclass
class RunInputs:
    """Everything one run reads besides its config."""

    prepared: Prepared
    spec: AugmentSpec
    features: np.ndarray | None = None  # N x D, row = dataset index
    reference_losses: np.ndarray | None = None  # N, row = dataset index


@dataclass
class Counters:
    backprop: int = 0  # images forwarded with gradient and back-propagated
    scored: int = 0  # images forwarded without gradient to score them for selection
    history: list[dict] = field(default_factory=list)


def forward_with_embeddings(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and the penultimate (pooled) features of a torchvision ResNet."""
    captured = {}
    hook = model.fc.register_forward_hook(lambda mod, inp, out: captured.setdefault("emb", inp[0]))
    try:
        logits = model(x)
    finally:
        hook.remove()
    return logits, captured["emb"]


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor,
             transform: nn.Module, batch_size: int, device: torch.device, bf16: bool = True,
             fmt=torch.contiguous_format) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``indices`` (eval mode, test transform)."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    for start in range(0, len(indices), batch_size):
        idx = indices[start:start + batch_size]
        x = transform(images[idx]).contiguous(memory_format=fmt)
        with autocast(device, bf16):
            logits = model(x).float()
        loss_sum += F.cross_entropy(logits, labels[idx], reduction="sum")
        correct += (logits.argmax(1) == labels[idx]).sum()
    model.train(was_training)
    n = max(len(indices), 1)
    return loss_sum.item() / n, correct.item() / n


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)  # model init and kornia's augmentation draws
    np.random.seed(seed)


def train_run(inputs: RunInputs, cfg: TrainConfig, method: str, seed: int, out_dir: str | Path,
              progress: bool = True) -> dict:
    """Train one (dataset, method, seed) run; writes metrics.json, model.pt, selections.npz, dvclive/."""
    from dvclive import Live
    from tqdm import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = pick_device(cfg.device)
    seed_everything(seed)
    selector = build(method)
    prepared, fmt = inputs.prepared, memory_format(device, cfg.channels_last)

    images = images_to_tensor(prepared.images).to(device)
    labels = torch.from_numpy(prepared.labels).to(device)
    split = {k: torch.from_numpy(v).long().to(device) for k, v in prepared.splits.items()}
    n_batches = len(split["train"]) // cfg.batch_size
    if n_batches == 0:
        raise SalnError(f"the training split has {len(split['train'])} images, fewer than "
                        f"train.batch_size={cfg.batch_size}")
    features = _device_table(inputs.features, selector.needs_features, "features", device)
    ref_losses = _device_table(inputs.reference_losses, selector.needs_reference, "reference losses",
                               device)

    model = build_resnet(cfg.arch, cfg.weights, prepared.num_classes).to(device, memory_format=fmt)
    step_model = torch.compile(model) if cfg.compile else model
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
    train_tf, test_tf = train_pipeline(inputs.spec).to(device), test_pipeline(inputs.spec).to(device)
    generator = torch.Generator(device=device).manual_seed(seed)

    @torch.no_grad()
    def learner_view(idx: torch.Tensor) -> LearnerView:
        model.eval()
        with autocast(device, cfg.bf16):
            logits, emb = forward_with_embeddings(model, test_tf(images[idx]).contiguous(memory_format=fmt))
        model.train()
        return LearnerView(logits.float(), emb.float())

    train_clock, select_clock, eval_clock = Stopwatch(device), Stopwatch(device), Stopwatch(device)
    counts, logged = Counters(), {"batch": [], "indices": [], "kept": []}
    live = Live(dir=str(out / "dvclive"), save_dvc_exp=False, dvcyaml=None, report=None)
    model.train()
    for epoch in range(cfg.epochs):
        order = split["train"][torch.randperm(len(split["train"]), generator=generator, device=device)]
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        with train_clock():
            for b in tqdm(range(n_batches), desc=f"{method} epoch {epoch + 1}/{cfg.epochs}",
                          disable=not progress, leave=False):
                idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                batch = SelectionBatch(idx, labels[idx], cfg.keep, generator, features, learner_view,
                                       ref_losses)
                with select_clock():
                    positions = selector.select(batch)
                kept = idx[positions]
                counts.scored += batch.scored
                if epoch == 0 and b in cfg.log_batches:
                    _log_selection(logged, b, idx, positions)
                x = train_tf(images[kept]).contiguous(memory_format=fmt)
                y = labels[kept]
                with autocast(device, cfg.bf16):
                    logits = step_model(x)
                    loss = F.cross_entropy(logits.float(), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.detach() * len(kept)
                correct += (logits.argmax(1) == y).sum()
                seen += len(kept)
        counts.backprop += seen
        with eval_clock():
            val_loss, val_acc = evaluate(model, images, labels, split["val"], test_tf,
                                         cfg.eval_batch_size, device, cfg.bf16, fmt)
        row = {"epoch": epoch + 1, "train_loss": loss_sum.item() / seen, "train_acc": correct.item() / seen,
               "val_loss": val_loss, "val_acc": val_acc, "train_seconds": train_clock.seconds,
               "images_backprop": counts.backprop, "images_scored": counts.scored}
        counts.history.append(row)
        for key, value in row.items():
            if key != "epoch":
                live.log_metric(key, value)
        live.next_step()
    live.end()

    with eval_clock():
        test_loss, test_acc = evaluate(model, images, labels, split["test"], test_tf,
                                       cfg.eval_batch_size, device, cfg.bf16, fmt)
    last = counts.history[-1]
    metrics = {
        "test_acc": test_acc, "test_loss": test_loss,
        "train_acc": last["train_acc"], "train_loss": last["train_loss"],
        "val_acc": last["val_acc"], "val_loss": last["val_loss"],
        "best_val_acc": max(r["val_acc"] for r in counts.history),
        "train_seconds": train_clock.seconds, "selection_seconds": select_clock.seconds,
        "eval_seconds": eval_clock.seconds,
        "images_backprop": counts.backprop, "images_scored": counts.scored,
        "images_forwarded": counts.backprop + counts.scored,
        "epochs": cfg.epochs, "batch_size": cfg.batch_size, "keep_per_batch": len(kept),
        "seed": seed,
    }
    torch.save(model.state_dict(), out / "model.pt")
    np.savez(out / "selections.npz", batch=np.asarray(logged["batch"], dtype=np.int64),
             indices=np.asarray(logged["indices"], dtype=np.int64).reshape(-1, cfg.batch_size),
             kept=np.asarray(logged["kept"], dtype=bool).reshape(-1, cfg.batch_size))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def _device_table(table: np.ndarray | None, needed: bool, what: str, device: torch.device):
    if not needed:
        return None
    if table is None:
        raise SalnError(f"this method needs {what}, which were not provided")
    return torch.from_numpy(np.asarray(table, dtype=np.float32)).to(device)


def _log_selection(logged: dict, batch_number: int, idx: torch.Tensor, positions: torch.Tensor) -> None:
    mask = torch.zeros(len(idx), dtype=torch.bool)
    mask[positions.cpu()] = True
    logged["batch"].append(batch_number)
    logged["indices"].append(idx.cpu().numpy())
    logged["kept"].append(mask.numpy())
