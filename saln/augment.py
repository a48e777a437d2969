"""Augmentation settings: a JSON-able spec from params (stage augment writes it, others read it).

Kept free of torch, so the stages that only check or write the spec start fast; the batched
pipelines built from it live in ``saln.transforms``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from saln.config import number
from saln.errors import SalnError


@dataclass(frozen=True)
class AugmentSpec:
    resize: int  # train images are resized to resize x resize
    hflip: float  # probability of a horizontal flip
    rotation: float  # rotation angle drawn uniformly from [-rotation, rotation] degrees
    brightness: float
    contrast: float
    saturation: float
    hue: float
    test_resize: int  # test/val/features: resize to test_resize, then center-crop test_crop
    test_crop: int


Normalisation = tuple[tuple[float, float, float], tuple[float, float, float]]  # (mean, std) per channel


def augment_spec(raw: dict) -> AugmentSpec:
    w = "augment"
    spec = AugmentSpec(
        resize=number(raw, "resize", w, lo=8, integer=True),
        hflip=number(raw, "hflip", w, lo=0, hi=1),
        rotation=number(raw, "rotation", w, lo=0, hi=180),
        brightness=number(raw, "brightness", w, lo=0),
        contrast=number(raw, "contrast", w, lo=0),
        saturation=number(raw, "saturation", w, lo=0),
        hue=number(raw, "hue", w, lo=0, hi=0.5),
        test_resize=number(raw, "test_resize", w, lo=8, integer=True),
        test_crop=number(raw, "test_crop", w, lo=8, integer=True),
    )
    if spec.test_crop > spec.test_resize:
        raise SalnError("augment.test_crop must be <= augment.test_resize")
    return spec


def save_spec(spec: AugmentSpec, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(asdict(spec), indent=2) + "\n")


def load_spec(path: str | Path) -> AugmentSpec:
    path = Path(path)
    if not path.is_file():
        raise SalnError(f"{path} not found: run `dvc repro` (stage augment) first")
    return augment_spec(json.loads(path.read_text()))
