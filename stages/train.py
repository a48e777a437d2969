"""Stage train: one (dataset, method, seed) run of the train matrix."""

import _common  # noqa: F401
import argparse

import numpy as np

from saln.augment import load_spec
from saln.config import check_method, load_params, train_config
from saln.data import load_prepared
from saln.errors import one_line_errors
from saln.prune import load_kept
from saln.reference import load_reference
from saln.selection import REGISTRY
from saln.train import RunInputs, train_run


@one_line_errors
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--method", required=True)
    parser.add_argument("--seed", type=int, required=True)
    args = parser.parse_args()
    params = load_params()
    cfg = train_config(params)
    selector = REGISTRY[check_method(args.method)]
    inputs = RunInputs(load_prepared(f"data/prepared/{args.dataset}"),
                       load_spec("results/augment/config.json"),
                       selector_options=selector.options_from_params(params))
    if selector.needs_features:
        inputs.features = np.load(f"data/features/{args.dataset}/features.npy")
    if selector.needs_reference:
        inputs.reference_losses, inputs.reference_embeddings = load_reference(
            f"data/reference/{args.dataset}", selector.needs_reference_embeddings)
    if selector.train_subset:  # prune_*: train on the kept part of the training split
        inputs.train_subset = load_kept(f"data/prune/{args.dataset}", selector.train_subset,
                                        inputs.prepared.splits["train"])
    out = f"results/train/{args.dataset}/{args.method}/seed{args.seed}"
    metrics = train_run(inputs, cfg, args.method, args.seed, out)
    print(f"{out}: test_acc {metrics['test_acc']:.4f}, train {metrics['train_seconds']:.1f}s")


if __name__ == "__main__":
    main()
