"""Stage reference: train one dataset's reference model and write every example's reference loss."""

import _common
import json
from pathlib import Path

from saln.augment import load_spec
from saln.checkpoint import imported_project_files, run_key
from saln.config import load_params
from saln.data import load_prepared
from saln.errors import one_line_errors
from saln.gpu_claim import claim_gpu
from saln.reference import reference_config, reference_train_config, train_reference, write_untrained


@one_line_errors
def main() -> None:
    args = _common.stage_args(__doc__, "prepared", "augment", "out", "run", "metrics", "checkpoint")
    params = load_params(args.params)
    ref = reference_config(params)
    cfg = reference_train_config(params, ref)
    claim_gpu(cfg.device)  # a free GPU of its own when several are visible (DVC's queue)
    prepared = load_prepared(args.prepared)
    run, metrics_file = Path(args.run), Path(args.metrics)
    metrics_file.parent.mkdir(parents=True, exist_ok=True)
    if len(prepared.splits["reference"]) == 0:
        # No reference slice (data.reference_fraction 0): validate rejects every method needing one.
        write_untrained(args.out)
        run.mkdir(parents=True, exist_ok=True)
        metrics_file.write_text(json.dumps({"reference_images": 0}, indent=2) + "\n")
        print(f"{args.dataset}: no reference split, reference model skipped")
        return
    # Resumable after a kill, like a train run: the checkpoint lies outside the outs and is valid
    # only for the same params and code.
    key = run_key({"params": params, "dataset": args.dataset}, imported_project_files())
    metrics = train_reference(prepared, load_spec(args.augment), cfg, ref, args.out, run,
                              checkpoint=args.checkpoint, checkpoint_key=key)
    metrics["reference_images"] = len(prepared.splits["reference"])
    metrics_file.write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"{args.out}: reference model test_acc {metrics['test_acc']:.4f} on "
          f"{metrics['reference_images']} reference images, train {metrics['train_seconds']:.1f}s, "
          f"scoring {metrics['scoring_seconds']:.1f}s")


if __name__ == "__main__":
    main()
