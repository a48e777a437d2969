"""One (dataset, method, seed) training process as a ``train_<family>`` stage runs it: every rate
of ``train.lrs`` and every share of ``train.budget_fractions`` in turn, in one process, so start-up
is paid once per run, not once per rate or budget.

Each selector family has its own stage script (stages/train_<family>.py) that imports only its
family's module and the loader of any input only that family reads (the reference model, a pruned
subset), then hands over to ``run``, which also loads the features for a selector that needs
them. So a family's runs depend on exactly that code and those outputs: editing jest.py, or
retraining the reference model, leaves standard up to date.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
from pathlib import Path
from types import ModuleType
from typing import Callable

from saln.augment import load_spec
from saln.checkpoint import SAVE_EVERY_S, imported_project_files, run_key
from saln.config import load_params
from saln.data import load_prepared
from saln.distributed import is_writer, relaunch_under_torchrun
from saln.errors import SalnError
from saln.features import load_features
from saln.gpu_claim import claim_gpu
from saln.layout import HEAD_FILE, MODEL_FILE, SELECTIONS_FILE, rate_checkpoint, rate_dir
from saln.rates import learning_rates, record_divergence
from saln.schedule import budget_fractions
from saln.selection.base import Selector
from saln.selection.registry import REGISTRY, check_method
from saln.train import DivergedError, RunInputs, train_config, train_run

# Adds what a family's selectors need besides the data and features (a reference model, a pruned
# subset) to the run's inputs: (inputs, selector class, parsed arguments).
Attach = Callable[[RunInputs, type[Selector], argparse.Namespace], None]


def train_parser(description: str, *inputs: str) -> argparse.ArgumentParser:
    """The arguments of a training stage: the run, and every path it reads or writes. ``inputs``
    names the extra folders the family reads (``features``, ``reference``, ``prune``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--dataset", required=True, help="a key of data.sources")
    parser.add_argument("--method", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", required=True, help="stage prepare's folder for the dataset")
    parser.add_argument("--augment", required=True, help="stage augment's config.json")
    for name in inputs:
        parser.add_argument(f"--{name}", required=True, help=f"stage {name}'s folder for the dataset")
    parser.add_argument("--out", required=True, help="metrics and curves, one lr<rate>/ per rate (uncached)")
    parser.add_argument("--models", required=True, help="heads and selections, one lr<rate>/ per rate")
    parser.add_argument("--checkpoints", required=True, help="resume files, outside every stage's outs")
    return parser


def family_method(family: ModuleType, method: str) -> type[Selector]:
    selector = REGISTRY[check_method(method)]
    if selector.__module__ != family.__name__:
        raise SalnError(f"method {method} is not in selector family {family.__name__.rsplit('.', 1)[1]}")
    return selector


def run(args: argparse.Namespace, family: ModuleType, attach: Attach | None = None) -> None:
    """Train ``args.method`` of ``family`` for (dataset, seed) at every rate of ``train.lrs``."""
    params = load_params(args.params)
    selector = family_method(family, args.method)
    lrs, fractions = learning_rates(params), budget_fractions(params["train"])
    cfg = train_config(params)
    claim_gpu(cfg.device, cfg.world_size)  # a free GPU of its own (DVC's queue gives workers no index)
    relaunch_under_torchrun(cfg.world_size)  # world_size > 1: this process becomes torchrun's
    inputs = RunInputs(load_prepared(args.prepared), load_spec(args.augment),
                       selector_options=selector.options_from_params(params))
    if selector.needs_features:
        inputs.features = load_features(args.features)
    if attach is not None:
        attach(inputs, selector, args)
    for folder in (args.out, args.models):
        Path(folder).mkdir(parents=True, exist_ok=True)  # a rerun of fewer rates leaves none stale
    code = imported_project_files()
    for lr in lrs:
        for fraction in fractions:
            train_at_rate(args, params, inputs, dataclasses.replace(train_config(params, lr),
                                                                    budget_fraction=fraction), code)


def train_at_rate(args, params: dict, inputs: RunInputs, cfg, code: list[Path]) -> None:
    """One (rate, budget fraction) run. A divergence is recorded (diverged.json) and the next goes on.

    Only the full budget's run records the curves (the anytime view); a fraction's run evaluates
    once, at its end, which is all a budgeted verdict reads."""
    f = cfg.budget_fraction
    out, models = rate_dir(args.out, cfg.lr, f), rate_dir(args.models, cfg.lr, f)
    # A checkpoint outside the outs (DVC deletes those before a rerun), valid only for the same
    # params and code: a killed run resumes from its last complete pass.
    key = run_key({"params": params, "dataset": args.dataset, "method": args.method, "seed": args.seed,
                   "lr": cfg.lr, "budget_fraction": f}, code)
    try:
        metrics = train_run(inputs, cfg, args.method, args.seed, out, curves=f == 1.0,
                            checkpoint=rate_checkpoint(args.checkpoints, cfg.lr, f), checkpoint_key=key,
                            checkpoint_every=SAVE_EVERY_S, save_model=cfg.save_model)
    except DivergedError as err:
        if is_writer():
            record_divergence(out, cfg.lr, str(err))
            print(f"{out}: {err}; recorded as diverged, the other rates go on")
        return
    if metrics is None:  # the non-writing ranks of a multi-process run
        return
    move_weights(out, models)
    print(f"{out}: test_acc {metrics['test_acc']:.4f}, val_loss {metrics['val_loss']:.3f}, "
          f"train {metrics['train_seconds']:.1f}s")


def move_weights(out: Path, models: Path) -> None:
    """Into the cached folder: the classifier head (what the report draws), the logged selections
    and, when ``train.save_model`` asks for it, the whole network."""
    models.mkdir(parents=True, exist_ok=True)
    for name in (HEAD_FILE, SELECTIONS_FILE, MODEL_FILE):
        if (out / name).is_file():
            shutil.move(out / name, models / name)
