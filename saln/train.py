"""The training loop: batch -> selector -> augment and train on the kept images -> metrics.

Images stay uint8 on the training device; a selector picks positions before the batch is
augmented, so dropped images are never augmented, forwarded or back-propagated. The last
partial batch of every epoch is dropped (for every method alike), so each step sees exactly
``batch_size`` candidates and keeps ``int(batch_size * (1 - filter_ratio))`` >= 2 of them.
``Trainer.step`` is one such step; ``train_run`` loops it over passes until the run's budget
(saln/schedule.py: epochs or images back-propagated, times a budget fraction) is spent, setting the
rate of every step from the schedule, and bench/ times it. Given a checkpoint path, ``train_run``
saves its whole state after every pass and a rerun after a kill continues from there, ending
bitwise equal to an uninterrupted run on CPU (saln/checkpoint.py).
With ``train.world_size`` W > 1, W torchrun workers train one run together (``DistributedTrainer``,
saln/distributed.py and docs/distributed.md); W = 1 is the single-process ``Trainer``, unchanged.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from saln.augment import AugmentSpec
from saln.transforms import augment_draws, test_pipeline, train_pipeline
from saln.backbones import (ARCHS, build_model, classifier, classifier_key, forward_with_embeddings,
                            normalisation)
from saln import checkpoint as ckpt
from saln import distributed
from saln.config import batch_numbers, check_weights, flag, number, require
from saln.data import Prepared
from saln.device import (IntervalClock, Stopwatch, autocast, check_device, memory_format, pick_device,
                         provenance)
from saln.distributed import Group
from saln.errors import SalnError
from saln.files import write_json
from saln.rates import learning_rates
from saln.schedule import Budget, rate_factor, run_budget, schedule_settings
from saln.evaluation import (EvalPlan, budget_grid, fixed_subset, recalibrated_batchnorm,
                             recalibration_sample)
from saln.layout import HEAD_FILE, METRICS_FILE, MODEL_FILE, SELECTIONS_FILE, UNRECALIBRATED
from saln.features import images_to_tensor, test_time_batches
from saln.selection import LearnerView, SelectionBatch, Selector, build


class DivergedError(SalnError):
    """The training loss became non-finite or exploded: the run stops and writes no metrics."""


# A loss above this many times ln(classes) (chance level) has blown up even if still finite.
DIVERGENCE_FACTOR = 100


@dataclass(frozen=True)
class TrainConfig:
    """One training run's knobs (see params.yaml's ``train`` and ``model`` blocks for their meaning)."""

    epochs: int
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    filter_ratio: float
    eval_batch_size: int
    log_batches: tuple[int, ...]
    device: str
    bf16: bool
    channels_last: bool
    compile: bool
    arch: str
    weights: str
    world_size: int = 1  # processes training this one run (torchrun + DistributedDataParallel)
    eval_subset: int = 0  # evaluations before the last read at most this many images per split; 0 = all
    bn_recalibrate: int = 0  # images re-estimating BatchNorm statistics before each evaluation; 0 = off
    save_model: bool = False  # also write the whole network (model.pt), not only its classifier head
    budget: str = "epochs"  # epochs | images: what every method is given (saln/schedule.py)
    schedule: str = "constant"  # constant | linear | cosine: the rate over the run's own steps
    warmup: float = 0.0  # share of the run's steps with a linear warm-up (decaying schedules)
    budget_fraction: float = 1.0  # the share of the budget this run's schedule completes at

    @property
    def keep(self) -> int:
        """Images kept from a full batch: int(B * (1 - filter_ratio)), as in Algorithm 1 (the small
        tolerance keeps 40 x (1 - 0.8) = 7.999... at 8)."""
        return math.floor(self.batch_size * (1 - self.filter_ratio) + 1e-9)


def train_config(params: dict, lr: float | None = None) -> TrainConfig:
    """The run's config at ``lr`` (default: the first of ``train.lrs``, which is read only then)."""
    t = require(params, "train", "params")
    lr = learning_rates(params)[0] if lr is None else lr
    budget, schedule, warmup = schedule_settings(t)
    model = require(params, "model", "params")
    arch = require(model, "arch", "model")
    if arch not in ARCHS:
        raise SalnError(f"model.arch must be one of {', '.join(ARCHS)}, got {arch!r}")
    cfg = TrainConfig(
        epochs=number(t, "epochs", "train", lo=1, integer=True),
        batch_size=number(t, "batch_size", "train", lo=1, integer=True),
        lr=lr,
        momentum=number(t, "momentum", "train", lo=0, hi=1, hi_open=True),
        weight_decay=number(t, "weight_decay", "train", lo=0),
        filter_ratio=number(t, "filter_ratio", "train", lo=0, hi=1, hi_open=True),
        eval_batch_size=number(t, "eval_batch_size", "train", lo=1, integer=True),
        log_batches=batch_numbers(require(t, "log_batches", "train"), "train.log_batches"),
        device=check_device(require(t, "device", "train"), "train.device"),
        bf16=flag(t, "bf16", "train"),
        channels_last=flag(t, "channels_last", "train"),
        compile=flag(t, "compile", "train"),
        arch=arch,
        weights=check_weights(require(model, "weights", "model"), "model.weights"),
        world_size=number(t, "world_size", "train", lo=1, integer=True),
        eval_subset=number(t, "eval_subset", "train", lo=0, integer=True),
        bn_recalibrate=number(t, "bn_recalibrate", "train", lo=0, integer=True),
        save_model=flag(t, "save_model", "train"),
        budget=budget, schedule=schedule, warmup=warmup,
    )
    # BatchNorm in train mode cannot normalise a single image, so a selector must keep >= 2.
    if cfg.keep < 2:
        raise SalnError(f"train.batch_size * (1 - train.filter_ratio) keeps {cfg.keep} image(s) per "
                        "batch; BatchNorm needs at least 2: raise batch_size or lower filter_ratio")
    return cfg


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
    steps: int = 0  # optimizer steps
    keep_per_batch: int = 0
    history: list[dict] = field(default_factory=list)


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
    torch.manual_seed(seed)  # model init (augmentation draws are keyed: saln.transforms)
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
    generator: torch.Generator  # the selectors' draws (random, JEST's sampling)
    shuffle_generator: torch.Generator  # the epochs' batch order: its own stream, so every method of a
    # seed sees the same batches in every epoch whatever its selector draws (paired comparisons)
    device: torch.device
    fmt: torch.memory_format
    bf16: bool
    keep: int
    num_classes: int
    select_clock: IntervalClock
    seed: int  # keys each image's augmentation with the pass and its dataset index (paired across methods)
    group: Group | None = None  # this rank of a multi-process run (DistributedTrainer); None: one process

    @property
    def main(self) -> bool:
        """The process that evaluates and writes: the only one, or rank 0 of a multi-process run."""
        return self.group is None or self.group.main

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

    def augment(self, kept: torch.Tensor, pass_number: int) -> torch.Tensor:
        """The kept images augmented as every method of this seed augments them in this pass."""
        draws = augment_draws(self.seed, pass_number, kept)
        return self.train_tf(self.images[kept], draws).contiguous(memory_format=self.fmt)

    def set_rate(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def step(self, idx: torch.Tensor, pass_number: int) -> StepResult:
        """Select before any work, so dropped images are never augmented nor forwarded."""
        batch = self.selection_batch(idx)
        with self.select_clock():
            positions = self.selector.select(batch)
        kept = idx[positions]
        x = self.augment(kept, pass_number)
        y = self.labels[kept]
        loss, logits = self.learn(x, y)
        return StepResult(positions, kept, loss, (logits.argmax(1) == y).sum(), batch.scored)


@dataclass
class DistributedTrainer(Trainer):
    """One rank of a W-process run: the same global batches and selections, a 1/W share of the work.

    Every rank holds the same data, seed and generator, so it draws the same shuffle. Per step:

    * the learner view (logits, embeddings) of the B candidates is computed in W shards, one per
      rank, and all-gathered, so a selector sees the whole batch's view on every rank;
    * every rank runs the selector on that same global batch (its generator draws stay in step
      with the others' and with a single process's); rank 0's positions are then broadcast, so
      even a non-deterministic kernel on one device cannot make the ranks train on different sets;
    * the K kept images are split into W contiguous shards (sizes differing by at most one); each
      rank augments its shard with each image's own keyed draws (``saln.transforms.augment_draws``),
      so an image's augmentation depends on (seed, pass, dataset index) only, as in one process;
    * each rank's loss is (sum of cross-entropy over its shard) * W / K: DDP averages gradients
      over the W ranks, which gives exactly the gradient of the mean over all K kept images.

    The step's reported loss and accuracy are all-reduced over the ranks: every rank sees the same
    (global) values, so a non-finite loss stops every rank at the same step.
    """

    @torch.no_grad()
    def learner_view(self, idx: torch.Tensor) -> LearnerView:
        bounds = distributed.shard_bounds(len(idx), self.group.size)
        lo, hi = bounds[self.group.rank]
        view = super().learner_view(idx[lo:hi])
        rows = distributed.all_gather_rows(torch.cat([view.logits, view.embeddings], dim=1),
                                           [b - a for a, b in bounds])
        classes = view.logits.shape[1]
        return LearnerView(rows[:, :classes].contiguous(), rows[:, classes:].contiguous())

    def learn_shard(self, x: torch.Tensor, y: torch.Tensor, kept: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One SGD step on this rank's shard of ``kept`` images; returns its CE sum and correct count."""
        with autocast(self.device, self.bf16):
            logits = self.step_model(x)
            ce_sum = F.cross_entropy(logits.float(), y, reduction="sum")
        self.optimizer.zero_grad(set_to_none=True)
        (ce_sum * (self.group.size / kept)).backward()  # DDP averages: d mean CE over the K kept
        self.optimizer.step()
        return ce_sum.detach(), (logits.argmax(1) == y).sum()

    def step(self, idx: torch.Tensor, pass_number: int) -> StepResult:
        batch = self.selection_batch(idx)
        with self.select_clock():
            positions = distributed.broadcast(self.selector.select(batch).to(self.device))
        kept = idx[positions]
        lo, hi = self.group.shard(len(kept))
        mine = kept[lo:hi]
        ce_sum, correct = self.learn_shard(self.augment(mine, pass_number), self.labels[mine], len(kept))
        total = distributed.all_reduce_sum(torch.stack([ce_sum, correct.to(ce_sum.dtype)]))
        return StepResult(positions, kept, total[0] / len(kept), total[1].round().long(), batch.scored)


def check_world(cfg: TrainConfig, group: Group) -> None:
    """Every rank must get enough of a step's kept images (the fewest any selector keeps: cfg.keep)."""
    per_rank = cfg.keep // group.size
    need = 1 if group.device.type == "cuda" else 2  # CPU has no SyncBatchNorm: BN sees one rank's shard
    if per_rank < need:
        why = ("every process needs one" if need == 1
               else "BatchNorm without SyncBatchNorm (CPU) needs at least 2 per process")
        raise SalnError(f"train.world_size={group.size} leaves {per_rank} of the {cfg.keep} images kept per "
                        f"step to a process; {why}: lower world_size, raise batch_size or lower filter_ratio")


def selection_seed(seed: int) -> int:
    """The selectors' stream, independent of the shuffle's (seeded with ``seed`` itself)."""
    return int(np.random.SeedSequence([seed, 1]).generate_state(1)[0])


def build_trainer(inputs: RunInputs, cfg: TrainConfig, method: str, seed: int,
                  device: torch.device, group: Group | None = None) -> Trainer:
    """Seed, then move the data to ``device`` and build the learner (in this order, for reproducibility).

    With ``group`` (a rank of a multi-process run), a ``DistributedTrainer`` whose step model is the
    learner wrapped in DistributedDataParallel (SyncBatchNorm on CUDA; saln.distributed.wrap_model).
    """
    seed_everything(seed)
    selector = build(method, **inputs.selector_options)
    fmt = memory_format(cfg.channels_last)
    model = build_model(cfg.arch, cfg.weights, inputs.prepared.num_classes).to(device, memory_format=fmt)
    step_model = model
    if group is not None:
        check_world(cfg, group)
        model, step_model = distributed.wrap_model(model, device)
    norm = normalisation(cfg.arch)
    return (Trainer if group is None else DistributedTrainer)(
        model=model,
        step_model=torch.compile(step_model) if cfg.compile else step_model,
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
        train_tf=train_pipeline(inputs.spec, norm).to(device),
        test_tf=test_pipeline(inputs.spec, norm).to(device),
        generator=torch.Generator(device=device).manual_seed(selection_seed(seed)),
        shuffle_generator=torch.Generator(device=device).manual_seed(seed),
        device=device, fmt=fmt, bf16=cfg.bf16, keep=cfg.keep, num_classes=inputs.prepared.num_classes,
        select_clock=IntervalClock(device), seed=seed, group=group,
    )


@dataclass
class RunState:
    """What a run accumulates besides its RNG streams; a checkpoint saves and restores all of it."""

    trainer: Trainer
    clocks: dict  # "train" and "eval" Stopwatches; the selection clock is the trainer's
    counts: Counters = field(default_factory=Counters)
    logged: dict = field(default_factory=lambda: {"batch": [], "indices": [], "kept": []})


def train_run(inputs: RunInputs, cfg: TrainConfig, method: str, seed: int, out_dir: str | Path,
              progress: bool = True, curves: bool = True, checkpoint: str | Path | None = None,
              checkpoint_key: str = "", checkpoint_every: float = 0.0, save_model: bool = True) -> dict | None:
    """Train one (dataset, method, seed) run; writes metrics.json, model.pt (if ``save_model``),
    selections.npz and dvclive/.

    Every epoch, and once before training (epoch 0), the learner is evaluated on the validation
    and test splits, so accuracy can be read against epochs, images back-propagated and seconds;
    ``curves=False`` evaluates after the last epoch only (the reference model needs no curves).
    A non-finite loss raises ``DivergedError`` at once, before anything is written.

    With ``checkpoint`` (a path outside the stage's outs), the run's state is saved there after
    every epoch but the last (but at most once per ``checkpoint_every`` seconds: saving a short
    epoch costs more than redoing it); a later call with the same ``checkpoint_key`` (see
    ``checkpoint.run_key``) and the same config and inputs continues after the saved epoch, and a
    finished run deletes the file.

    With ``cfg.world_size`` W > 1 this process must be one of W torchrun workers (saln/distributed.py):
    they train the run together; rank 0 alone evaluates, checkpoints (with every rank's RNG states)
    and writes, and the other ranks return None.
    """
    device = pick_device(cfg.device)
    with distributed.process_group(cfg.world_size, device) as group:
        device = group.device if group else device
        split = run_splits(inputs, device)
        n_batches = len(split["train"]) // cfg.batch_size
        if n_batches == 0:
            raise SalnError(f"the training split has {len(split['train'])} images, fewer than "
                            f"train.batch_size={cfg.batch_size}")
        state = RunState(build_trainer(inputs, cfg, method, seed, device, group),
                         {"train": Stopwatch(device), "eval": Stopwatch(device)})
        budget = budget_of(cfg, state.trainer, n_batches)
        passes = math.ceil(budget.steps / n_batches)
        plan = eval_plan(inputs, cfg, split, seed, curves)
        main, out = state.trainer.main, Path(out_dir)
        live = open_live(out) if main else None
        key = {"key": checkpoint_key, "run": run_identity(inputs, cfg, method, seed, curves, device)
               } if checkpoint is not None else {}
        done = resume_run(checkpoint, key, state, passes) if checkpoint is not None else 0
        if done:  # DVC deleted dvclive/ with the outs: rebuild the curves' first rows from the checkpoint
            for row in state.counts.history:
                _log_row(live, row)
        elif curves:
            log_row(live, state.counts, evaluation_row(state, plan, cfg, 0))
        saver = Saver(checkpoint, key, checkpoint_every)
        try:
            for epoch in range(done + 1, passes + 1):
                run_epoch(state, live, split["train"], plan, cfg, method, Pass(epoch, passes, n_batches, budget),
                          progress and main, curves)
                if epoch < passes:  # after the last, the outputs follow
                    saver.after_epoch(state, epoch)
                report_epoch(method, passes, state.counts.history[-1], progress and main)
        except DivergedError:
            if checkpoint is not None and main:  # a divergence is an outcome, not an interruption
                ckpt.remove(checkpoint)
            raise
        if not main:
            return None
        live.end()
        metrics = write_outputs(out, state, cfg, seed, len(split["train"]), device, save_model, budget)
        if checkpoint is not None:
            ckpt.remove(checkpoint)
        return metrics


def eval_plan(inputs: RunInputs, cfg: TrainConfig, split: dict, seed: int, curves: bool) -> EvalPlan:
    """The run's budget grid (from the dataset's whole training split, so a pruned run shares it),
    evaluation subsets and BatchNorm sample; no grid without curves."""
    full_train = len(inputs.prepared.splits["train"])
    grid = budget_grid(full_train, cfg.batch_size, cfg.keep, cfg.epochs) if curves else ()
    full = {name: split[name] for name in ("val", "test")}
    return EvalPlan(frozenset(grid), {k: fixed_subset(v, cfg.eval_subset) for k, v in full.items()}, full,
                    recalibration_sample(split["train"], cfg.bn_recalibrate, seed))


def open_live(out: Path):
    from dvclive import Live

    out.mkdir(parents=True, exist_ok=True)
    return Live(dir=str(out / "dvclive"), save_dvc_exp=False, dvcyaml=None, report=None)


@dataclass(frozen=True)
class Pass:
    """One pass over the shuffled training split: its number, the run's passes, and its steps."""

    number: int  # 1-based
    of: int  # the run's passes (the last may stop mid-way)
    batches: int  # full batches in a pass
    budget: Budget

    @property
    def steps(self) -> int:
        return min(self.batches, self.budget.steps - (self.number - 1) * self.batches)

    @property
    def last(self) -> bool:
        return self.number == self.of


def budget_of(cfg: TrainConfig, trainer: Trainer, n_batches: int) -> Budget:
    per_step = cfg.batch_size if trainer.selector.keeps_whole_batch else cfg.keep
    return run_budget(cfg.budget, cfg.budget_fraction, cfg.epochs, n_batches, cfg.batch_size, per_step)


def run_epoch(state: RunState, live, train_split: torch.Tensor, plan: EvalPlan, cfg: TrainConfig, method: str,
              this: Pass, progress: bool, curves: bool) -> None:
    """Train one pass, evaluating at the budget grid's points inside it (train clock paused), then
    at its end (every pass with curves, else after the last), and log the rows."""
    def at_budget(step: int) -> None:
        with state.clocks["train"].paused():
            log_row(live, state.counts, evaluation_row(state, plan, cfg, this.number - 1 + step / this.batches))

    with state.clocks["train"]():
        fit = train_epoch(state.trainer, train_split, cfg, method, this, state.counts, state.logged, progress,
                          at_budget, plan.grid)
    epoch = this.number - 1 + this.steps / this.batches
    row = {**evaluation_row(state, plan, cfg, epoch, this.last, evaluated=curves or this.last), **fit}
    log_row(live, state.counts, row)


def write_outputs(out: Path, state: RunState, cfg: TrainConfig, seed: int, train_images: int,
                  device: torch.device, save_model: bool, budget: Budget) -> dict:
    trainer, logged = state.trainer, state.logged
    metrics = final_metrics(state.counts, state.clocks, trainer, cfg, seed, train_images, device) | {
        "budget": budget.kind, "budget_fraction": budget.fraction, "passes": budget.passes,
        "schedule": cfg.schedule, "warmup": cfg.warmup}
    if save_model:
        torch.save(trainer.model.state_dict(), out / MODEL_FILE)
    head = classifier(trainer.model).state_dict()
    torch.save({f"{classifier_key(cfg.arch)}.{k}": v for k, v in head.items()}, out / HEAD_FILE)
    np.savez(out / SELECTIONS_FILE, batch=np.asarray(logged["batch"], dtype=np.int64),
             indices=np.asarray(logged["indices"], dtype=np.int64).reshape(-1, cfg.batch_size),
             kept=np.asarray(logged["kept"], dtype=bool).reshape(-1, cfg.batch_size))
    write_json(out / METRICS_FILE, metrics)
    return metrics


# ---------------------------------------------------------------------------------------------
# Checkpoints: save after an epoch, restore before the next


def run_identity(inputs: RunInputs, cfg: TrainConfig, method: str, seed: int, curves: bool,
                 device: torch.device) -> str:
    """What the caller's key may not cover: the resolved config, method, seed, device and inputs.

    Upstream stages (prepare, features, reference) can change the arrays without changing the
    params a train stage reads; hashing the arrays themselves keeps a stale checkpoint out.
    """
    splits = inputs.prepared.splits
    digest = ckpt.array_digest(inputs.prepared.images, inputs.prepared.labels,
                               *(splits[k] for k in sorted(splits)), inputs.features,
                               inputs.reference_losses, inputs.reference_embeddings, inputs.train_subset)
    settings = {"config": asdict(cfg), "method": method, "seed": seed, "curves": curves,
                "device": device.type, "spec": asdict(inputs.spec), "splits": sorted(splits),
                "selector_options": inputs.selector_options, "inputs": digest}
    return ckpt.run_key(settings, [])


def snapshot(state: RunState, epoch: int, key: dict, rank_rngs: list[dict] | None = None) -> dict:
    """The run after ``epoch`` completed epochs, as plain tensors and containers.

    ``rank_rngs``: in a multi-process run, every rank's RNG states in rank order (``rng_by_rank``).
    """
    t, c, logged = state.trainer, state.counts, state.logged
    return {
        **key, "epoch": epoch, **({"rng_by_rank": rank_rngs} if rank_rngs is not None else {}),
        "model": t.model.state_dict(), "optimizer": t.optimizer.state_dict(),
        "rng": ckpt.rng_states(t.generator, t.shuffle_generator),
        "counters": {"backprop": c.backprop, "scored": c.scored, "steps": c.steps,
                     "keep_per_batch": c.keep_per_batch,
                     "history": [dict(row) for row in c.history]},
        "logged": {"batch": list(logged["batch"]),
                   "indices": [torch.from_numpy(a) for a in logged["indices"]],
                   "kept": [torch.from_numpy(a) for a in logged["kept"]]},
        "seconds": {"train": state.clocks["train"].seconds, "eval": state.clocks["eval"].seconds,
                    "select": t.select_clock.seconds},
    }


def save_checkpoint(payload: dict, path: str | Path) -> None:
    ckpt.save_atomic(payload, path)  # a module-level name, so a test can simulate a kill right after


@dataclass
class Saver:
    """Saves the run after an epoch, at most once per ``every`` seconds (nothing without a path)."""

    path: str | Path | None
    key: dict
    every: float
    last: float = field(default_factory=time.monotonic)

    def after_epoch(self, state: RunState, epoch: int) -> None:
        if self.path is None:
            return
        due = time.monotonic() - self.last >= self.every
        group = state.trainer.group
        if group is None:
            if due:
                save_checkpoint(snapshot(state, epoch, self.key), self.path)
                self.last = time.monotonic()
            return
        # Every rank must take part in the gather, so rank 0's clock decides for all.
        if distributed.broadcast_int(due, group.device):
            rank_rngs = distributed.gather_objects(ckpt.rng_states(state.trainer.generator,
                                                                       state.trainer.shuffle_generator))
            if group.main:
                save_checkpoint(snapshot(state, epoch, self.key, rank_rngs), self.path)
            self.last = time.monotonic()


def resume(path: str | Path, key: dict, state: RunState, epochs: int) -> int:
    """Restore ``state`` from the checkpoint if it belongs to this run; returns the epochs done."""
    payload = ckpt.load(path)
    if payload is None:
        return 0
    reason = ("it is unreadable or of an older format" if not payload
              else "params or code changed" if payload.get("key") != key["key"]
              else "the run's config or inputs changed" if payload.get("run") != key["run"] else "")
    if reason:
        ckpt.remove(path)
        print(f"discarded checkpoint {path}: {reason} since it was written; training from scratch",
              file=sys.stderr, flush=True)
        return 0
    restore(state, payload)
    print(f"resumed from {path} after epoch {payload['epoch']} of {epochs}", file=sys.stderr, flush=True)
    return payload["epoch"]


def resume_run(path: str | Path, key: dict, state: RunState, epochs: int) -> int:
    """``resume`` for every rank: rank 0 judges the file (and may discard it), the others follow it."""
    group = state.trainer.group
    if group is None:
        return resume(path, key, state, epochs)
    done = distributed.broadcast_int(resume(path, key, state, epochs) if group.main else 0, group.device)
    if done and not group.main:  # rank 0 rewrites the file only after the next epoch's collectives
        restore(state, ckpt.load(path))
    return done


def restore(state: RunState, payload: dict) -> None:
    t, c = state.trainer, payload["counters"]
    t.model.load_state_dict(payload["model"])
    t.optimizer.load_state_dict(payload["optimizer"])
    state.counts = Counters(c["backprop"], c["scored"], c["steps"], c["keep_per_batch"], list(c["history"]))
    logged = payload["logged"]
    state.logged = {"batch": list(logged["batch"]), "indices": [a.numpy() for a in logged["indices"]],
                    "kept": [a.numpy() for a in logged["kept"]]}
    seconds = payload["seconds"]
    state.clocks["train"].seconds, state.clocks["eval"].seconds = seconds["train"], seconds["eval"]
    # IntervalClock has no setter; a fresh one holds no pending spans, so its total is _seconds.
    t.select_clock._seconds = seconds["select"]
    rank = t.group.rank if t.group is not None else 0
    rng = payload["rng_by_rank"][rank] if "rng_by_rank" in payload else payload["rng"]
    ckpt.restore_rng(rng, t.generator, t.shuffle_generator)  # last: nothing above may draw after it


def run_splits(inputs: RunInputs, device: torch.device) -> dict[str, torch.Tensor]:
    split = {k: torch.from_numpy(v).long().to(device) for k, v in inputs.prepared.splits.items()}
    if inputs.train_subset is not None:  # a pruned training split (stage prune)
        split["train"] = torch.from_numpy(np.asarray(inputs.train_subset)).long().to(device)
    return split


def train_epoch(trainer: Trainer, train_split: torch.Tensor, cfg: TrainConfig, method: str, this: Pass,
                counts: Counters, logged: dict, progress: bool,
                at_budget: Callable[[int], None] | None = None, budgets: frozenset[int] = frozenset()) -> dict:
    """One pass over the shuffled training split (last partial batch dropped), ``this.steps`` steps
    long, each at the schedule's rate for the run's step number.

    Stops at once on a loss that is non-finite or above ``DIVERGENCE_FACTOR`` x ln(classes). After a
    step whose images back-propagated so far are in ``budgets`` (except the pass's last step, whose
    evaluation is the pass's own), calls ``at_budget(step_number)``.
    """
    from tqdm import tqdm

    order = train_split[torch.randperm(len(train_split), generator=trainer.shuffle_generator,
                                       device=trainer.device)]
    bound = DIVERGENCE_FACTOR * math.log(max(trainer.num_classes, 2))
    loss_sum = torch.zeros((), device=trainer.device)
    correct = torch.zeros((), device=trainer.device, dtype=torch.long)
    seen = 0
    # In a log (DVC's non-TTY output) a bar would print a line per refresh: report_epoch says it once.
    bar = tqdm(range(this.steps), desc=f"{method} pass {this.number}/{this.of}", leave=False,
               disable=not (progress and sys.stderr.isatty()))
    epoch = this.number
    for b in bar:
        idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
        trainer.set_rate(cfg.lr * rate_factor(cfg.schedule, counts.steps, this.budget.steps, cfg.warmup))
        step = trainer.step(idx, this.number)
        check_loss(float(step.loss), bound, cfg.lr, epoch, b + 1)
        counts.scored += step.scored
        counts.backprop += len(step.kept)
        counts.steps += 1
        if epoch == 1 and b in cfg.log_batches:
            _log_selection(logged, b, idx, step.positions)
        loss_sum += step.loss * len(step.kept)
        correct += step.correct
        seen += len(step.kept)
        counts.keep_per_batch = len(step.kept)
        if at_budget is not None and counts.backprop in budgets and b + 1 < this.steps:
            at_budget(b + 1)
    return {"train_loss": loss_sum.item() / seen, "train_acc": correct.item() / seen}


def check_loss(loss: float, bound: float, lr: float, epoch: int, step: int) -> None:
    """A training loss that is not finite, or above ``bound``, has diverged: stop the run now."""
    if math.isfinite(loss) and loss <= bound:
        return
    what = "became non-finite" if not math.isfinite(loss) else f"reached {loss:.3g} (above {bound:.3g})"
    raise DivergedError(f"training loss {what} at epoch {epoch}, step {step} with learning rate {lr}: "
                        "the rate diverged; lower it")


def evaluation_row(state: RunState, plan: EvalPlan, cfg: TrainConfig, epoch: float, final: bool = False,
                   evaluated: bool = True) -> dict:
    """One measured point: accuracy and loss on val/test (rank 0 only), with the cost so far.

    ``train_seconds`` and ``selection_seconds`` exclude every evaluation (the train clock is paused
    around budget points); ``epoch`` is fractional for a point inside an epoch.
    """
    trainer, counts, clocks = state.trainer, state.counts, state.clocks
    row = {"epoch": epoch}
    if evaluated and trainer.main:  # rank 0 evaluates alone
        with clocks["eval"]():
            if final and plan.bn_sample is not None:  # the same weights with training's statistics, for the report
                row.update(_evaluate_splits(trainer, plan.splits(final), cfg, UNRECALIBRATED))
            with _recalibrated(trainer, plan, cfg):
                row.update(_evaluate_splits(trainer, plan.splits(final), cfg))
    row.update(train_seconds=clocks["train"].seconds, selection_seconds=trainer.select_clock.seconds,
               images_backprop=counts.backprop, images_scored=counts.scored, steps=counts.steps)
    return row


def _evaluate_splits(trainer: Trainer, splits: dict, cfg: TrainConfig, suffix: str = "") -> dict:
    row = {}
    for name, indices in splits.items():
        row[f"{name}_loss{suffix}"], row[f"{name}_acc{suffix}"] = evaluate(
            trainer.model, trainer.images, trainer.labels, indices, trainer.test_tf,
            cfg.eval_batch_size, trainer.device, cfg.bf16, trainer.fmt)
    return row


def _recalibrated(trainer: Trainer, plan: EvalPlan, cfg: TrainConfig):
    if plan.bn_sample is None:
        return contextlib.nullcontext()
    batches = (x for _, x in test_time_batches(trainer.images, trainer.test_tf, cfg.eval_batch_size,
                                               trainer.device, trainer.fmt, plan.bn_sample))
    return recalibrated_batchnorm(trainer.model, batches, lambda: autocast(trainer.device, trainer.bf16))


def log_row(live, counts: Counters, row: dict) -> None:
    counts.history.append(row)
    _log_row(live, row)


def _log_row(live, row: dict) -> None:
    if live is None:  # a rank > 0 of a multi-process run logs nothing
        return
    for key, value in row.items():
        live.log_metric(key, value)
    live.next_step()


def report_epoch(method: str, epochs: int, row: dict, progress: bool) -> None:
    if progress:
        scores = "".join(f", {k} {row[k]:.4f}" for k in ("val_acc", "test_acc") if k in row)
        print(f"{method} pass {row['epoch']:g}/{epochs}: train_loss {row['train_loss']:.4f}{scores}, "
              f"{row['train_seconds']:.1f} s", file=sys.stderr, flush=True)


def final_metrics(counts: Counters, clocks: dict, trainer: Trainer, cfg: TrainConfig, seed: int,
                  train_images: int, device: torch.device) -> dict:
    last = counts.history[-1]
    evaluated = [r for r in counts.history if r["epoch"] > 0 and "val_acc" in r]
    return {
        "test_acc": last["test_acc"], "test_loss": last["test_loss"],
        "train_acc": last["train_acc"], "train_loss": last["train_loss"],
        "val_acc": last["val_acc"], "val_loss": last["val_loss"],
        "best_val_acc": max(r["val_acc"] for r in evaluated),
        "train_seconds": clocks["train"].seconds, "selection_seconds": trainer.select_clock.seconds,
        "eval_seconds": clocks["eval"].seconds,
        "images_backprop": counts.backprop, "images_scored": counts.scored,
        "images_forwarded": counts.backprop + counts.scored, "steps": counts.steps,
        "epochs": cfg.epochs, "batch_size": cfg.batch_size, "keep_per_batch": counts.keep_per_batch,
        "lr": cfg.lr, "seed": seed, "train_images": train_images, "num_classes": trainer.num_classes,
        "bn_recalibrate": cfg.bn_recalibrate, "eval_subset": cfg.eval_subset,
        **{k: v for k, v in last.items() if k.endswith(UNRECALIBRATED)},
        "provenance": provenance(device),
    }


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
