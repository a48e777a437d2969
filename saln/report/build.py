"""Build everything under the output folder (reports/ by default): report.md, metrics.md, tables/*.csv and
figures/*.png, from results/ and data/prepared/."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from saln.report import figures
from saln.report.beyond_section import Dirs, beyond_section
from saln.report.claims import claims_markdown, pairs_markdown as measured_markdown
from saln.report.compare import pair_rows, write_pairs_csv
from saln.report.diagnostics_section import diagnostics_section
from saln.report.evidence import probe_lines
from saln.report.document import DatasetSection, Figure, Parts, render_report
from saln.report.headline import headline_claims
from saln.report.history import mean_curves
from saln.report.paper import Paper, load_paper, report_datasets
from saln.report.regime import Regime, full_budget, learner, ours_header
from saln.layout import (ACTIVE_RESULTS, DIAGNOSTICS_ROOT, FEATURES_RESULTS, HEAD_FILE, LR_ROOT, MODELS_ROOT,
                         PREPARED_ROOT, PRUNE_RESULTS, REFERENCE_RESULTS, REPORT_ROOT, SELECTIONS_FILE,
                         TRAIN_ROOT, rate_dir, run_dir)
from saln.report.runs import collect_runs
from saln.report.verdicts import Evidence, Inputs, budget_points, evidence, verdict_lines
from saln.report.summary import metrics_markdown
from saln.report.tables import build_tables, row_methods, write_csv

CURVES, TIME, BATCHES, WEIGHTS = ("Accuracy and loss curves", "Accuracy at each budget: epochs, images and seconds",
                                  "Selected batches", "Classifier-layer weights")


@dataclass(frozen=True)
class Roots:
    """Where the report reads (and, ``out``, writes); run dirs listed in best.json are relative to ``base``."""

    train: Path = TRAIN_ROOT
    models: Path = MODELS_ROOT
    reference: Path = REFERENCE_RESULTS
    prepared: Path = PREPARED_ROOT
    prune: Path = PRUNE_RESULTS
    active: Path = ACTIVE_RESULTS
    lr: Path = LR_ROOT
    features: Path = FEATURES_RESULTS
    out: Path = REPORT_ROOT
    diagnostics: Path = DIAGNOSTICS_ROOT


def build_report(regime: Regime, roots: Roots = Roots(), paper: Paper | None = None,
                 command: str = "python stages/report.py") -> list[dict]:
    """Write the report; returns the finished runs of the train matrix it found."""
    paper = paper or load_paper()
    out = Path(roots.out)
    table_dir, figure_dir = _fresh_dir(out / "tables", "*.csv"), _fresh_dir(out / "figures", "*.png")
    runs = collect_runs(regime.datasets, regime.methods, regime.seeds, roots.train, roots.lr)
    (out / "metrics.md").write_text(metrics_markdown(runs, regime.datasets, regime.methods))
    styles = figures.method_styles(row_methods(paper, regime.methods))
    sections, csv_files = [], []
    for dataset in report_datasets(paper, regime.datasets):
        section = dataset_section(runs, paper, regime, dataset)
        csv_files += _write_section_csvs(section, table_dir)
        if section.ran:
            ev = evidence(dataset, regime.methods, regime.seeds, regime.lrs,
                          Inputs(roots.train, roots.lr, roots.prepared, roots.features, roots.reference),
                          regime.fractions)
            section.verdicts, names = verdict_lines(ev, measured_markdown(ev.pairs), claims_markdown(ev.claims),
                                                    table_dir)
            csv_files += names
            section.figures = dataset_figures(ev, dataset, regime, roots, figure_dir, styles)
        sections.append(section)
    beyond = beyond_section(runs, paper.methods, regime.datasets, regime.methods, regime.keep_fraction,
                            Dirs(table_dir, figure_dir, out), roots.prune, roots.active, learner(regime), styles)
    diagnostics = diagnostics_section(runs, regime.datasets, regime.methods, Dirs(table_dir, figure_dir, out),
                                      roots.diagnostics, styles)
    parts = Parts(regime, len(runs), headline_claims(runs, paper, regime.datasets, regime.filter_ratio, full_budget(regime)),
                  beyond.lines + diagnostics.lines, csv_files + beyond.csv_files
                  + diagnostics.csv_files, probe_lines(regime.datasets, roots.features))
    (out / "report.md").write_text(render_report(parts, paper, sections, out, command))
    return runs


def dataset_section(runs: list[dict], paper: Paper, regime: Regime, dataset: str) -> DatasetSection:
    """Tables and pairings of one dataset (each method at its best rate); the caller adds the verdicts
    and figures."""
    ran = dataset in regime.datasets
    ours = ours_header(regime, dataset, paper.setting, paper.dataset_name(dataset))
    return DatasetSection(dataset, ran, build_tables(runs, paper, dataset, regime.methods, ours, ran),
                          pair_rows(runs, paper, dataset, ran), ours)


def _write_section_csvs(section: DatasetSection, table_dir: Path) -> list[str]:
    names = []
    for table in section.tables:
        names.append(f"{section.dataset}_{table.name}.csv")
        write_csv(table, table_dir / names[-1])
    names.append(f"{section.dataset}_pairings.csv")
    write_pairs_csv(section.dataset, section.pairs, table_dir / names[-1])
    return names


def _fresh_dir(path: Path, pattern: str) -> Path:
    """Create ``path`` and drop files a previous report left there (e.g. of a method since removed)."""
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob(pattern):
        stale.unlink()
    return path


def dataset_figures(ev: Evidence, dataset: str, regime: Regime, roots: Roots, figure_dir: Path,
                    styles: dict) -> list[Figure]:
    """Curves of each method at its best rate, its selected batches and classifier heads."""
    best = {m: g.best_lr for m, g in ev.groups.items() if g.best_lr in g.rates}
    ran = [m for m in regime.methods if m in best]
    if not ran:
        return [Figure(CURVES, f"No finished run on {dataset}: no figures.", None)]
    curves = {m: mean_curves(list(ev.groups[m].rates[best[m]].histories.values())) for m in ran}
    out = [Figure(CURVES, f"{dataset} / {m} (lr {best[m]:g}): train, validation and test accuracy and loss "
                          "per epoch", figures.plot_curves(curves[m], dataset, m, styles[m],
                                                           figure_dir / f"{dataset}_curves_{m}.png"))
           for m in ran if curves[m]]
    ends, anytime = budget_points(ev)
    out.append(Figure(TIME, f"{dataset}: test accuracy of each completed budget (filled, each method at its best "
                            "rate for that budget) and inside the full-budget run (hollow, the anytime view), "
                            "against passes, images back-propagated and all-in seconds",
                      figures.plot_time_to_accuracy(ends, anytime, dataset, styles,
                                                    figure_dir / f"{dataset}_time_to_accuracy.png")))
    models = {m: [rate_dir(run_dir(roots.models, dataset, m, s), best[m]) for s in regime.seeds] for m in ran}
    prepared = Path(roots.prepared)
    out += batch_figures(dataset, models, regime.log_batches, prepared, figure_dir, styles)
    out += weight_figures(dataset, models, prepared, figure_dir, styles)
    return out


def _first_file(folders: list[Path], name: str) -> tuple[int, Path] | None:
    """(seed position, path) of the first seed's folder holding ``name``."""
    return next(((i, f / name) for i, f in enumerate(folders) if (f / name).is_file()), None)


def batch_figures(dataset, models: dict[str, list[Path]], log_batches, prepared_root, figure_dir,
                  styles) -> list[Figure]:
    """``models``: method -> its per-seed folders (at its best rate) holding selections.npz."""
    images_file = prepared_root / dataset / "images.npy"
    seeds = range(max((len(v) for v in models.values()), default=0))
    seed = next((s for s in seeds if any((f[s] / SELECTIONS_FILE).is_file() for f in models.values())), None)
    if seed is None or not images_file.is_file():
        why = "no selections.npz" if seed is None else f"{images_file} missing"
        return [Figure(BATCHES, f"{dataset}: no batch grid ({why}).", None)]
    images = np.load(images_file, mmap_mode="r")
    logged = {m: np.load(p) for m, f in models.items() if (p := f[seed] / SELECTIONS_FILE).is_file()}
    # A method that keeps every image (standard) selects nothing: leave it out of the grids.
    selecting = {m: s for m, s in logged.items() if s["kept"].size and not s["kept"].all()}
    if not selecting:
        return [Figure(BATCHES, f"{dataset}: no selection method ran, so no batch grid.", None)]
    out = []
    for number in log_batches:
        panels = {m: _logged_batch(s, number) for m, s in selecting.items()}
        panels = {m: p for m, p in panels.items() if p is not None}
        if not panels:
            out.append(Figure(BATCHES, f"{dataset}: batch {number} was not logged.", None))
            continue
        indices = next(iter(panels.values()))[0]
        kept = {m: k for m, (i, k) in panels.items() if np.array_equal(i, indices)}  # same candidates only
        path = figures.plot_batch_grid(np.asarray(images[indices]), kept, dataset, number, seed, styles,
                                       figure_dir / f"{dataset}_batch{number}.png")
        out.append(Figure(BATCHES, f"{dataset}: epoch 1, batch {number} (seed {seed}), the images each "
                                   f"method selected ({', '.join(kept)})", path))
    return out


def _logged_batch(selections, number: int):
    where = np.flatnonzero(selections["batch"] == number)
    if not len(where):
        return None
    return selections["indices"][where[0]], selections["kept"][where[0]].astype(bool)


def classifier_weight(state: dict, n_classes: int | None) -> tuple[str, np.ndarray] | None:
    """The classifier layer's weight: the last 2-D ``*weight`` tensor of the state dict (the head comes
    last in ResNet's ``fc`` and timm EfficientNet's ``classifier``), whose first dimension is the number
    of classes when that is known. None when there is none."""
    found = None
    for key, value in state.items():
        if (key == "weight" or key.endswith(".weight")) and getattr(value, "ndim", 0) == 2 \
                and (n_classes is None or value.shape[0] == n_classes):
            found = (key, value)
    return None if found is None else (found[0], found[1].float().numpy())


def weight_figures(dataset, models: dict[str, list[Path]], prepared_root, figure_dir, styles) -> list[Figure]:
    import torch  # heavy: only where a model is read

    meta = prepared_root / dataset / "meta.json"
    classes = json.loads(meta.read_text()).get("classes", []) if meta.is_file() else []
    weights, keys = {}, set()
    for m, folders in models.items():
        if found := _first_file(folders, HEAD_FILE):
            state = torch.load(found[1], map_location="cpu", weights_only=True)
            if layer := classifier_weight(state, len(classes) or None):
                keys.add(layer[0])
                weights[m] = layer[1]
    if not weights:
        return [Figure(WEIGHTS, f"{dataset}: no {HEAD_FILE} with a classifier layer.", None)]
    layer = f"classifier layer (`{'`, `'.join(sorted(keys))}`)"
    return [
        Figure(WEIGHTS, f"{dataset}: {layer} weight heatmap per method (first finished seed)",
               figures.plot_classifier_heatmaps(weights, classes, dataset, styles,
                                                figure_dir / f"{dataset}_classifier_heatmap.png")),
        Figure(WEIGHTS, f"{dataset}: {layer} weight histogram per method (first finished seed)",
               figures.plot_classifier_histograms(weights, styles, dataset,
                                                  figure_dir / f"{dataset}_classifier_histogram.png")),
    ]
