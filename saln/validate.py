"""Every param a ``dvc repro`` will read, checked up front (stage validate).

The top of the library's layering: it imports each module that owns a block of params.yaml and
asks it to validate that block, so nothing below needs to know about the others.
"""

from __future__ import annotations

from saln.active import active_config
from saln.augment import augment_spec
from saln.config import dataset_names, require, seeds
from saln.data import source_config, split_config
from saln.errors import SalnError
from saln.features import feature_config
from saln.prune import prune_config
from saln.reference import reference_config
from saln.selection import REGISTRY, method_names
from saln.sweep import sweep_lrs
from saln.train import train_config


def validate_all(params: dict) -> None:
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
    sweep_lrs(params)
    report_out(params)


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
