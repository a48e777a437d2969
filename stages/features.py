"""Stage features: pooled backbone features of every image of one prepared dataset."""

import _common  # noqa: F401
import argparse
from pathlib import Path

import numpy as np

from saln.augment import load_spec
from saln.config import load_params
from saln.data import load_prepared
from saln.errors import one_line_errors
from saln.features import compute_features, feature_config


@one_line_errors
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True)
    args = parser.parse_args()
    cfg = feature_config(load_params())
    prepared = load_prepared(f"data/prepared/{args.dataset}")
    features = compute_features(prepared.images, load_spec("results/augment/config.json"), cfg)
    out = Path(f"data/features/{args.dataset}")
    out.mkdir(parents=True, exist_ok=True)
    # float16 halves the file; selection computes in float64 anyway.
    np.save(out / "features.npy", features.astype(np.float16))
    print(f"{args.dataset}: features {features.shape} from {cfg.backbone} (weights: {cfg.weights})")


if __name__ == "__main__":
    main()
