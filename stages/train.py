"""Stage train: one (dataset, method, seed) run of the train matrix, or with --lr one run of the
learning-rate sweep (a diverged sweep run is recorded as diverged.json and the sweep goes on)."""

import _common
import json
from dataclasses import replace

import numpy as np

from saln.augment import load_spec
from saln.checkpoint import checkpoint_path, imported_project_files, run_key
from saln.config import load_params
from saln.data import load_prepared
from saln.errors import one_line_errors
from saln.prune import load_kept
from saln.reference import load_reference
from saln.selection import REGISTRY, check_method
from saln.sweep import DIVERGED_FILE, run_dir
from saln.train import DivergedError, RunInputs, train_config, train_run


def run_inputs(params: dict, dataset: str, method: str) -> RunInputs:
    """What the method's selector needs, and nothing else."""
    selector = REGISTRY[check_method(method)]
    inputs = RunInputs(load_prepared(f"data/prepared/{dataset}"), load_spec("results/augment/config.json"),
                       selector_options=selector.options_from_params(params))
    if selector.needs_features:
        inputs.features = np.load(f"data/features/{dataset}/features.npy")
    if selector.needs_reference:
        inputs.reference_losses, inputs.reference_embeddings = load_reference(
            f"data/reference/{dataset}", selector.needs_reference_embeddings)
    if selector.train_subset:  # prune_*: train on the kept part of the training split
        inputs.train_subset = load_kept(f"data/prune/{dataset}", selector.train_subset,
                                        inputs.prepared.splits["train"])
    return inputs


CHECKPOINT_EVERY_S = 30.0  # a kill loses at most about this much training, plus the epoch under way
TRAIN_KEYS = ("epochs", "batch_size", "lr", "momentum", "weight_decay", "filter_ratio", "eval_batch_size",
              "log_batches", "device", "bf16", "channels_last", "compile")


def read_params(params: dict) -> dict:
    """The params this stage reads (its ``params:`` in dvc.yaml), which key its checkpoint."""
    return {**{block: params[block] for block in ("saln", "jest", "uncertainty", "model")},
            "train": {k: params["train"][k] for k in TRAIN_KEYS}}


@one_line_errors
def main() -> None:
    parser = _common.stage_parser(__doc__)
    parser.add_argument("--method", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--lr", type=float, help="a sweep run at this learning rate (sweep.lrs)")
    args = parser.parse_args()
    params = load_params(args.params)
    cfg = train_config(params)
    if args.lr is not None:
        cfg = replace(cfg, lr=args.lr)
    inputs = run_inputs(params, args.dataset, args.method)
    out = run_dir(args.dataset, args.method, args.seed, args.lr)
    # A checkpoint outside the outs (DVC deletes those before a rerun), valid only for the same
    # params and code: a killed run resumes from its last complete epoch.
    key = run_key({"params": read_params(params), "dataset": args.dataset, "method": args.method,
                   "seed": args.seed, "lr": args.lr}, imported_project_files())
    try:
        metrics = train_run(inputs, cfg, args.method, args.seed, out,
                            checkpoint=checkpoint_path(args.dataset, args.method, args.seed, args.lr),
                            checkpoint_key=key, checkpoint_every=CHECKPOINT_EVERY_S)
    except DivergedError as err:
        if args.lr is None:
            raise
        out.mkdir(parents=True, exist_ok=True)
        (out / DIVERGED_FILE).write_text(json.dumps({"lr": args.lr, "reason": str(err)}, indent=2) + "\n")
        print(f"{out}: diverged ({err}); recorded, the sweep goes on")
        return
    print(f"{out}: test_acc {metrics['test_acc']:.4f}, train {metrics['train_seconds']:.1f}s")


if __name__ == "__main__":
    main()
