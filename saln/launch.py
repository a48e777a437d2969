"""One training run as a ``train_<family>`` / ``sweep_<family>`` stage runs it.

Each selector family has its own stage script (stages/train_<family>.py) that imports only its
family's module and the loader of any input only that family reads (the reference model, a pruned
subset), then hands over to ``run``, which also loads the features for a selector that needs
them. So a family's runs depend on exactly that code and those outputs: editing jest.py, or
retraining the reference model, leaves standard up to date.
"""

from __future__ import annotations

import json
from dataclasses import replace
from types import ModuleType
from typing import Callable

from saln.augment import load_spec
from saln.checkpoint import SAVE_EVERY_S, checkpoint_path, imported_project_files, run_key
from saln.config import load_params
from saln.data import load_prepared
from saln.distributed import is_writer, relaunch_under_torchrun
from saln.errors import SalnError
from saln.features import load_features
from saln.gpu_claim import claim_gpu
from saln.selection.base import Selector
from saln.selection.registry import REGISTRY, check_method
from saln.sweep import DIVERGED_FILE, run_dir
from saln.train import DivergedError, RunInputs, train_config, train_run

TRAIN_KEYS = ("epochs", "batch_size", "lr", "momentum", "weight_decay", "filter_ratio", "eval_batch_size",
              "log_batches", "device", "bf16", "channels_last", "compile", "world_size")

# Adds what a family's selectors need besides the data and features (a reference model, a pruned
# subset) to the run's inputs: (inputs, selector class, dataset).
Attach = Callable[[RunInputs, type[Selector], str], None]


def family_method(family: ModuleType, method: str) -> type[Selector]:
    selector = REGISTRY[check_method(method)]
    if selector.__module__ != family.__name__:
        raise SalnError(f"method {method} is not in selector family {family.__name__.rsplit('.', 1)[1]}")
    return selector


def read_params(params: dict, blocks: tuple[str, ...]) -> dict:
    """The params a family's stage reads (its ``params:`` in dvc.yaml), which key its checkpoint."""
    return {**{block: params[block] for block in ("model", *blocks)},
            "train": {k: params["train"][k] for k in TRAIN_KEYS}}


def run(args, family: ModuleType, blocks: tuple[str, ...] = (), attach: Attach | None = None) -> None:
    """Train ``args.method`` of ``family`` for (dataset, seed), at ``args.lr`` in a sweep run."""
    params = load_params(args.params)
    selector = family_method(family, args.method)
    cfg = train_config(params)
    claim_gpu(cfg.device, cfg.world_size)  # a free GPU of its own (DVC's queue gives workers no index)
    relaunch_under_torchrun(cfg.world_size)  # world_size > 1: this process becomes torchrun's
    if args.lr is not None:
        cfg = replace(cfg, lr=args.lr)
    inputs = RunInputs(load_prepared(f"data/prepared/{args.dataset}"), load_spec("results/augment/config.json"),
                       selector_options=selector.options_from_params(params))
    if selector.needs_features:
        inputs.features = load_features(f"data/features/{args.dataset}")
    if attach is not None:
        attach(inputs, selector, args.dataset)
    out = run_dir(args.dataset, args.method, args.seed, args.lr)
    # A checkpoint outside the outs (DVC deletes those before a rerun), valid only for the same
    # params and code: a killed run resumes from its last complete epoch.
    key = run_key({"params": read_params(params, blocks), "dataset": args.dataset, "method": args.method,
                   "seed": args.seed, "lr": args.lr}, imported_project_files())
    try:
        metrics = train_run(inputs, cfg, args.method, args.seed, out,
                            checkpoint=checkpoint_path(args.dataset, args.method, args.seed, args.lr),
                            checkpoint_key=key, checkpoint_every=SAVE_EVERY_S,
                            # A sweep run's folder is uncached (it may hold diverged.json instead),
                            # so its weights would land in git: the report reads only its metrics.
                            save_model=args.lr is None)
    except DivergedError as err:
        if args.lr is None:
            raise
        if not is_writer():
            return
        out.mkdir(parents=True, exist_ok=True)
        (out / DIVERGED_FILE).write_text(json.dumps({"lr": args.lr, "reason": str(err)}, indent=2) + "\n")
        print(f"{out}: diverged ({err}); recorded, the sweep goes on")
        return
    if metrics is not None:  # None on the non-writing ranks of a multi-process run
        print(f"{out}: test_acc {metrics['test_acc']:.4f}, train {metrics['train_seconds']:.1f}s")
