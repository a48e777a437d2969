"""Stage reference: train one dataset's reference model and write every example's reference loss."""

import _common
import json
from pathlib import Path

from saln.augment import load_spec
from saln.checkpoint import checkpoint_path, imported_project_files, run_key
from saln.config import load_params
from saln.data import load_prepared
from saln.errors import one_line_errors
from saln.gpu_claim import claim_gpu
from saln.reference import reference_config, train_reference, write_untrained
from saln.train import train_config

# The train.* keys the reference run reads (its ``params:`` in dvc.yaml): it overrides epochs and
# batch_size with reference.*, and ignores filter_ratio, log_batches, methods and seeds.
TRAIN_KEYS = ("lr", "momentum", "weight_decay", "eval_batch_size", "device", "bf16", "channels_last", "compile")


@one_line_errors
def main() -> None:
    args = _common.dataset_args(__doc__)
    params = load_params(args.params)
    cfg, ref = train_config(params), reference_config(params)
    claim_gpu(cfg.device)  # a free GPU of its own when several are visible (DVC's queue)
    prepared = load_prepared(f"data/prepared/{args.dataset}")
    out = f"data/reference/{args.dataset}"
    run = Path(f"results/reference/{args.dataset}/run")
    metrics_file = Path(f"results/reference/{args.dataset}/metrics.json")
    metrics_file.parent.mkdir(parents=True, exist_ok=True)
    if len(prepared.splits["reference"]) == 0:
        # No reference slice (data.reference_fraction 0): validate rejects every method needing one.
        write_untrained(out)
        run.mkdir(parents=True, exist_ok=True)
        metrics_file.write_text(json.dumps({"reference_images": 0}, indent=2) + "\n")
        print(f"{args.dataset}: no reference split, reference model skipped")
        return
    # Resumable after a kill, like a train run: the checkpoint lies outside the outs and is valid
    # only for the same params and code.
    read = {"reference": params["reference"], "model": params["model"],
            "train": {k: params["train"][k] for k in TRAIN_KEYS}}
    key = run_key({"params": read, "dataset": args.dataset}, imported_project_files())
    metrics = train_reference(prepared, load_spec("results/augment/config.json"), cfg, ref, out, run,
                              checkpoint=checkpoint_path(args.dataset, "reference", ref.seed),
                              checkpoint_key=key)
    metrics["reference_images"] = len(prepared.splits["reference"])
    metrics_file.write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"{out}: reference model test_acc {metrics['test_acc']:.4f} on "
          f"{metrics['reference_images']} reference images, train {metrics['train_seconds']:.1f}s")


if __name__ == "__main__":
    main()
