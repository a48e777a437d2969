"""Build everything under reports/: report.md, tables/*.csv, figures/*.png, from results/ and data/."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from saln.report import figures
from saln.report.beyond_section import ACTIVE_ROOT, PRUNE_ROOT, Dirs, beyond_section
from saln.report.claims import evaluate_claims
from saln.report.compare import pair_rows, write_pairs_csv
from saln.report.document import DatasetSection, Figure, RunSettings, render_report
from saln.report.history import mean_curves
from saln.report.paper import Paper, load_paper, report_datasets
from saln.report.runs import TRAIN_ROOT, collect_runs, run_dir
from saln.report.tables import build_tables, row_methods, write_csv

PREPARED_ROOT = Path("data/prepared")
CURVES, TIME, BATCHES, WEIGHTS = ("Accuracy and loss curves", "Time to accuracy", "Selected batches",
                                  "fc-layer weights")


def build_report(datasets: list[str], methods: list[str], seeds: list[int], filter_ratio: float,
                 log_batches: list[int], train_root=TRAIN_ROOT, prepared_root=PREPARED_ROOT,
                 out_dir=Path("reports"), paper: Paper | None = None, keep_fraction: float | None = None,
                 prune_root=PRUNE_ROOT, active_root=ACTIVE_ROOT) -> list[dict]:
    """Write the report; returns the runs it found. ``keep_fraction``: params prune.keep_fraction, where
    the pruning figure marks the ResNet-18 prune_* runs (None: the fraction stage prune wrote)."""
    paper = paper or load_paper()
    out_dir = Path(out_dir)
    table_dir, figure_dir = _fresh_dir(out_dir / "tables", "*.csv"), _fresh_dir(out_dir / "figures", "*.png")
    runs = collect_runs(datasets, methods, seeds, train_root)
    colors = figures.method_colors(row_methods(paper, methods))
    sections, csv_files = [], []
    for dataset in report_datasets(paper, datasets):
        ran = dataset in datasets
        section = DatasetSection(dataset, ran, build_tables(runs, paper, dataset, methods, ran),
                                 pair_rows(runs, paper, dataset, ran))
        for table in section.tables:
            csv_files.append(f"{dataset}_{table.name}.csv")
            write_csv(table, table_dir / csv_files[-1])
        csv_files.append(f"{dataset}_pairings.csv")
        write_pairs_csv(dataset, section.pairs, table_dir / csv_files[-1])
        if ran:
            section.figures = dataset_figures(runs, dataset, methods, seeds, log_batches, train_root,
                                              Path(prepared_root), figure_dir, colors)
        sections.append(section)
    beyond = beyond_section(runs, paper.methods, datasets, methods, keep_fraction,
                            Dirs(table_dir, figure_dir, out_dir), prune_root, active_root)
    csv_files += beyond.csv_files
    claims = evaluate_claims(runs, paper, datasets, filter_ratio)
    settings = RunSettings(datasets, methods, seeds, filter_ratio, len(runs))
    (out_dir / "report.md").write_text(render_report(settings, paper, claims, sections, csv_files, out_dir,
                                                     beyond.lines))
    return runs


def _fresh_dir(path: Path, pattern: str) -> Path:
    """Create ``path`` and drop files a previous report left there (e.g. of a method since removed)."""
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob(pattern):
        stale.unlink()
    return path


def dataset_figures(runs, dataset, methods, seeds, log_batches, train_root, prepared_root, figure_dir,
                    colors) -> list[Figure]:
    ran = [m for m in methods if any((r["dataset"], r["method"]) == (dataset, m) for r in runs)]
    if not ran:
        return [Figure(CURVES, f"No finished run on {dataset}: no figures.", None)]
    curves = {m: mean_curves(runs, dataset, m) for m in ran}
    out = [Figure(CURVES, f"{dataset} / {m}: train and validation accuracy and loss per epoch",
                  figures.plot_curves(curves[m], dataset, m, figure_dir / f"{dataset}_curves_{m}.png"))
           for m in ran if curves[m]]
    out.append(Figure(TIME, f"{dataset}: validation accuracy against training seconds and images "
                            "back-propagated", figures.plot_time_to_accuracy(
                                curves, dataset, colors, figure_dir / f"{dataset}_time_to_accuracy.png")))
    out += batch_figures(dataset, ran, seeds, log_batches, train_root, prepared_root, figure_dir)
    out += weight_figures(dataset, ran, seeds, train_root, prepared_root, figure_dir, colors)
    return out


def _first_seed_file(train_root, dataset, method, seeds, name) -> tuple[int, Path] | None:
    for seed in seeds:
        path = run_dir(train_root, dataset, method, seed) / name
        if path.is_file():
            return seed, path
    return None


def batch_figures(dataset, methods, seeds, log_batches, train_root, prepared_root, figure_dir) -> list[Figure]:
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
        path = figures.plot_batch_grid(np.asarray(images[indices]), kept, dataset, number, seed,
                                       figure_dir / f"{dataset}_batch{number}.png")
        out.append(Figure(BATCHES, f"{dataset}: epoch 1, batch {number} (seed {seed}), the images each "
                                   f"method selected ({', '.join(kept)})", path))
    return out


def _logged_batch(selections, number: int):
    where = np.flatnonzero(selections["batch"] == number)
    if not len(where):
        return None
    return selections["indices"][where[0]], selections["kept"][where[0]].astype(bool)


def weight_figures(dataset, methods, seeds, train_root, prepared_root, figure_dir, colors) -> list[Figure]:
    import torch  # heavy: only where a model is read

    weights = {}
    for m in methods:
        if found := _first_seed_file(train_root, dataset, m, seeds, "model.pt"):
            state = torch.load(found[1], map_location="cpu", weights_only=True)
            if "fc.weight" in state:
                weights[m] = state["fc.weight"].float().numpy()
    if not weights:
        return [Figure(WEIGHTS, f"{dataset}: no model.pt with an fc layer.", None)]
    meta = prepared_root / dataset / "meta.json"
    classes = json.loads(meta.read_text()).get("classes", []) if meta.is_file() else []
    return [
        Figure(WEIGHTS, f"{dataset}: fc-layer weight heatmap per method (first finished seed)",
               figures.plot_fc_heatmaps(weights, classes, dataset, figure_dir / f"{dataset}_fc_heatmap.png")),
        Figure(WEIGHTS, f"{dataset}: fc-layer weight histogram per method (first finished seed)",
               figures.plot_fc_histograms(weights, colors, dataset, figure_dir / f"{dataset}_fc_histogram.png")),
    ]
