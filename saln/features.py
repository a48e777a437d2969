"""Pooled backbone features of every prepared image, under the test-time transform.

Besides the features SALN (and infodensity, prune, active) read, the stage records how linearly
separable they are against the same backbone with random weights: the evidence that the
pretrained weights are real and what they add.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from saln.augment import AugmentSpec
from saln.transforms import test_pipeline
from saln.backbones import ARCHS, build_model, normalisation
from saln.config import check_seed, check_weights, number, require
from saln.device import autocast, check_device, memory_format, pick_device
from saln.errors import SalnError
from saln.probe import linear_probe_accuracy


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
    if backbone not in ARCHS:
        raise SalnError(f"features.backbone must be one of {', '.join(ARCHS)}, got {backbone!r}")
    return FeatureConfig(backbone=backbone,
                         weights=check_weights(require(f, "weights", "features"), "features.weights"),
                         batch_size=number(f, "batch_size", "features", lo=1, integer=True),
                         seed=check_seed(f, "seed", "features"),
                         device=check_device(require(params.get("train", {}), "device", "train"),
                                             "train.device"))


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
def extract_features(model: torch.nn.Module, images: torch.Tensor, spec: AugmentSpec, norm,
                     batch_size: int, device: torch.device, progress: bool = True) -> np.ndarray:
    """Run ``model`` (ending in global average pooling) over uint8 N x 3 x H x W images."""
    fmt = memory_format()
    model = model.to(device, memory_format=fmt).eval()
    batches = test_time_batches(images, test_pipeline(spec, norm).to(device), batch_size, device, fmt)
    out = []
    # A bar only on a terminal: in DVC's log every refresh would be a line of its own.
    for _, x in tqdm(batches, total=-(-len(images) // batch_size), desc="features",
                     disable=not (progress and sys.stderr.isatty())):
        with autocast(device):
            out.append(model(x).float().cpu())
    return torch.cat(out).numpy()


FEATURES_FILE = "features.npy"  # N x D float16 in data/features/<dataset>/, row = dataset index


def save_features(directory: str | Path, features: np.ndarray) -> None:
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    # float16 halves the file; selection computes in float64 anyway.
    np.save(out / FEATURES_FILE, features.astype(np.float16))


def load_features(directory: str | Path) -> np.ndarray:
    path = Path(directory) / FEATURES_FILE
    if not path.is_file():
        raise SalnError(f"{path} not found: run `dvc repro` (stage features) first")
    return np.load(path)


def compute_features(images: np.ndarray, spec: AugmentSpec, cfg: FeatureConfig,
                     weights: str | None = None) -> np.ndarray:
    """Features from ``cfg.backbone`` with ``weights`` (default ``cfg.weights``)."""
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.backbone, cfg.weights if weights is None else weights, num_classes=None)
    return extract_features(model, images_to_tensor(images), spec, normalisation(cfg.backbone),
                            cfg.batch_size, device)


def probe_evidence(features: np.ndarray, images: np.ndarray, labels: np.ndarray, splits: dict,
                   spec: AugmentSpec, cfg: FeatureConfig) -> dict:
    """Linear-probe test accuracy of these features and of the same backbone with random weights.

    Fit on the training split, scored on the test split. Chance is shown beside them.
    """
    train, test = splits["train"], splits["test"]

    def probe(x: np.ndarray) -> float:
        return linear_probe_accuracy(x[train], labels[train], x[test], labels[test])

    evidence = {"backbone": cfg.backbone, "weights": cfg.weights,
                "chance": float(np.bincount(labels[test]).max() / len(test)),
                "probe_test_acc": probe(features)}
    if cfg.weights != "none":
        evidence["probe_test_acc_random_init"] = probe(compute_features(images, spec, cfg, "none"))
    return evidence
