"""Stage prune: k-means prototype pruning of one dataset's training split, and its linear-probe curve."""

import _common
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from saln.config import load_params
from saln.data import load_prepared
from saln.errors import one_line_errors
from saln.prune import centroid_distances, kept_subsets, probe_curve, prune_config, resolve_mode


@one_line_errors
def main() -> None:
    args = _common.stage_args(__doc__, "prepared", "features", "out", "summary")
    cfg = prune_config(load_params(args.params))
    prepared = load_prepared(args.prepared)
    features = np.load(args.features).astype(np.float64)
    train, test = prepared.splits["train"], prepared.splits["test"]

    started = time.perf_counter()
    distances = centroid_distances(features[train], cfg.k, cfg.seed)
    kmeans_seconds = time.perf_counter() - started
    kept = kept_subsets(train, distances, cfg.keep_fraction, cfg.auto_threshold)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # train + distance let a report rank any training example without re-running k-means.
    np.savez(out / "keep.npz", **kept, train=train, distance=distances)

    started = time.perf_counter()
    curve = probe_curve(features, prepared.labels, train, test, distances, cfg)
    summary = {
        "dataset": args.dataset,
        "difficulty": "distance of an example's unit-length feature vector to its nearest k-means centroid",
        "params": {**asdict(cfg), "curve_fractions": list(cfg.curve_fractions)},
        "train_images": int(len(train)), "test_images": int(len(test)),
        "kept_for_training": {"fraction": cfg.keep_fraction,
                              "auto_mode": resolve_mode("auto", cfg.keep_fraction, cfg.auto_threshold),
                              **{mode: int(len(idx)) for mode, idx in kept.items()}},
        "curve_model": "linear probe: logistic regression on standardized features, trained on the kept "
                       "training examples, scored on the test split (not the ResNet-18 train matrix)",
        "curve": curve,
        "kmeans_seconds": kmeans_seconds, "curve_seconds": time.perf_counter() - started,
    }
    report = Path(args.summary)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(summary, indent=2) + "\n")
    accs = curve["linear_probe_test_acc"]
    print(f"{args.dataset}: kept {len(kept['easy'])}/{len(train)} per mode; linear probe at fractions "
          f"{curve['fractions']}: easy {[round(a, 3) for a in accs['easy']]}, "
          f"hard {[round(a, 3) for a in accs['hard']]}")


if __name__ == "__main__":
    main()
