"""Augmentation: a JSON-able spec from params, and batched pipelines that run on any device.

Images travel as uint8 N x 3 x H x W tensors; each pipeline turns them into float tensors
normalised with the mean and std that the network reading them was pretrained with (passed in by
the caller: ``saln.backbones.normalisation``), so the learner and SALN's feature backbone each see
their own input statistics. The train pipeline draws its random parameters per sample (kornia's default), not once
per batch, matching torchvision's per-image transforms in a DataLoader.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

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


class _ToUnitFloat(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().div_(255.0)


def normalize(norm: Normalisation) -> nn.Module:
    import kornia.augmentation as K

    mean, std = norm
    return K.Normalize(mean=torch.tensor(mean), std=torch.tensor(std))


def train_pipeline(spec: AugmentSpec, norm: Normalisation) -> nn.Module:
    """uint8 N x 3 x H x W -> augmented, normalised float, random per sample."""
    import kornia.augmentation as K

    steps = [_ToUnitFloat(), K.Resize((spec.resize, spec.resize), antialias=True)]
    if spec.hflip > 0:
        steps.append(K.RandomHorizontalFlip(p=spec.hflip))
    if spec.rotation > 0:
        steps.append(K.RandomRotation(degrees=spec.rotation, p=1.0))
    if max(spec.brightness, spec.contrast, spec.saturation, spec.hue) > 0:
        steps.append(K.ColorJitter(spec.brightness, spec.contrast, spec.saturation, spec.hue, p=1.0))
    steps.append(normalize(norm))
    return nn.Sequential(*steps)


def test_pipeline(spec: AugmentSpec, norm: Normalisation) -> nn.Module:
    """uint8 N x 3 x H x W -> resized, center-cropped, normalised float (deterministic)."""
    import kornia.augmentation as K

    return nn.Sequential(
        _ToUnitFloat(),
        K.Resize((spec.test_resize, spec.test_resize), antialias=True),
        K.CenterCrop((spec.test_crop, spec.test_crop)),
        normalize(norm),
    )
