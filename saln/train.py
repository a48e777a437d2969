"""The training loop: batch -> selector -> augment and train on the kept images -> metrics.

Images stay uint8 on the training device; a selector picks positions before the batch is
augmented, so dropped images are never augmented, forwarded or back-propagated. The last
partial batch of every epoch is dropped (for every method alike), so each step sees exactly
``batch_size`` candidates and keeps ``int(batch_size * (1 - filter_ratio))`` >= 2 of them.
``Trainer.step`` is one such step; ``train_run`` loops it over epochs and bench/ times it.
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
from saln.device import IntervalClock, Stopwatch, autocast, memory_format, pick_device
from saln.errors import SalnError
from saln.features import images_to_tensor, test_time_batches
from saln.selection import LearnerView, SelectionBatch, Selector, build


@dataclass
class RunInputs:
    """Everything one run reads besides its config."""

    prepared: Prepared
    spec: AugmentSpec
    features: np.ndarray | None = None  # N x D, row = dataset index
    reference_losses: np.ndarray | None = None  # N, row = dataset index
    reference_embeddings: np.ndarray | None = None  # N x D, row = dataset index
    selector_options: dict = field(default_factory=dict)  # keyword options of the method's selector
    train_subset: np.ndarray | None = None  # dataset indices trained on instead of the train split


@dataclass
class Counters:
    backprop: int = 0  # images forwarded with gradient and back-propagated
    scored: int = 0  # images forwarded without gradient to score them for selection
    history: list[dict] = field(default_factory=list)


def forward_with_embeddings(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and the penultimate (pooled) features of a torchvision ResNet."""
    captured = {}

    def keep_input(module, inputs, output) -> None:  # returning a value would replace fc's output
        captured["emb"] = inputs[0]

    hook = model.fc.register_forward_hook(keep_input)
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
    for idx, x in test_time_batches(images, transform, batch_size, device, fmt, indices):
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


@dataclass
class StepResult:
    """What one training step leaves on the device (nothing here forces a host sync)."""

    positions: torch.Tensor  # kept positions within the batch
    kept: torch.Tensor  # kept dataset indices
    loss: torch.Tensor  # mean cross-entropy over the kept images, detached
    correct: torch.Tensor  # kept images the step's forward classified correctly
    scored: int  # images forwarded without gradient for the selection


@dataclass
class Trainer:
    """One run's learner, optimiser, selector and device-resident data: all that a step reads.

    ``step`` is the whole training step (select -> gather -> augment -> forward/backward); the
    training loop and the benchmark (bench/bench.py) both drive it, so they time the same code.
    """

    model: nn.Module
    step_model: nn.Module  # ``model`` or its torch.compile wrapper; both share parameters
    optimizer: torch.optim.Optimizer
    selector: Selector
    images: torch.Tensor  # uint8 N x 3 x H x W, on device
    labels: torch.Tensor  # N, on device
    features: torch.Tensor | None
    ref_losses: torch.Tensor | None
    ref_embeddings: torch.Tensor | None
    train_tf: nn.Module
    test_tf: nn.Module
    generator: torch.Generator
    device: torch.device
    fmt: torch.memory_format
    bf16: bool
    keep: int
    select_clock: IntervalClock

    @torch.no_grad()
    def learner_view(self, idx: torch.Tensor) -> LearnerView:
        self.model.eval()
        with autocast(self.device, self.bf16):
            x = self.test_tf(self.images[idx]).contiguous(memory_format=self.fmt)
            logits, emb = forward_with_embeddings(self.model, x)
        self.model.train()
        return LearnerView(logits.float(), emb.float())

    def selection_batch(self, idx: torch.Tensor) -> SelectionBatch:
        return SelectionBatch(idx, self.labels[idx], self.keep, self.generator, self.features,
                              self.learner_view, self.ref_losses, self.ref_embeddings)

    def learn(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One SGD step on a ready float batch; returns the detached loss and the logits."""
        with autocast(self.device, self.bf16):
            logits = self.step_model(x)
            loss = F.cross_entropy(logits.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach(), logits

    def step(self, idx: torch.Tensor) -> StepResult:
        """Select before any work, so dropped images are never augmented nor forwarded."""
        batch = self.selection_batch(idx)
        with self.select_clock():
            positions = self.selector.select(batch)
        kept = idx[positions]
        x = self.train_tf(self.images[kept]).contiguous(memory_format=self.fmt)
        y = self.labels[kept]
        loss, logits = self.learn(x, y)
        return StepResult(positions, kept, loss, (logits.argmax(1) == y).sum(), batch.scored)


def build_trainer(inputs: RunInputs, cfg: TrainConfig, method: str, seed: int,
                  device: torch.device) -> Trainer:
    """Seed, then move the data to ``device`` and build the learner (in this order, for reproducibility)."""
    seed_everything(seed)
    selector = build(method, **inputs.selector_options)
    fmt = memory_format(device, cfg.channels_last)
    model = build_resnet(cfg.arch, cfg.weights, inputs.prepared.num_classes).to(device, memory_format=fmt)
    return Trainer(
        model=model,
        step_model=torch.compile(model) if cfg.compile else model,
        optimizer=torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                  weight_decay=cfg.weight_decay),
        selector=selector,
        images=images_to_tensor(inputs.prepared.images).to(device),
        labels=torch.from_numpy(inputs.prepared.labels).to(device),
        features=_device_table(inputs.features, selector.needs_features, "features", device),
        ref_losses=_device_table(inputs.reference_losses, selector.needs_reference,
                                 "reference losses", device),
        ref_embeddings=_device_table(inputs.reference_embeddings, selector.needs_reference_embeddings,
                                     "reference embeddings", device),
        train_tf=train_pipeline(inputs.spec).to(device),
        test_tf=test_pipeline(inputs.spec).to(device),
        generator=torch.Generator(device=device).manual_seed(seed),
        device=device, fmt=fmt, bf16=cfg.bf16, keep=cfg.keep,
        select_clock=IntervalClock(device),
    )


def train_run(inputs: RunInputs, cfg: TrainConfig, method: str, seed: int, out_dir: str | Path,
              progress: bool = True) -> dict:
    """Train one (dataset, method, seed) run; writes metrics.json, model.pt, selections.npz, dvclive/."""
    from dvclive import Live
    from tqdm import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = pick_device(cfg.device)
    split = {k: torch.from_numpy(v).long().to(device) for k, v in inputs.prepared.splits.items()}
    if inputs.train_subset is not None:  # a pruned training split (stage prune)
        split["train"] = torch.from_numpy(np.asarray(inputs.train_subset)).long().to(device)
    n_batches = len(split["train"]) // cfg.batch_size
    if n_batches == 0:
        raise SalnError(f"the training split has {len(split['train'])} images, fewer than "
                        f"train.batch_size={cfg.batch_size}")
    trainer = build_trainer(inputs, cfg, method, seed, device)
    model, images, labels, generator = trainer.model, trainer.images, trainer.labels, trainer.generator

    train_clock, eval_clock = Stopwatch(device), Stopwatch(device)
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
                step = trainer.step(idx)
                counts.scored += step.scored
                if epoch == 0 and b in cfg.log_batches:
                    _log_selection(logged, b, idx, step.positions)
                loss_sum += step.loss * len(step.kept)
                correct += step.correct
                seen += len(step.kept)
        counts.backprop += seen
        with eval_clock():
            val_loss, val_acc = evaluate(model, images, labels, split["val"], trainer.test_tf,
                                         cfg.eval_batch_size, device, cfg.bf16, trainer.fmt)
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
        test_loss, test_acc = evaluate(model, images, labels, split["test"], trainer.test_tf,
                                       cfg.eval_batch_size, device, cfg.bf16, trainer.fmt)
    last = counts.history[-1]
    metrics = {
        "test_acc": test_acc, "test_loss": test_loss,
        "train_acc": last["train_acc"], "train_loss": last["train_loss"],
        "val_acc": last["val_acc"], "val_loss": last["val_loss"],
        "best_val_acc": max(r["val_acc"] for r in counts.history),
        "train_seconds": train_clock.seconds, "selection_seconds": trainer.select_clock.seconds,
        "eval_seconds": eval_clock.seconds,
        "images_backprop": counts.backprop, "images_scored": counts.scored,
        "images_forwarded": counts.backprop + counts.scored,
        "epochs": cfg.epochs, "batch_size": cfg.batch_size, "keep_per_batch": len(step.kept),
        "seed": seed, "train_images": len(split["train"]),
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
