"""Evidence that the pretrained weights are real: stage features' linear probes, pretrained vs random."""

from __future__ import annotations

import json
from pathlib import Path

from saln.layout import FEATURES_RESULTS
from saln.report.markdown import markdown_table



def probe_lines(datasets: list[str], root: Path = FEATURES_RESULTS) -> list[str]:
    """A section with one row per dataset whose probe.json exists; nothing when none does."""
    rows = []
    for dataset in datasets:
        path = Path(root) / dataset / "probe.json"
        if path.is_file():
            rows.append(_row(dataset, json.loads(path.read_text())))
    if not rows:
        return []
    header = ["dataset", "backbone", "weights", "linear probe (test acc)", "same backbone, random weights",
              "chance (majority class)"]
    return ["## Are the pretrained weights real?", "",
            "A logistic-regression probe on the feature backbone's pooled features, fit on the training "
            "split and scored on the test split (stage features), beside the same backbone with random "
            "weights:", "", markdown_table(header, rows), ""]


def _row(dataset: str, probe: dict) -> list[str]:
    random_init = probe.get("probe_test_acc_random_init")
    return [dataset, probe["backbone"], probe["weights"], f"{probe['probe_test_acc']:.1%}",
            "—" if random_init is None else f"{random_init:.1%}", f"{probe['chance']:.1%}"]
