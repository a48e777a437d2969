"""Pooled backbone features of every prepared image, under the test-time transform."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from saln.augment import AugmentSpec, test_pipeline
from saln.backbones import build_resnet
from saln.config import check_weights, number, require
from saln.device import autocast, memory_format, pick_device
from saln.errors import SalnError


@dataclass(frozen=True)
class FeatureConfig:
    backbone: str
    weights: str
    batch_size: int
    device: str
    seed: int  # initialises the backbone when weights are none, so features are reproducible


def feature_config(params: dict) -> FeatureConfig:
    f = require(params, "features", "params")
    backbone = require(f, "backbone", "features")
    if backbone not in ("resnet18", "resnet50"):
        raise SalnError(f"features.backbone must be resnet18 or resnet50, got {backbone!r}")
    return FeatureConfig(backbone=backbone,
                         weights=check_weights(require(f, "weights", "features"), "features.weights"),
                         batch_size=number(f, "batch_size", "features", lo=1, integer=True),
                         seed=number(f, "seed", "features", integer=True),
                         device=require(params.get("train", {}), "device", "train"))


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 N x H x W x 3 (numpy, possibly memory-mapped) -> a uint8 N x 3 x H x W tensor of its own."""
    return torch.from_numpy(np.array(images, dtype=np.uint8)).permute(0, 3, 1, 2).contiguous()


def test_time_batches(images: torch.Tensor, transform: torch.nn.Module, batch_size: int,
                      device: torch.device, fmt=torch.contiguous_format, indices=None):
    """Yield (positions, batch): uint8 images (all, or ``indices``) through the test transform.

    ``positions`` is the slice or index tensor of the batch, to pick the matching labels.
    """
    total = len(images) if indices is None else len(indices)
    for start in range(0, total, batch_size):
        stop = start + batch_size
        positions = slice(start, stop) if indices is None else indices[start:stop]
        x = transform(images[positions].to(device, non_blocking=True))
        yield positions, x.contiguous(memory_format=fmt)


@torch.no_grad()
def extract_features(model: torch.nn.Module, images: torch.Tensor, spec: AugmentSpec,
                     batch_size: int, device: torch.device, progress: bool = True) -> np.ndarray:
    """Run ``model`` (ending in global average pooling) over uint8 N x 3 x H x W images."""
    fmt = memory_format(device)
    model = model.to(device, memory_format=fmt).eval()
    batches = test_time_batches(images, test_pipeline(spec).to(device), batch_size, device, fmt)
    out = []
    for _, x in tqdm(batches, total=-(-len(images) // batch_size), desc="features",
                     disable=not progress):
        with autocast(device):
            out.append(model(x).float().cpu())
    return torch.cat(out).numpy()


def compute_features(images: np.ndarray, spec: AugmentSpec, cfg: FeatureConfig) -> np.ndarray:
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = build_resnet(cfg.backbone, cfg.weights, num_classes=None)
    return extract_features(model, images_to_tensor(images), spec, cfg.batch_size, device)
