"""Stage features: pooled backbone features of every image of one prepared dataset, and a linear
probe of them against the same backbone with random weights."""

import _common
import json
import time
from pathlib import Path

from saln.augment import load_spec
from saln.config import load_params
from saln.data import load_prepared
from saln.errors import one_line_errors
from saln.features import compute_features, feature_config, probe_evidence, save_features
from saln.device import pick_device
from saln.gpu_claim import claim_gpu


@one_line_errors
def main() -> None:
    args = _common.stage_args(__doc__, "prepared", "augment", "out", "probe")
    cfg = feature_config(load_params(args.params))
    claim_gpu(cfg.device)  # a free GPU of its own when several are visible (DVC's queue)
    pick_device(cfg.device)  # a missing GPU stops the first stage that needs one, before any work
    prepared = load_prepared(args.prepared)
    spec = load_spec(args.augment)
    started = time.perf_counter()
    features = compute_features(prepared.images, spec, cfg)
    extract_seconds = time.perf_counter() - started  # a one-off cost of the methods reading features
    save_features(args.out, features)
    evidence = probe_evidence(features, prepared.images, prepared.labels, prepared.splits, spec, cfg)
    evidence["extract_seconds"] = extract_seconds
    probe_file = Path(args.probe)
    probe_file.parent.mkdir(parents=True, exist_ok=True)
    probe_file.write_text(json.dumps(evidence, indent=2) + "\n")
    random_init = evidence.get("probe_test_acc_random_init")
    print(f"{args.dataset}: features {features.shape} from {cfg.backbone} (weights: {cfg.weights}); "
          f"linear probe test accuracy {evidence['probe_test_acc']:.3f}"
          + (f" vs {random_init:.3f} with random weights" if random_init is not None else "")
          + f" (chance {evidence['chance']:.3f})")


if __name__ == "__main__":
    main()
