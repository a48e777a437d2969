"""Every param a ``dvc repro`` will read, checked up front (stage validate).

The top of the library's layering: it imports each module that owns a block of params.yaml and
asks it to validate that block, so nothing below needs to know about the others.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from saln.active import active_config, check_budget
from saln.augment import augment_spec
from saln.config import NAMED_WEIGHTS, dataset_names, require, seeds
from saln.data import source_config, split_config, split_sizes
from saln.layout import SOURCES_DIR, WEIGHTS_DIR
from saln.errors import SalnError
from saln.features import feature_config
from saln.prune import prune_config
from saln.reference import reference_config
from saln.rates import learning_rates
from saln.schedule import budget_fractions
from saln.selection.all import REGISTRY, method_names
from saln.selection.uncertainty import uncertainty_options
from saln.train import train_config


# Every key the pipeline reads, block by block: a key outside it (a typo such as train.lrr) would
# otherwise be silently ignored while the run uses the default.
KNOWN_KEYS = {
    "data": {"names", "val_fraction", "test_fraction", "reference_fraction", "split_seed", "sources"},
    "augment": {"resize", "hflip", "rotation", "brightness", "contrast", "saturation", "hue", "test_resize",
                "test_crop"},
    "features": {"backbone", "weights", "batch_size", "seed"},
    "model": {"arch", "weights"},
    "train": {"methods", "seeds", "epochs", "batch_size", "lrs", "momentum", "weight_decay", "filter_ratio",
              "eval_batch_size", "eval_subset", "bn_recalibrate", "log_batches", "device", "bf16",
              "channels_last", "compile", "world_size", "save_model", "budget", "schedule", "warmup",
              "budget_fractions"},
    "saln": {"laplacian", "graph", "knn_k", "center", "ranking"},
    "jest": {"score", "n_chunks"},
    "reference": {"epochs", "batch_size", "lr", "seed"},
    "uncertainty": {"beta"},
    "prune": {"k", "keep_fraction", "auto_threshold", "curve_fractions", "seed"},
    "active": {"seed_size", "per_round", "rounds", "k_neighbours", "strategies", "seed"},
    "report": {"out"},
}
SOURCE_KEYS = {"kind", "image_size", "root", "path"}


def check_known_keys(params: dict) -> None:
    """One line naming an unknown key and the nearest valid one."""
    known = {f"{block}.{key}" for block, keys in KNOWN_KEYS.items() for key in keys} | set(KNOWN_KEYS)
    for name, source in (params.get("data", {}).get("sources") or {}).items():
        known |= {f"data.sources.{name}"} | {f"data.sources.{name}.{key}" for key in SOURCE_KEYS}
    for key in _dotted_keys(params):
        if key not in known:
            nearest = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
            hint = f": did you mean {nearest[0]}?" if nearest else ""
            raise SalnError(f"unknown params key {key}{hint}")


def _dotted_keys(params: dict) -> list[str]:
    keys = []
    for block, body in params.items():
        keys.append(block)
        if isinstance(body, dict):
            for key, value in body.items():
                keys.append(f"{block}.{key}")
                if block == "data" and key == "sources" and isinstance(value, dict):
                    keys += [f"data.sources.{n}.{k}" for n, src in value.items() if isinstance(src, dict)
                             for k in src]
    return keys


def validate_all(params: dict) -> None:
    check_known_keys(params)
    check_method_families(params)
    for name in dataset_names(params):
        source_config(params, name)
    split_config(params)
    augment_spec(require(params, "augment", "params"))
    feature_config(params)
    train_config(params)
    for method in method_names(params):
        REGISTRY[method].options_from_params(params)
    seeds(params)
    reference_methods(params)
    prune_config(params)
    active_config(params)
    # uncertainty.beta: read by stage active for every dataset (its infodensity strategies score with
    # it; the stage reads it whatever the strategies) and by infodensity runs (options_from_params).
    uncertainty_options(params)
    check_active_budgets(params)
    learning_rates(params)
    budget_fractions(params["train"])
    report_out(params)
    check_tracked_inputs(params)


def check_method_families(params: dict) -> None:
    """Each train.methods.<family> must be a list: it is a matrix axis of the family's training stage.

    DVC expands the matrices (data.names, train.seeds, each family) before any stage runs, so a
    scalar there stops `dvc repro` with DVC's own "'Value' object is not iterable", naming no key;
    stage validate, run by hand, names it (dataset_names and seeds do for the other two axes).
    """
    methods = (params.get("train") or {}).get("methods")
    for family, value in (methods.items() if isinstance(methods, dict) else ()):
        if not isinstance(value, list):
            hint = "[] to train none" if value is None else f"[{value}]"
            raise SalnError(f"train.methods.{family} must be a list of methods (dvc.yaml runs a stage per "
                            f"item), got {value!r}: write {hint}")


# Image counts that a source's kind alone fixes: (all images, official test images or None). digits
# is scikit-learn's load_digits. Any other kind's count is known only from its data (an npz, an image
# folder, a CIFAR-10 or Pets download, possibly a modified copy), which validate does not read: for
# those, active_config checks what needs no count, and stage active checks the budget against the
# prepared training split (check_budget).
KNOWN_COUNTS = {"digits": (1797, None)}


def check_active_budgets(params: dict) -> None:
    """Stage active's labels must fit each dataset's training split, where params alone fix its size."""
    cfg, splits = active_config(params), split_config(params)
    for name in dataset_names(params):
        counts = KNOWN_COUNTS.get(source_config(params, name).kind)
        if counts is not None:
            train = split_sizes(*counts, splits)["train"]
            check_budget(train, cfg.seed_size, cfg.per_round, cfg.rounds, cfg.k_neighbours, dataset=name)


def check_tracked_inputs(params: dict) -> None:
    """Files the stages read must lie in the folders dvc.yaml lists as deps, or DVC would never see
    them change: data files under data/sources/, state dicts under weights/ (links are fine)."""
    for name in dataset_names(params):
        path = source_config(params, name).path
        if path and not _inside(path, SOURCES_DIR):
            raise SalnError(f"data.sources.{name}.path must lie under {SOURCES_DIR}/, which stage prepare "
                            f"depends on: move or link {path} there")
    for where, value in (("model.weights", params["model"]["weights"]),
                         ("features.weights", params["features"]["weights"])):
        if value not in NAMED_WEIGHTS and not _inside(value, WEIGHTS_DIR):
            raise SalnError(f"{where} must lie under {WEIGHTS_DIR}/, which the stages building networks "
                            f"depend on: move or link {value} there")


def _inside(path: str, folder: str) -> bool:
    """Whether ``path`` (as written, before following links) lies under ``folder`` of the repo."""
    return Path(os.path.abspath(path)).is_relative_to(Path(folder).resolve())


def report_out(params: dict) -> str:
    """``report.out``: the report's folder, a relative path inside the repository."""
    out = require(require(params, "report", "params"), "out", "report")
    if not isinstance(out, str) or not out or out.startswith(("/", "..")):
        raise SalnError(f"report.out must be a folder inside the repository, got {out!r}")
    return out


def reference_methods(params: dict) -> list[str]:
    """The methods of train.methods that need a reference model, once its params are checked.

    They cannot run without a reference slice, so data.reference_fraction 0 is rejected here.
    """
    reference_config(params)
    needing = [m for m in method_names(params) if REGISTRY[m].needs_reference]
    if needing and split_config(params).reference_fraction == 0:
        raise SalnError(f"train.methods has {', '.join(needing)}, which need a reference model: set "
                        "data.reference_fraction > 0 (e.g. 0.1)")
    return needing
