"""Shared by the stage scripts: run from the repo root with the package importable without install,
and take every path they read or write as an argument (dvc.yaml passes them)."""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def stage_args(description: str, *paths: str, dataset: bool = True) -> argparse.Namespace:
    """--params, --dataset (unless ``dataset`` is False) and one required --<name> per path."""
    parser = argparse.ArgumentParser(description=description)
    if dataset:
        parser.add_argument("--dataset", required=True, help="a key of data.sources")
    parser.add_argument("--params", default="params.yaml", help="params file (default params.yaml)")
    for name in paths:
        parser.add_argument(f"--{name}", required=True)
    return parser.parse_args()
