"""What a run costs, all in: its training seconds plus the one-off work its method needed first.

A selector that reads precomputed features or a reference model's losses pays for them once per
dataset, before any run. Comparing methods on training seconds alone hides that cost, so every
cost figure (stage summary, the report) comes from ``cost_breakdown`` here:

- ``steps_seconds``: ``train_seconds - selection_seconds`` (forward/backward/update steps);
- ``scoring_seconds``: ``selection_seconds`` (scoring candidates; part of ``train_seconds``);
- ``train_seconds``: the run's training clock (evaluations excluded);
- ``one_off_seconds``: the whole one-off cost of the dataset that the method needs;
- ``all_in_amortised``: ``train_seconds`` + each needed one-off cost / the runs sharing it
  (``sharing_runs``: every method needing it x seeds x rates x budget fractions);
- ``all_in_dataset``: ``train_seconds`` + the whole one-off cost (one run paying for it alone).

One-off costs: feature extraction (``extract_seconds`` of stage features' probe.json; the linear
probes are not counted) for the methods reading features, and reference-model training plus scoring
every example once (``train_seconds`` + ``scoring_seconds`` of stage reference's metrics.json) for
the JEST family. The prune_* methods count the features too: stage prune ranks examples on them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from saln.errors import SalnError
from saln.selection.all import REGISTRY
from saln.selection.registry import check_method

KINDS = ("features", "reference")  # the one-off costs, in a fixed order
NOISY_LIMIT = 0.25  # std / mean of a timing over seeds above this is reported as noisy


@dataclass(frozen=True)
class OneOff:
    """A dataset's one-off costs in seconds (None: not measured) and the files they come from."""

    features: float | None = None
    reference: float | None = None
    features_file: str = "probe.json of stage features"
    reference_file: str = "metrics.json of stage reference"

    def seconds(self, kind: str) -> float:
        """The cost of ``kind``; a needed cost that was not measured stops with one line."""
        value = getattr(self, kind)
        if value is None:
            source = getattr(self, f"{kind}_file")
            raise SalnError(f"{source} has no {kind} cost (missing file or timing): rerun stage {kind}")
        return value


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def read_one_offs(probe_json: str | Path, reference_metrics: str | Path) -> OneOff:
    """The one-off costs of one dataset; a missing file or timing key leaves that cost None."""
    probe, reference = _read_json(Path(probe_json)), _read_json(Path(reference_metrics))
    features = probe.get("extract_seconds") if probe else None
    ref = None
    if reference and "train_seconds" in reference and "scoring_seconds" in reference:
        ref = reference["train_seconds"] + reference["scoring_seconds"]
    return OneOff(features, ref, str(probe_json), str(reference_metrics))


def needs(method: str) -> tuple[str, ...]:
    """The one-off costs (of KINDS) that ``method`` cannot run without."""
    cls = REGISTRY[check_method(method)]
    wanted = {"features": cls.needs_features or bool(cls.train_subset),
              "reference": cls.needs_reference or cls.needs_reference_embeddings}
    return tuple(kind for kind in KINDS if wanted[kind])


def one_off_of(method: str, one_off: OneOff) -> float:
    """Seconds of one-off work ``method`` needs on this dataset (0 for a method needing none)."""
    return sum((one_off.seconds(kind) for kind in needs(method)), 0.0)


def sharing_runs(methods: list[str], seeds: list[int], lrs: list[float], fractions: list[float]) -> dict[str, int]:
    """Per one-off cost, how many runs of the dataset share it: methods needing it x seeds x rates x
    budget fractions (each fraction is a run of its own)."""
    runs_per_method = len(seeds) * len(lrs) * len(fractions)
    return {kind: sum(kind in needs(m) for m in methods) * runs_per_method for kind in KINDS}


def cost_breakdown(metrics: dict, method: str, one_off: OneOff, sharing: dict[str, int]) -> dict:
    """One finished run's costs in seconds (keys: see the module docstring)."""
    train, scoring = metrics["train_seconds"], metrics["selection_seconds"]
    amortised = 0.0
    for kind in needs(method):
        if sharing.get(kind, 0) < 1:  # the method itself is one of the sharers
            raise SalnError(f"{method} needs the {kind} but no run is counted as sharing them")
        amortised += one_off.seconds(kind) / sharing[kind]
    whole = one_off_of(method, one_off)
    return {"steps_seconds": train - scoring, "scoring_seconds": scoring, "train_seconds": train,
            "one_off_seconds": whole, "all_in_amortised": train + amortised, "all_in_dataset": train + whole}


def variation(values: list[float]) -> float:
    """Coefficient of variation: sample std / mean (0 for fewer than two values or a zero mean)."""
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    if mean == 0:
        return 0.0
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return std / abs(mean)


def noisy(values: list[float], limit: float = NOISY_LIMIT) -> bool:
    """A timing whose spread over seeds exceeds ``limit`` of its mean: too noisy to rank on."""
    return variation(values) > limit
