"""Reading params.yaml, and the one-line checks every module uses to validate its own block.

This module is the bottom layer of the library: it imports nothing from ``saln`` but the error
type. Each module owns the settings it reads (``data.source_config``, ``train.train_config``,
``features.feature_config``, ...) and validates them with the helpers here, so a bad value is
rejected with one line naming the key before any stage does work (``saln.validate`` runs all of
them up front).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from saln.errors import SalnError
from saln.layout import WEIGHTS_DIR

PARAMS_FILE = "params.yaml"
SEED_LIMIT = 2 ** 32  # seeds are in [0, 2**32): what numpy's and scikit-learn's generators accept


def load_params(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    """params.yaml read by YAML 1.2's rules, as DVC reads it (``-S``, ``dvc params diff``), so the two
    never disagree about a value: ``1e-3`` is a number, ``yes`` a string."""
    path = Path(path)
    if not path.is_file():
        raise SalnError(f"{path} not found: run from the repository root")
    with path.open() as fh:
        return YAML(typ="safe", pure=True).load(fh) or {}


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
    if not math.isfinite(value):
        raise SalnError(f"{where}.{key} must be a finite number, got {value}")
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise SalnError(f"{where}.{key} must be {'>' if lo_open else '>='} {lo}, got {value}")
    if hi is not None and (value >= hi if hi_open else value > hi):
        raise SalnError(f"{where}.{key} must be {'<' if hi_open else '<='} {hi}, got {value}")
    return value


def check_seed(section: dict, key: str, where: str) -> int:
    """A seed: an integer in [0, 2**32)."""
    return number(section, key, where, lo=0, hi=SEED_LIMIT, hi_open=True, integer=True)


def flag(section: dict, key: str, where: str) -> bool:
    """A real boolean: ``"false"`` (a string) is refused, not read as true."""
    value = require(section, key, where)
    if not isinstance(value, bool):
        raise SalnError(f"{where}.{key} must be true or false, got {value!r}")
    return value


NAMED_WEIGHTS = ("none", "imagenet")  # the weights values that name no file


def check_weights(value, where: str) -> str:
    """``none``, ``imagenet`` or the path of an existing file."""
    if value in NAMED_WEIGHTS:
        return value
    if not isinstance(value, str) or not Path(value).is_file():
        raise SalnError(f"{where} must be none, imagenet or an existing file, got {value!r}")
    return value


def batch_numbers(values, where: str) -> tuple[int, ...]:
    if not isinstance(values, list) or not all(is_int(v) and v >= 0 for v in values):
        raise SalnError(f"{where} must be a list of batch numbers >= 0, got {values!r}")
    return tuple(values)


def distinct_list(values, where: str, item_ok=lambda v: True, what: str = "values") -> list:
    """A non-empty list without repeats whose items pass ``item_ok``."""
    if not isinstance(values, list) or not values or not all(item_ok(v) for v in values):
        raise SalnError(f"{where} must be a non-empty list of {what}, got {values!r}")
    repeated = sorted({str(v) for v in values if values.count(v) > 1})
    if repeated:
        raise SalnError(f"{where} lists {', '.join(repeated)} more than once")
    return values


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def dataset_names(params: dict) -> list[str]:
    names = require(require(params, "data", "params"), "names", "data")
    return distinct_list(names, "data.names", lambda v: isinstance(v, str), "keys of data.sources")


def seeds(params: dict) -> list[int]:
    values = require(require(params, "train", "params"), "seeds", "train")
    return distinct_list(values, "train.seeds", lambda v: is_int(v) and 0 <= v < SEED_LIMIT,
                         "integers in [0, 2**32)")


def method_lists(params: dict) -> dict[str, list[str]]:
    """``train.methods``: selector family -> the distinct method names trained with it (each family
    is its own training stage). ``saln.selection.all.method_names`` also checks each name's family."""
    lists = require(require(params, "train", "params"), "methods", "train")
    if not isinstance(lists, dict) or not all(isinstance(v, list) for v in lists.values()):
        raise SalnError("train.methods must map selector families to lists of methods, e.g. "
                        f"{{baselines: [standard, random], spectral: [saln]}}, got {lists!r}")
    flat = [m for methods in lists.values() for m in methods]
    distinct_list(flat, "train.methods", lambda m: isinstance(m, str), "method names")
    return lists


def listed_methods(params: dict) -> list[str]:
    """Every method of ``train.methods``, in family order."""
    return [m for methods in method_lists(params).values() for m in methods]
