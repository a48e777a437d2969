"""Batched augmentation pipelines from an ``AugmentSpec``, on any device.

Images travel as uint8 N x 3 x H x W tensors; each pipeline turns them into float tensors
normalised with the mean and std that the network reading them was pretrained with (passed in by
the caller: ``saln.backbones.normalisation``), so the learner and SALN's feature backbone each see
their own input statistics. The train pipeline draws its random parameters per sample (kornia's
default), not once per batch, matching torchvision's per-image transforms in a DataLoader.
"""

from __future__ import annotations

import torch
from torch import nn

from saln.augment import AugmentSpec, Normalisation


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
