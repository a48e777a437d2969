"""Results files written whole or not at all: the one writer of every JSON results file.

A reader (DVC, the report, a resumed stage) never sees half a file: each is written beside its
target and then renamed over it. JSON is strict: a NaN or infinity is refused, not written as a bare
token that other readers reject.
"""

from __future__ import annotations

import json
from pathlib import Path


def write_json(path: str | Path, payload: dict) -> Path:
    """``payload`` as strict, indented JSON at ``path``, replaced atomically (folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    tmp.replace(path)
    return path
