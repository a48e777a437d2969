"""params.yaml -> validated, typed settings.

Every check raises ``SalnError`` with one line that names the key, so a bad value is
rejected before any stage does work.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from saln.errors import SalnError

PARAMS_FILE = "params.yaml"
DEVICES = ("auto", "cpu", "cuda")


def load_params(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise SalnError(f"{path} not found: run from the repository root")
    with path.open() as fh:
        return yaml.safe_load(fh) or {}


def require(section: dict, key: str, where: str):
    if key not in section:
        raise SalnError(f"{where}.{key} is missing from params.yaml")
    return section[key]


def number(section: dict, key: str, where: str, lo=None, hi=None, lo_open=False, hi_open=False,
            integer=False):
    value = require(section, key, where)
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise SalnError(f"{where}.{key} must be {'an integer' if integer else 'a number'}, got {value!r}")
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise SalnError(f"{where}.{key} must be {'>' if lo_open else '>='} {lo}, got {value}")
    if hi is not None and (value >= hi if hi_open else value > hi):
        raise SalnError(f"{where}.{key} must be {'<' if hi_open else '<='} {hi}, got {value}")
    return value


def check_weights(value, where: str) -> str:
    """``none``, ``imagenet`` or the path of an existing file."""
    if value in ("none", "imagenet"):
        return value
    if not isinstance(value, str) or not Path(value).is_file():
        raise SalnError(f"{where} must be none, imagenet or an existing file, got {value!r}")
    return value


@dataclass(frozen=True)
class SourceConfig:
    name: str
    kind: str
    image_size: int
    root: str = "data/downloads"
    path: str | None = None


@dataclass(frozen=True)
class SplitConfig:
    val_fraction: float
    test_fraction: float
    reference_fraction: float
    seed: int


def source_config(params: dict, name: str) -> SourceConfig:
    from saln.data import DATASETS  # registry lives with the loaders

    sources = require(params.get("data", {}), "sources", "data")
    if name not in sources:
        raise SalnError(f"dataset {name!r} is not in data.sources (known: {', '.join(sources)})")
    where = f"data.sources.{name}"
    raw = sources[name]
    kind = require(raw, "kind", where)
    if kind not in DATASETS:
        raise SalnError(f"{where}.kind must be one of {', '.join(DATASETS)}, got {kind!r}")
    size = number(raw, "image_size", where, lo=8, integer=True)
    path = raw.get("path")
    if DATASETS[kind].needs_path:
        if not path or not Path(path).exists():
            raise SalnError(f"{where}.path must point to an existing {kind} dataset, got {path!r}")
    return SourceConfig(name=name, kind=kind, image_size=size, root=raw.get("root", "data/downloads"),
                        path=path)


def split_config(params: dict) -> SplitConfig:
    data = require(params, "data", "params")
    val = number(data, "val_fraction", "data", lo=0, hi=1, lo_open=True, hi_open=True)
    test = number(data, "test_fraction", "data", lo=0, hi=1, lo_open=True, hi_open=True)
    ref = number(data, "reference_fraction", "data", lo=0, hi=1, hi_open=True)
    if val + ref >= 1:
        raise SalnError("data.val_fraction + data.reference_fraction must leave training data (< 1)")
    seed = number(data, "split_seed", "data", integer=True)
    return SplitConfig(val_fraction=val, test_fraction=test, reference_fraction=ref, seed=seed)


def dataset_names(params: dict) -> list[str]:
    names = require(require(params, "data", "params"), "names", "data")
    if not isinstance(names, list) or not names:
        raise SalnError("data.names must be a non-empty list of keys of data.sources")
    return names


@dataclass(frozen=True)
class TrainConfig:
    """One training run's knobs (see params.yaml's ``train`` block for their meaning)."""

    epochs: int
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    filter_ratio: float
    eval_batch_size: int
    log_batches: tuple[int, ...]
    device: str
    bf16: bool
    channels_last: bool
    compile: bool
    arch: str
    weights: str

    @property
    def keep(self) -> int:
        """Images kept from a full batch: int(B * (1 - filter_ratio)), as in Algorithm 1."""
        return int(self.batch_size * (1 - self.filter_ratio))


def train_config(params: dict) -> TrainConfig:
    t = require(params, "train", "params")
    model = require(params, "model", "params")
    device = require(t, "device", "train")
    if device not in DEVICES:
        raise SalnError(f"train.device must be one of {', '.join(DEVICES)}, got {device!r}")
    arch = require(model, "arch", "model")
    if arch not in ("resnet18", "resnet50"):
        raise SalnError(f"model.arch must be resnet18 or resnet50, got {arch!r}")
    cfg = TrainConfig(
        epochs=number(t, "epochs", "train", lo=1, integer=True),
        batch_size=number(t, "batch_size", "train", lo=1, integer=True),
        lr=number(t, "lr", "train", lo=0, lo_open=True),
        momentum=number(t, "momentum", "train", lo=0, hi=1, hi_open=True),
        weight_decay=number(t, "weight_decay", "train", lo=0),
        filter_ratio=number(t, "filter_ratio", "train", lo=0, hi=1, hi_open=True),
        eval_batch_size=number(t, "eval_batch_size", "train", lo=1, integer=True),
        log_batches=batch_numbers(require(t, "log_batches", "train"), "train.log_batches"),
        device=device,
        bf16=bool(require(t, "bf16", "train")),
        channels_last=bool(require(t, "channels_last", "train")),
        compile=bool(require(t, "compile", "train")),
        arch=arch,
        weights=check_weights(require(model, "weights", "model"), "model.weights"),
    )
    # BatchNorm in train mode cannot normalise a single image, so a selector must keep >= 2.
    if cfg.keep < 2:
        raise SalnError(f"train.batch_size * (1 - train.filter_ratio) keeps {cfg.keep} image(s) per "
                        "batch; BatchNorm needs at least 2: raise batch_size or lower filter_ratio")
    return cfg


def batch_numbers(values, where: str) -> tuple[int, ...]:
    if not isinstance(values, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise SalnError(f"{where} must be a list of batch numbers >= 0, got {values!r}")
    return tuple(values)


def method_names(params: dict) -> list[str]:
    from saln.selection import REGISTRY

    methods = require(require(params, "train", "params"), "methods", "train")
    if not isinstance(methods, list) or not methods:
        raise SalnError("train.methods must be a non-empty list")
    for m in methods:
        check_method(m)
    return methods


def check_method(method: str) -> str:
    from saln.selection import REGISTRY

    if method not in REGISTRY:
        raise SalnError(f"unknown method {method!r}: choose from {', '.join(sorted(REGISTRY))}")
    return method


def seeds(params: dict) -> list[int]:
    values = require(require(params, "train", "params"), "seeds", "train")
    if not isinstance(values, list) or not values or not all(
            isinstance(s, int) and not isinstance(s, bool) for s in values):
        raise SalnError(f"train.seeds must be a non-empty list of integers, got {values!r}")
    return values


def validate_all(params: dict) -> None:
    """Everything a ``dvc repro`` will read, checked up front (the ``validate`` stage)."""
    from saln.active import active_config
    from saln.augment import augment_spec
    from saln.features import feature_config
    from saln.prune import prune_config
    from saln.selection import REGISTRY

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


def reference_methods(params: dict) -> list[str]:
    """The methods of train.methods that need a reference model, once its params are checked.

    They cannot run without a reference slice, so data.reference_fraction 0 is rejected here.
    """
    from saln.reference import reference_config
    from saln.selection import REGISTRY

    reference_config(params)
    needing = [m for m in method_names(params) if REGISTRY[m].needs_reference]
    if needing and split_config(params).reference_fraction == 0:
        raise SalnError(f"train.methods has {', '.join(needing)}, which need a reference model: set "
                        "data.reference_fraction > 0 (e.g. 0.1)")
    return needing
