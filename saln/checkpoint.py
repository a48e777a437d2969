"""Resumable runs: a run key, every RNG state, and an atomically replaced checkpoint file.

A killed training run restarts from its last completed epoch instead of from scratch. The
checkpoint lives outside the stage's DVC outs (DVC deletes those before rerunning a stage) and
carries a key: a hash of the params the run reads and of the source files it imports, so a
checkpoint left by other params or other code is discarded rather than silently continued.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SAVE_EVERY_S = 30.0  # stages save at most this often: a kill loses about this much, plus the epoch under way
FORMAT = 2  # bump when the payload's layout changes: an older file is then discarded, not misread


def run_key(params_subset: dict, code_files: list[Path]) -> str:
    """sha256 of the params (JSON, sorted keys) and of each source file's path and bytes.

    Files are hashed in sorted order under their path relative to the repo root where they lie
    under it, so the key neither depends on the caller's order nor on where the repo is checked out.
    """
    digest = hashlib.sha256(json.dumps(params_subset, sort_keys=True, default=str).encode())
    for path in sorted({Path(p).resolve() for p in code_files}):
        name = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.as_posix()
        data = path.read_bytes()
        # Lengths frame every field, so no two different file sets give the same byte stream.
        digest.update(f"\0{len(name)}:{name}\0{len(data)}:".encode())
        digest.update(data)
    return digest.hexdigest()


def imported_project_files(root: str | Path = ROOT) -> list[Path]:
    """Source files of the modules loaded now (sys.modules) that lie under ``root``, sorted.

    Called once the run's imports are done, these are exactly the project's files whose code the
    run can execute (the virtual environment is skipped, even when it sits inside the repo).
    """
    root = Path(root).resolve()
    found = set()
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if not file or not Path(file).is_absolute():  # e.g. torch._classes names a bare "_classes.py"
            continue
        path = Path(file).resolve()
        if (path.suffix == ".py" and path.is_file() and path.is_relative_to(root)
                and not _in_environment(path, root)):
            found.add(path)
    return sorted(found)


def _in_environment(path: Path, root: Path) -> bool:
    parts = path.relative_to(root).parts
    return "site-packages" in parts or any(p.startswith(".") for p in parts)


def array_digest(*arrays) -> str:
    """sha256 of arrays' dtypes, shapes and bytes (None allowed): identifies a run's inputs."""
    digest = hashlib.sha256()
    for a in arrays:
        if a is None:
            digest.update(b"\0none")
            continue
        a = np.ascontiguousarray(a)
        digest.update(f"\0{a.dtype.str}{a.shape}".encode())
        digest.update(a.data)
    return digest.hexdigest()


def rng_states(*generators: torch.Generator) -> dict:
    """Every random stream a run draws from, in a form ``torch.load(weights_only=True)`` reads back."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        # kornia's draws and any CUDA op use the device's default generators; save them all.
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "python": random.getstate(),
        "generators": [g.get_state() for g in generators],  # CPU byte tensors even for CUDA generators
    }


def restore_rng(states: dict, *generators: torch.Generator) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"]:
        torch.cuda.set_rng_state_all(states["cuda"])
    name, key, *rest = states["numpy"]
    np.random.set_state((name, key.numpy().astype(np.uint32), *rest))
    random.setstate(states["python"])
    for generator, state in zip(generators, states["generators"], strict=True):
        generator.set_state(state)


def save_atomic(payload: dict, path: str | Path) -> None:
    """Write to a temporary file beside ``path``, flush it to disk, then rename it over ``path``.

    A kill at any moment leaves either the previous checkpoint or the new one, never a torn file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary(path)
    with open(tmp, "wb") as f:
        torch.save({"format": FORMAT, **payload}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(path: str | Path) -> dict | None:
    """The checkpoint's payload, or None when it is absent, unreadable or of another format."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        # weights_only: tensors and plain containers only, so a stray file cannot run code.
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any unreadable file is stale: the caller discards it
        return {}
    return payload if isinstance(payload, dict) and payload.get("format") == FORMAT else {}


def remove(path: str | Path) -> None:
    """Delete the checkpoint and any temporary file a kill mid-write left beside it."""
    path = Path(path)
    path.unlink(missing_ok=True)
    temporary(path).unlink(missing_ok=True)


def temporary(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")
