"""The paper's published numbers (paper.yaml) and how pipeline datasets map onto them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

PAPER_FILE = Path(__file__).with_name("paper.yaml")

NO_PAPER_VALUE = "no paper value"                  # the paper has no such dataset or method
NOT_AVAILABLE = "paper value not available"         # the paper has it, we could not read it


@dataclass(frozen=True)
class Paper:
    source: str
    values_note: str
    datasets: dict[str, str]                 # paper dataset id -> the paper's name for it
    dataset_keys: dict[str, str]             # pipeline dataset key -> paper dataset id
    methods: list[str]
    pairings: list[tuple[str, str]]          # (method, baseline)
    results: dict[str, dict[str, dict]] = field(default_factory=dict)
    claims: dict[str, float] = field(default_factory=dict)

    def dataset_id(self, key: str) -> str | None:
        return self.dataset_keys.get(key)

    def dataset_name(self, key: str) -> str | None:
        pid = self.dataset_id(key)
        return self.datasets.get(pid) if pid else None

    def value(self, key: str, method: str, metric: str) -> tuple[float | None, str]:
        """(value, '') when published, else (None, why not)."""
        pid = self.dataset_id(key)
        if pid is None or method not in self.methods:
            return None, NO_PAPER_VALUE
        value = self.results.get(pid, {}).get(method, {}).get(metric)
        return (float(value), "") if value is not None else (None, NOT_AVAILABLE)


def load_paper(path: str | Path = PAPER_FILE) -> Paper:
    raw = yaml.safe_load(Path(path).read_text())
    return Paper(
        source=raw["source"], values_note=raw.get("values_note", ""),
        datasets=raw["datasets"], dataset_keys=raw["dataset_keys"], methods=list(raw["methods"]),
        pairings=[tuple(p) for p in raw.get("pairings", [])], results=raw.get("results") or {},
        claims=raw.get("claims") or {},
    )


def report_datasets(paper: Paper, configured: list[str]) -> list[str]:
    """The configured datasets, then one key per paper dataset no configured key stands for,
    so the paper's numbers always appear (with 'not run' beside them)."""
    covered = {paper.dataset_id(k) for k in configured}
    extra = []
    for key, pid in paper.dataset_keys.items():
        if pid not in covered:
            extra.append(key)
            covered.add(pid)
    return list(configured) + extra
