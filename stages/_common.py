"""Shared by the stage scripts: run from the repo root with the package importable without install."""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def stage_parser(description: str) -> argparse.ArgumentParser:
    """--dataset and --params, the arguments of every per-dataset stage; callers may add more."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--dataset", required=True, help="a key of data.sources")
    parser.add_argument("--params", default="params.yaml", help="params file (default params.yaml)")
    return parser


def dataset_args(description: str) -> argparse.Namespace:
    return stage_parser(description).parse_args()


def train_args(description: str) -> argparse.Namespace:
    """The arguments of a training stage (train_<family>, sweep_<family>)."""
    parser = stage_parser(description)
    parser.add_argument("--method", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--lr", type=float, help="a sweep run at this learning rate (sweep.lrs)")
    return parser.parse_args()
