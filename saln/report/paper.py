"""The paper's published numbers (paper.yaml) and how pipeline datasets map onto them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

PAPER_FILE = Path(__file__).with_name("paper.yaml")
METRICS = ("train_acc", "val_acc", "train_loss", "val_loss", "test_acc", "train_minutes")
NOT_IN_PAPER = "not in the paper"   # the paper has no such dataset or method


@dataclass(frozen=True)
class PaperTable:
    number: int
    dataset: str          # paper dataset id
    kind: str             # accuracy | loss | test_accuracy | training_time
    methods: list[str]


@dataclass(frozen=True)
class Paper:
    source: str
    datasets: dict[str, str]                 # paper dataset id -> the paper's name for it
    dataset_keys: dict[str, str]             # pipeline dataset key -> paper dataset id
    methods: list[str]
    pairings: list[tuple[str, str]]          # (method, baseline)
    results: dict[str, dict[str, dict]]      # paper dataset id -> method -> metric -> value
    tables: list[PaperTable] = field(default_factory=list)
    claims: dict = field(default_factory=dict)
    setting: dict = field(default_factory=dict)
    inconsistencies: list[str] = field(default_factory=list)

    def dataset_id(self, key: str) -> str | None:
        return self.dataset_keys.get(key)

    def dataset_name(self, key: str) -> str | None:
        pid = self.dataset_id(key)
        return self.datasets.get(pid) if pid else None

    def value(self, key: str, method: str, metric: str) -> float | None:
        """The published number; None when the paper has no such dataset or method."""
        pid = self.dataset_id(key)
        if pid is None or method not in self.methods:
            return None
        return float(self.results[pid][method][metric])

    def table_numbers(self, key: str, kind: str) -> list[PaperTable]:
        """The paper's tables of ``kind`` on the paper dataset ``key`` stands for."""
        pid = self.dataset_id(key)
        return [t for t in self.tables if t.dataset == pid and t.kind == kind]


def _check_complete(results: dict, datasets: dict, methods: list[str]) -> None:
    """Every method of every paper dataset has all its numbers: a gap is an error, never a blank cell."""
    for pid in datasets:
        for method in methods:
            row = (results.get(pid) or {}).get(method) or {}
            missing = [m for m in METRICS if not isinstance(row.get(m), (int, float))]
            if missing:
                raise ValueError(f"paper.yaml: results.{pid}.{method} lacks {', '.join(missing)}")


def load_paper(path: str | Path = PAPER_FILE) -> Paper:
    raw = yaml.safe_load(Path(path).read_text())
    methods = list(raw["methods"])
    _check_complete(raw["results"], raw["datasets"], methods)
    tables = [PaperTable(int(n), t["dataset"], t["kind"], list(t["methods"]))
              for n, t in sorted((raw.get("tables") or {}).items())]
    return Paper(
        source=" ".join(raw["source"].split()), datasets=raw["datasets"], dataset_keys=raw["dataset_keys"],
        methods=methods, pairings=[tuple(p) for p in raw.get("pairings", [])], results=raw["results"],
        tables=tables, claims=raw.get("claims") or {}, setting=raw.get("setting") or {},
        inconsistencies=list(raw.get("inconsistencies") or []),
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
