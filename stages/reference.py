"""Stage reference: train one dataset's reference model and write every example's reference loss."""

import _common
import json
from pathlib import Path

from saln.augment import load_spec
from saln.config import load_params
from saln.data import load_prepared
from saln.errors import one_line_errors
from saln.reference import reference_config, train_reference, write_untrained
from saln.train import train_config


@one_line_errors
def main() -> None:
    args = _common.dataset_args(__doc__)
    params = load_params(args.params)
    cfg, ref = train_config(params), reference_config(params)
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
    metrics = train_reference(prepared, load_spec("results/augment/config.json"), cfg, ref, out, run)
    metrics["reference_images"] = len(prepared.splits["reference"])
    metrics_file.write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"{out}: reference model test_acc {metrics['test_acc']:.4f} on "
          f"{metrics['reference_images']} reference images, train {metrics['train_seconds']:.1f}s")


if __name__ == "__main__":
    main()
