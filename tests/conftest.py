"""Shared fixtures: the repo's own params, small prepared datasets, and the optional real CIFAR subset."""

import copy
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import saln.selection.all  # noqa: F401  (registers every selector for the tests)
from saln.config import load_params
from saln.data import load_prepared, prepare, source_config, split_config

ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR = ROOT.parent / "shared" / "data" / "cifar10_subset.npz"


def stage_argv(stage: str, **item) -> list[str]:
    """A stage's command line exactly as dvc.yaml writes it, ``${item.<key>}`` filled from ``item``,
    without the leading ``python``: the script (relative to the repo root) and its arguments."""
    cmd = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]["cmd"]
    for key, value in item.items():
        cmd = cmd.replace("${item.%s}" % key, str(value))
    argv = shlex.split(cmd)
    assert argv[0] == "python" and "${" not in cmd, f"{stage}: {cmd}"
    return argv[1:]


@pytest.fixture(scope="session")
def repo_params() -> dict:
    return load_params(ROOT / "params.yaml")


@pytest.fixture
def params(repo_params) -> dict:
    """A private copy of params.yaml that a test may edit."""
    return copy.deepcopy(repo_params)


@pytest.fixture(scope="session")
def digits16_dir(tmp_path_factory, repo_params) -> Path:
    """The folder stage prepare leaves for the embedded digits dataset at 16 px."""
    p = copy.deepcopy(repo_params)
    p["data"]["sources"]["digits"]["image_size"] = 16
    out = tmp_path_factory.mktemp("digits16")
    prepare(source_config(p, "digits"), split_config(p), out)
    return out


@pytest.fixture(scope="session")
def digits16(digits16_dir):
    """The embedded digits dataset prepared at 16 px (fast for CPU training tests)."""
    return load_prepared(digits16_dir)


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from threads, and on a busy machine spinning threads slow them down."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def cifar_subset_path() -> Path:
    """The real CIFAR-10 subset beside the repo; tests that need it skip where it is absent."""
    if not SHARED_CIFAR.is_file():
        pytest.skip(f"{SHARED_CIFAR} not present (real-data checks run only beside ../shared)")
    return SHARED_CIFAR


def write_npz(path: Path, n: int = 40, classes: int = 4, size: int = 12, official_test: bool = False):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    y = np.arange(n) % classes
    if official_test:
        np.savez(path, x_train=x[: n // 2], y_train=y[: n // 2], x_test=x[n // 2:], y_test=y[n // 2:])
    else:
        np.savez(path, x=x, y=y)
    return path
