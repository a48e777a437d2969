"""reports/report.md: the paper's tables, figures and claims next to ours, as offline Markdown."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from saln.report.claims import RULE, Claim, claims_markdown
from saln.report.compare import PairRow, pairs_markdown
from saln.report.paper import NO_PAPER_VALUE, NOT_AVAILABLE, Paper
from saln.report.tables import DATASET_NOT_RUN, NOT_RUN, Table, table_markdown


@dataclass(frozen=True)
class Figure:
    kind: str              # heading it goes under
    caption: str
    path: Path | None      # None: the caption says why there is no figure


@dataclass
class DatasetSection:
    dataset: str
    ran: bool
    tables: list[Table]
    pairs: list[PairRow]
    figures: list[Figure] = field(default_factory=list)


@dataclass(frozen=True)
class RunSettings:
    datasets: list[str]
    methods: list[str]
    seeds: list[int]
    filter_ratio: float
    runs_found: int


def render_report(settings: RunSettings, paper: Paper, claims: list[Claim], sections: list[DatasetSection],
                  csv_files: list[str], out_dir: Path, extra: list[str] | None = None) -> str:
    """``extra``: Markdown lines of further sections, placed after the datasets' sections."""
    parts = [_header(settings, paper), "## Claims", "", RULE, "", claims_markdown(claims), "",
             _legend()]
    for section in sections:
        parts += _dataset_section(section, paper, out_dir)
    parts += extra or []
    parts += ["## Tables as CSV", "", "One file per table under `tables/` (numbers unrounded):", ""]
    parts += [f"- [`{name}`](tables/{name})" for name in csv_files]
    return "\n".join(parts) + "\n"


def _header(s: RunSettings, paper: Paper) -> str:
    expected = len(s.datasets) * len(s.methods) * len(s.seeds)
    return "\n".join([
        "# SALN reproduction report", "",
        "Written by the `report` stage (`python stages/report.py`) from `results/train/` and "
        "`params.yaml`; regenerate it rather than editing it.", "",
        f"- Datasets trained: {', '.join(s.datasets)}",
        f"- Methods: {', '.join(s.methods)}",
        f"- Seeds: {', '.join(map(str, s.seeds))} ({s.runs_found} of {expected} runs finished)",
        f"- filter_ratio: {s.filter_ratio:g} (a selector keeps {1 - s.filter_ratio:.0%} of each batch; "
        f"back-propagation bound 1/(1 - filter_ratio) = {1 / (1 - s.filter_ratio):.2f}×)",
        f"- Paper: {paper.source}",
        f"- Paper values: {paper.values_note or 'as published.'}", "",
    ])


def _legend() -> str:
    return "\n".join([
        "## How to read the tables", "",
        "- **paper**: the value published in the paper, in its unit (accuracy %, training time in minutes).",
        "- **ours**: mean ± sample standard deviation over seeds, n = seeds that finished.",
        "- **difference**: ours − paper, in the paper's unit.",
        f"- *{NO_PAPER_VALUE}*: the paper reports no such dataset or method; "
        f"*{NOT_AVAILABLE}*: the paper reports it but the value is not in `saln/report/paper.yaml`; "
        f"*{NOT_RUN}*: no finished run; *{DATASET_NOT_RUN}*: the dataset is not in `data.names` for this run.",
        "- Rows list the paper's methods first (standard, SALN, JEST, so its pairings sit together), "
        "then every other method that ran.", "",
    ])


def _title(section: DatasetSection, paper: Paper) -> str:
    name = paper.dataset_name(section.dataset)
    paper_part = f"the paper's {name}" if name else "no counterpart in the paper"
    return f"## Dataset `{section.dataset}` ({paper_part}{'' if section.ran else '; not run'})"


def _dataset_section(section: DatasetSection, paper: Paper, out_dir: Path) -> list[str]:
    lines = [_title(section, paper), ""]
    for table in section.tables:
        lines += [f"### {table.title}", "", table_markdown(table), ""]
    lines += ["### The paper's pairings", "",
              "Test-accuracy gain and training-time speedup of a method over its baseline "
              "(speedup = baseline ÷ method; bound = batch size ÷ images kept).", "",
              pairs_markdown(section.pairs), ""]
    kinds = list(dict.fromkeys(f.kind for f in section.figures))
    for kind in kinds:
        lines += [f"### {kind}", ""]
        for fig in (f for f in section.figures if f.kind == kind):
            lines += figure_lines(fig, out_dir)
    return lines


def figure_lines(fig: Figure, out_dir: Path) -> list[str]:
    """The image (linked relative to ``out_dir``) and its caption, or only the caption saying why not."""
    if fig.path is None:
        return [f"*{fig.caption}*", ""]
    rel = Path(fig.path).relative_to(out_dir).as_posix()
    return [f"![{fig.caption}]({rel})", "", f"*{fig.caption}*", ""]
