"""Turn a preset YAML (nested overrides of params.yaml) into `dvc exp run -S key=value` flags.

    dvc exp run -n paper $(python -m saln.presets presets/paper.yaml)
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from saln.errors import SalnError, one_line_errors


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    flat = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def set_param_flags(preset: dict) -> list[str]:
    """``-S key=value`` pairs; values in YAML flow style without spaces, so the shell keeps each whole."""
    flags = []
    for key, value in flatten(preset).items():
        text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
        text = text.removesuffix("\n...").replace(", ", ",")
        if " " in text:
            raise SalnError(f"preset value of {key} contains a space: {text!r}")
        flags += ["-S", f"{key}={text}"]
    return flags


@one_line_errors
def main(argv: list[str]) -> None:
    if len(argv) != 1 or not Path(argv[0]).is_file():
        raise SalnError("usage: python -m saln.presets PRESET.yaml (an existing file)")
    print(" ".join(set_param_flags(yaml.safe_load(Path(argv[0]).read_text()) or {})))


if __name__ == "__main__":
    main(sys.argv[1:])
