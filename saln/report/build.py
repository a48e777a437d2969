"""Build everything under the output folder (reports/ by default): report.md, metrics.md, tables/*.csv and
figures/*.png, from results/ and data/prepared/."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from saln.report import figures
from saln.report.beyond_section import ACTIVE_ROOT, PRUNE_ROOT, Dirs, beyond_section
from saln.report.claims import BUDGETS, Group, accuracy_metric, claim_rows, data_notes, group_runs
from saln.report.compare import pair_rows, write_pairs_csv
from saln.report.diagnostics_section import diagnostics_section
from saln.report.evidence import FEATURES_ROOT, probe_lines
from saln.report.document import DatasetSection, Figure, Parts, render_report
from saln.report.headline import headline_claims
from saln.report.history import mean_curves
from saln.report.lr import LR_ROOT, lr_section
from saln.report.paper import Paper, load_paper, report_datasets
from saln.report.regime import Regime, learner, ours_header
from saln.report.runs import TRAIN_ROOT, collect_runs, run_dir
from saln.report.summary import metrics_markdown
from saln.report.tables import build_tables, row_methods, write_csv

PREPARED_ROOT = Path("data/prepared")
CURVES, TIME, BATCHES, WEIGHTS = ("Accuracy and loss curves", "Accuracy at equal epochs, images and seconds",
                                  "Selected batches", "Classifier-layer weights")


@dataclass(frozen=True)
class Roots:
    """Where the report reads (and, ``out``, writes); run dirs listed in best.json are relative to ``base``."""

    train: Path = TRAIN_ROOT
    prepared: Path = PREPARED_ROOT
    prune: Path = PRUNE_ROOT
    active: Path = ACTIVE_ROOT
    lr: Path = LR_ROOT
    features: Path = FEATURES_ROOT
    out: Path = Path("reports")
    diagnostics: Path | None = None  # stage diagnostics' results; None: results/diagnostics beside ``train``
    base: Path = Path(".")


def build_report(regime: Regime, roots: Roots = Roots(), paper: Paper | None = None,
                 command: str = "python stages/report.py") -> list[dict]:
    """Write the report; returns the finished runs of the train matrix it found."""
    paper = paper or load_paper()
    out = Path(roots.out)
    table_dir, figure_dir = _fresh_dir(out / "tables", "*.csv"), _fresh_dir(out / "figures", "*.png")
    runs = collect_runs(regime.datasets, regime.methods, regime.seeds, roots.train)
    (out / "metrics.md").write_text(metrics_markdown(runs, regime.datasets, regime.methods))
    styles = figures.method_styles(row_methods(paper, regime.methods))
    sections, csv_files = [], []
    for dataset in report_datasets(paper, regime.datasets):
        groups = group_runs([r for r in runs if r["dataset"] == dataset])
        section = dataset_section(runs, paper, regime, dataset, groups)
        csv_files += _write_section_csvs(section, table_dir)
        if section.ran:
            section.figures = dataset_figures(groups, dataset, regime, roots, figure_dir, styles)
        sections.append(section)
    lr_lines, lr_csv = lr_section(regime.datasets, regime.lr, table_dir, roots.lr, roots.base)
    beyond = beyond_section(runs, paper.methods, regime.datasets, regime.methods, regime.keep_fraction,
                            Dirs(table_dir, figure_dir, out), roots.prune, roots.active, learner(regime), styles)
    diagnostics = diagnostics_section(runs, regime.datasets, regime.methods, Dirs(table_dir, figure_dir, out),
                                      roots.diagnostics or Path(roots.train).parent / "diagnostics", styles)
    parts = Parts(regime, len(runs), headline_claims(runs, paper, regime.datasets, regime.filter_ratio),
                  lr_lines, beyond.lines + diagnostics.lines, csv_files + lr_csv + beyond.csv_files
                  + diagnostics.csv_files, probe_lines(regime.datasets, roots.features))
    (out / "report.md").write_text(render_report(parts, paper, sections, out, command))
    return runs


def dataset_section(runs: list[dict], paper: Paper, regime: Regime, dataset: str,
                    groups: dict[str, Group]) -> DatasetSection:
    """Tables, pairings and claims of one dataset (``groups``: its runs by method); figures are added by
    the caller."""
    ran = dataset in regime.datasets
    ours = ours_header(regime, dataset, paper.setting, paper.dataset_name(dataset))
    section = DatasetSection(dataset, ran, build_tables(runs, paper, dataset, regime.methods, ours, ran),
                             pair_rows(runs, paper, dataset, ran), ours)
    if ran:
        section.claims, section.notes = claim_rows(groups), data_notes(groups) + _stale_note(groups, regime)
    return section


def _stale_note(groups: dict[str, Group], regime: Regime) -> list[str]:
    """A line when the runs were trained for other epochs than params say (the regime line states params)."""
    trained = {r["epochs"] for g in groups.values() for r in g.runs if r.get("epochs") is not None}
    trained -= {regime.epochs}
    if not trained:
        return []
    return [f"Some runs trained {', '.join(map(str, sorted(trained)))} epochs but "
            f"params say train.epochs = {regime.epochs}: the runs are stale (rerun the train stage)."]


def _write_section_csvs(section: DatasetSection, table_dir: Path) -> list[str]:
    names = []
    for table in section.tables:
        names.append(f"{section.dataset}_{table.name}.csv")
        write_csv(table, table_dir / names[-1])
    names.append(f"{section.dataset}_pairings.csv")
    write_pairs_csv(section.dataset, section.pairs, table_dir / names[-1])
    if section.claims:
        names.append(f"{section.dataset}_claims.csv")
        write_claims_csv(section, table_dir / names[-1])
    return names


def write_claims_csv(section: DatasetSection, path: Path) -> None:
    """One line per claim x comparison x budget: the cell's text, its outcome and the row's verdict."""
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["dataset", "claim", "method", "baseline", "budget", "measured", "outcome", "verdict"])
        for row in section.claims:
            for (cost, _, _), cell in zip(BUDGETS, row.cells):
                writer.writerow([section.dataset, row.spec.text, "saln", row.baseline, cost, cell.text,
                                 cell.outcome or "", row.verdict])


def _fresh_dir(path: Path, pattern: str) -> Path:
    """Create ``path`` and drop files a previous report left there (e.g. of a method since removed)."""
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob(pattern):
        stale.unlink()
    return path


def dataset_figures(groups: dict[str, Group], dataset: str, regime: Regime, roots: Roots, figure_dir: Path,
                    styles: dict) -> list[Figure]:
    ran = [m for m in regime.methods if m in groups]
    if not ran:
        return [Figure(CURVES, f"No finished run on {dataset}: no figures.", None)]
    curves = {m: mean_curves(groups[m].histories) for m in ran}
    out = [Figure(CURVES, f"{dataset} / {m}: train and validation (and test, when logged) accuracy and loss "
                          "per epoch", figures.plot_curves(curves[m], dataset, m, styles[m],
                                                           figure_dir / f"{dataset}_curves_{m}.png"))
           for m in ran if curves[m]]
    metric = accuracy_metric({m: groups[m] for m in ran})
    accuracy = "test accuracy" if metric == "test_acc" else "validation accuracy"
    out.append(Figure(TIME, f"{dataset}: {accuracy} against epochs, images back-propagated and training seconds "
                            "(the verdicts' three budgets)", figures.plot_time_to_accuracy(
                                curves, dataset, styles, metric, figure_dir / f"{dataset}_time_to_accuracy.png")))
    prepared = Path(roots.prepared)
    out += batch_figures(dataset, ran, regime.seeds, regime.log_batches, roots.train, prepared, figure_dir, styles)
    out += weight_figures(dataset, ran, regime.seeds, roots.train, prepared, figure_dir, styles)
    return out


def _first_seed_file(train_root, dataset, method, seeds, name) -> tuple[int, Path] | None:
    for seed in seeds:
        path = run_dir(train_root, dataset, method, seed) / name
        if path.is_file():
            return seed, path
    return None


def batch_figures(dataset, methods, seeds, log_batches, train_root, prepared_root, figure_dir,
                  styles) -> list[Figure]:
    images_file = prepared_root / dataset / "images.npy"
    seed = next((s for s in seeds if any((run_dir(train_root, dataset, m, s) / "selections.npz").is_file()
                                         for m in methods)), None)
    if seed is None or not images_file.is_file():
        why = "no selections.npz" if seed is None else f"{images_file} missing"
        return [Figure(BATCHES, f"{dataset}: no batch grid ({why}).", None)]
    images = np.load(images_file, mmap_mode="r")
    logged = {m: np.load(p) for m in methods
              if (p := run_dir(train_root, dataset, m, seed) / "selections.npz").is_file()}
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


def weight_figures(dataset, methods, seeds, train_root, prepared_root, figure_dir, styles) -> list[Figure]:
    import torch  # heavy: only where a model is read

    meta = prepared_root / dataset / "meta.json"
    classes = json.loads(meta.read_text()).get("classes", []) if meta.is_file() else []
    weights, keys = {}, set()
    for m in methods:
        if found := _first_seed_file(train_root, dataset, m, seeds, "model.pt"):
            state = torch.load(found[1], map_location="cpu", weights_only=True)
            if layer := classifier_weight(state, len(classes) or None):
                keys.add(layer[0])
                weights[m] = layer[1]
    if not weights:
        return [Figure(WEIGHTS, f"{dataset}: no model.pt with a classifier layer.", None)]
    layer = f"classifier layer (`{'`, `'.join(sorted(keys))}`)"
    return [
        Figure(WEIGHTS, f"{dataset}: {layer} weight heatmap per method (first finished seed)",
               figures.plot_classifier_heatmaps(weights, classes, dataset, styles,
                                                figure_dir / f"{dataset}_classifier_heatmap.png")),
        Figure(WEIGHTS, f"{dataset}: {layer} weight histogram per method (first finished seed)",
               figures.plot_classifier_histograms(weights, styles, dataset,
                                                  figure_dir / f"{dataset}_classifier_histogram.png")),
    ]
