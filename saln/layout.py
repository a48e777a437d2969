"""The results layout: file names inside a run's folders, and the default roots for library callers.

The stages get every path as a command-line argument from dvc.yaml; the defaults here are only
for code that calls the library directly (notebooks, bench/, tests) and must agree with dvc.yaml,
which tests/test_dvc_deps.py checks.
"""

from __future__ import annotations

from pathlib import Path

# Inputs the user places (validate checks that files named in params lie in these folders, which
# are dvc.yaml deps of the stages reading them).
SOURCES_DIR = "data/sources"  # npz files and image folders: stage prepare's dep
WEIGHTS_DIR = "weights"  # state-dict files: a dep of every stage building a network
DOWNLOADS_DIR = "data/downloads"  # torchvision's datasets (cifar10, pets), downloaded once
SUBSET_DIR = Path(__file__).resolve().parents[1] / "data" / "cifar10_subset"  # committed indices, hashes

# Defaults for library callers (dvc.yaml passes these same roots to the stages).
PREPARED_ROOT = Path("data/prepared")
TRAIN_ROOT = Path("results/train")  # uncached: per-rate metrics.json, dvclive/ curves, diverged.json
MODELS_ROOT = Path("results/models")  # cached: per-rate classifier heads and logged selections
CHECKPOINT_ROOT = Path("results/checkpoints")  # outside every stage's outs: survives a rerun
LR_ROOT = Path("results/lr")
FEATURES_RESULTS = Path("results/features")
REFERENCE_RESULTS = Path("results/reference")
DIAGNOSTICS_ROOT = Path("results/diagnostics")
PRUNE_RESULTS = Path("results/prune")
ACTIVE_RESULTS = Path("results/active")
REPORT_ROOT = Path("reports")

METRICS_FILE, DIVERGED_FILE = "metrics.json", "diverged.json"
HEAD_FILE, MODEL_FILE, SELECTIONS_FILE = "head.pt", "model.pt", "selections.npz"
# With train.bn_recalibrate on, the final evaluation also reads the same weights with training's own
# BatchNorm statistics; those metrics carry this suffix (val_acc_unrecalibrated, ...).
UNRECALIBRATED = "_unrecalibrated"


def run_dir(root: str | Path, dataset: str, method: str, seed: int) -> Path:
    """One (dataset, method, seed) process's folder under ``root``; each rate has a subfolder."""
    return Path(root) / dataset / method / f"seed{seed}"


def rate_name(lr: float, fraction: float = 1.0) -> str:
    """``lr<rate>`` for the full budget, ``lr<rate>-f<fraction>`` for a run budgeted for a fraction of it."""
    return f"lr{lr:g}" if fraction == 1.0 else f"lr{lr:g}-f{fraction:g}"


def rate_dir(run: str | Path, lr: float, fraction: float = 1.0) -> Path:
    """The folder of one (learning rate, budget fraction) run inside a run folder."""
    return Path(run) / rate_name(lr, fraction)


def rate_checkpoint(run_checkpoints: str | Path, lr: float, fraction: float = 1.0) -> Path:
    return Path(run_checkpoints) / f"{rate_name(lr, fraction)}.pt"
