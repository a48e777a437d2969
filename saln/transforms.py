"""Batched augmentation pipelines from an ``AugmentSpec``, on any device.

Images travel as uint8 N x 3 x H x W tensors; each pipeline turns them into float tensors
normalised with the mean and std that the network reading them was pretrained with (passed in by
the caller: ``saln.backbones.normalisation``), so the learner and SALN's feature backbone each see
their own input statistics.

The train pipeline is *paired*: an image's random parameters (flip, rotation angle, colour-jitter
factors) are a fixed function of (run seed, pass, dataset index), drawn by ``augment_draws`` from a
counter-based hash rather than from a global stream. So an image gets the same augmentation in the
same pass of every method of a seed, however many images each selector forwarded before it, and a
rank of a multi-process run augments its shard exactly as one process would. Colour jitter applies
brightness, contrast, saturation, hue in that fixed order (torchvision permutes the order per call).
"""

from __future__ import annotations

import numpy as np
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


DRAWS = 6  # uniforms per image: flip, angle, brightness, contrast, saturation, hue
_MASK = np.uint64(2**64 - 1)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijective scramble of 64-bit words (uint64 arithmetic wraps)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def augment_draws(seed: int, pass_number: int, indices: torch.Tensor) -> torch.Tensor:
    """N x DRAWS uniforms in [0, 1), a function of (seed, pass, dataset index) alone, on indices' device."""
    with np.errstate(over="ignore"):
        key = _mix(np.full(1, seed, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15))
        key = _mix(key ^ np.uint64(pass_number))
        per_image = _mix(key ^ indices.detach().cpu().numpy().astype(np.uint64))
        slots = np.arange(1, DRAWS + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        words = _mix(per_image[:, None] + slots[None, :]) & _MASK
    uniforms = (words >> np.uint64(11)).astype(np.float64) / float(2**53)
    return torch.from_numpy(uniforms).float().to(indices.device)


class PairedTrainAugment(nn.Module):
    """uint8 N x 3 x H x W and N x DRAWS uniforms -> augmented, normalised float (kornia's ops, with
    the parameters given instead of drawn)."""

    def __init__(self, spec: AugmentSpec, norm: Normalisation):
        import kornia.augmentation as K

        super().__init__()
        self.spec = spec
        self.head = nn.Sequential(_ToUnitFloat(), K.Resize((spec.resize, spec.resize), antialias=True))
        self.flip = K.RandomHorizontalFlip(p=spec.hflip) if spec.hflip > 0 else None
        self.rotate = K.RandomRotation(degrees=spec.rotation, p=1.0) if spec.rotation > 0 else None
        jitter = (spec.brightness, spec.contrast, spec.saturation, spec.hue)
        self.jitter = K.ColorJitter(*jitter, p=1.0) if max(jitter) > 0 else None
        self.normalize = normalize(norm)

    def forward(self, x: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
        s, x = self.spec, self.head(x)
        shape = torch.tensor(tuple(x.shape), dtype=torch.long)
        every = torch.ones(len(x), device=x.device)
        if self.flip is not None:
            x = self.flip(x, params={"batch_prob": (draws[:, 0] < s.hflip).float(), "forward_input_shape": shape})
        if self.rotate is not None:
            degrees = (2 * draws[:, 1] - 1) * s.rotation
            x = self.rotate(x, params={"degrees": degrees, "batch_prob": every, "forward_input_shape": shape})
        if self.jitter is not None:
            factor = lambda u, w: max(0.0, 1 - w) + u * (1 + w - max(0.0, 1 - w))  # noqa: E731
            x = self.jitter(x, params={
                "brightness_factor": factor(draws[:, 2], s.brightness),
                "contrast_factor": factor(draws[:, 3], s.contrast),
                "saturation_factor": factor(draws[:, 4], s.saturation),
                "hue_factor": (2 * draws[:, 5] - 1) * s.hue,
                "order": torch.arange(4), "batch_prob": every, "forward_input_shape": shape})
        return self.normalize(x)


def train_pipeline(spec: AugmentSpec, norm: Normalisation) -> PairedTrainAugment:
    """uint8 images and their ``augment_draws`` -> augmented, normalised float."""
    return PairedTrainAugment(spec, norm)


def test_pipeline(spec: AugmentSpec, norm: Normalisation) -> nn.Module:
    """uint8 N x 3 x H x W -> resized, center-cropped, normalised float (deterministic)."""
    import kornia.augmentation as K

    return nn.Sequential(
        _ToUnitFloat(),
        K.Resize((spec.test_resize, spec.test_resize), antialias=True),
        K.CenterCrop((spec.test_crop, spec.test_crop)),
        normalize(norm),
    )
