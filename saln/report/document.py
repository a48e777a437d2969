"""reports/report.md: the paper's tables, figures and claims next to ours, as offline Markdown."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from saln.report.claims import RULE, SPEED_NOTE
from saln.report.compare import DATASET_NOT_RUN, NOT_RUN, PairRow, pairs_markdown
from saln.report.headline import Headline, headlines_markdown
from saln.report.paper import NOT_IN_PAPER, Paper
from saln.report.regime import (Regime, arch_name, budget_line, feature_extractor, full_budget, learner,
                                regime_line, weights_name)
from saln.report.tables import Table, table_markdown


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
    ours: str                                   # 'ours (...)' header naming the regime
    verdicts: list[str] = field(default_factory=list)  # rates, claims, measurements, time to target, cost
    figures: list[Figure] = field(default_factory=list)


@dataclass(frozen=True)
class Parts:
    """Everything render_report puts together, besides the per-dataset sections."""

    regime: Regime
    runs_found: int
    headlines: list[Headline]
    beyond_lines: list[str]
    csv_files: list[str]
    evidence_lines: list[str] = field(default_factory=list)


def render_report(parts: Parts, paper: Paper, sections: list[DatasetSection], out_dir: Path,
                  command: str) -> str:
    lines = (_header(parts, paper, command) + parts.evidence_lines + _claims(parts, paper, sections)
             + _legend(paper))
    for section in sections:
        lines += _dataset_section(section, paper, out_dir, full_budget(parts.regime))
    lines += parts.beyond_lines
    lines += ["## Tables as CSV", "", "One file per table under `tables/` (numbers unrounded):", ""]
    lines += [f"- [`{name}`](tables/{name})" for name in parts.csv_files]
    return "\n".join(lines) + "\n"


def _header(parts: Parts, paper: Paper, command: str) -> list[str]:
    r = parts.regime
    expected = len(r.datasets) * len(r.methods) * len(r.seeds)
    return [
        "# SALN reproduction report", "",
        f"Written by the `report` stage (`{command}`) from `results/` and `params.yaml`; regenerate it "
        "rather than editing it.", "",
        f"- Datasets trained: {', '.join(r.datasets)}",
        f"- Methods: {', '.join(r.methods)}",
        f"- Seeds: {', '.join(map(str, r.seeds))} ({parts.runs_found} of {expected} runs finished)",
        f"- Learner: {learner(r)}; SALN features: {feature_extractor(r)}; learning rates {', '.join(f'{lr:g}' for lr in r.lrs)} (each method at its best on validation, per budget)",
        f"- Training: {budget_line(r)}",
        f"- filter_ratio: {r.filter_ratio:g} (a selector keeps {1 - r.filter_ratio:.0%} of each batch; "
        f"back-propagation bound 1/(1 - filter_ratio) = {1 / (1 - r.filter_ratio):.2f}×)",
        f"- Paper: {paper.source}",
        f"- The paper's setting: {_paper_setting(paper.setting)}", "",
        "### The paper's inconsistencies", "",
    ] + [f"- {text}" for text in paper.inconsistencies] + [""]


def _paper_setting(setting: dict) -> str:
    learner_, features = setting.get("learner") or {}, setting.get("features") or {}
    return (f"learner {arch_name(learner_.get('arch', '?'))} {weights_name(learner_.get('weights', '?'))}, "
            f"SALN features {arch_name(features.get('backbone', '?'))} "
            f"{weights_name(features.get('weights', '?'))}, {setting.get('epochs', '?')} epochs, "
            f"lr {setting.get('lr', '?')}, filter_ratio {setting.get('filter_ratio', '?')}, "
            f"{setting.get('hardware', 'hardware not stated')}; not stated: {setting.get('not_stated', '—')}.")


def _claims(parts: Parts, paper: Paper, sections: list[DatasetSection]) -> list[str]:
    lines = ["## Claims: verdicts on completed runs at equal images, epochs and all-in seconds", "", RULE, "", SPEED_NOTE,
             ""]
    for section in (s for s in sections if s.ran):
        lines += [f"### `{section.dataset}`", "", regime_line(parts.regime, section.dataset), ""]
        if not paper.dataset_id(section.dataset):
            lines += [f"Measured on a dataset the paper did not use; to test the claims on "
                      f"{' and '.join(paper.datasets.values())}, train with data.names: [pets, cifar10] "
                      "(presets/paper.yaml).", ""]
        lines += section.verdicts
    lines += ["### The abstract's 'up to' claims", "", f"On the full-budget runs ({full_budget(parts.regime)}), each method at its best rate; the largest "
              "value over the datasets run.", "", headlines_markdown(parts.headlines), ""]
    return lines


def _legend(paper: Paper) -> list[str]:
    return [
        "## How to read the tables", "",
        "- **paper**: the value printed in the paper (Tables 1-16), in its unit (accuracy %, loss, training "
        "time in minutes on a T4).",
        "- **ours (...)**: mean ± sample standard deviation over seeds, n = seeds that finished; the "
        "parentheses say where our runs differ from the paper's (data, image size, epochs, learner).",
        "- **difference**: ours − paper, in the paper's unit. Training time is compared as the ratio to "
        "standard training (our seconds, the paper's minutes), since absolute times on other hardware and "
        "data are not comparable.",
        f"- *{NOT_IN_PAPER}*: the paper reports no such method or dataset; *{NOT_RUN}*: no finished run; "
        f"*{DATASET_NOT_RUN}*: the dataset is not in `data.names` for this run.",
        f"- Rows list the paper's methods first ({', '.join(paper.methods)}), then every other method.", "",
    ]


def _title(section: DatasetSection, paper: Paper) -> str:
    name = paper.dataset_name(section.dataset)
    paper_part = f"the paper's {name}" if name else "no counterpart in the paper"
    return f"## Dataset `{section.dataset}` ({paper_part}{'' if section.ran else '; not run'})"


def _dataset_section(section: DatasetSection, paper: Paper, out_dir: Path, basis: str) -> list[str]:
    lines = [_title(section, paper), ""]
    if not paper.dataset_id(section.dataset):
        lines += [f"The paper used only {' and '.join(paper.datasets.values())}, so `{section.dataset}` has no "
                  "paper values: ours are shown alone.", ""]
    for table in section.tables:
        lines += [f"### {table.title}", "", table_markdown(table), ""]
    lines += ["### The paper's pairings", "",
              f"Test-accuracy gain and training-time speedup of a method over its baseline on the full-budget "
              f"runs ({basis}; speedup = baseline ÷ method; bound = batch size ÷ images kept).", "",
              pairs_markdown(section.pairs, section.ours, paper.dataset_id(section.dataset) is not None), ""]
    for kind in dict.fromkeys(f.kind for f in section.figures):
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
