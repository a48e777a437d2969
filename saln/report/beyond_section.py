"""report.md's section "Beyond the paper: uncertainty, pruning and active learning": tables, CSVs, figures."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from saln.layout import ACTIVE_RESULTS, PRUNE_RESULTS
from saln.report import beyond, figures
from saln.report.document import Figure, figure_lines

TITLE = "Beyond the paper: uncertainty, pruning and active learning"


@dataclass(frozen=True)
class Dirs:
    tables: Path
    figures: Path
    out: Path          # reports/: figure links are relative to it


@dataclass(frozen=True)
class Inputs:
    runs: list[dict]
    paper_methods: list[str]
    methods: list[str]
    keep_fraction: float | None   # params prune.keep_fraction (None: the one summary.json was written with)
    dirs: Dirs
    prune_root: Path
    active_root: Path
    learner: str                  # what the train matrix trains, e.g. 'ResNet-18 from scratch'
    styles: dict                  # method -> colour and marker (figures.method_styles)


@dataclass
class Written:
    lines: list[str] = field(default_factory=list)
    csv_files: list[str] = field(default_factory=list)   # names under Dirs.tables


def beyond_section(runs: list[dict], paper_methods: list[str], datasets: list[str], methods: list[str],
                   keep_fraction: float | None, dirs: Dirs, prune_root=PRUNE_RESULTS, active_root=ACTIVE_RESULTS,
                   learner: str = "learner", styles: dict | None = None) -> Written:
    """The whole section, one subsection per configured dataset."""
    out = Written([f"## {TITLE}", "",
                   "SALN and JEST next to the in-batch uncertainty selectors (`maxent`, `infodensity`), "
                   "training on a prototype-pruned split (`prune_easy`, `prune_hard`, `prune_auto`), "
                   "simulated active learning (stage `active`) and pruning curves (stage `prune`). "
                   "The last two fit a linear probe (logistic regression) on the extracted features, "
                   f"not the {learner} of the train matrix.", ""])
    inputs = Inputs(runs, paper_methods, methods, keep_fraction, dirs, Path(prune_root), Path(active_root),
                    learner, styles or {})
    for dataset in datasets:
        out.lines += [f"### `{dataset}`", ""]
        for part in (_methods_part, _active_part, _prune_part):
            part(out, dataset, inputs)
    return out


def _note(out: Written, text: str) -> None:
    out.lines += [f"*{text}*", ""]


def _methods_part(out: Written, dataset: str, i: Inputs) -> None:
    out.lines += [f"#### Every method of the train matrix ({i.learner})", ""]
    rows = beyond.method_rows(i.runs, dataset, i.methods, i.paper_methods)
    if not rows:
        _note(out, f"No finished run on {dataset}: stage `train` has not run for it.")
        return
    missing = [m for m in i.methods if m not in {r.method for r in rows}]
    out.lines += ["Mean ± sample std over seeds (n = seeds that finished). Images back-propagated and "
                  "scored are totals over training; the training-set size is what the run trained on "
                  "(smaller for the prune_* methods).", "", beyond.methods_markdown(rows), ""]
    if missing:
        _note(out, f"Not run on {dataset}: {', '.join(missing)}.")
    out.csv_files.append(f"{dataset}_beyond_methods.csv")
    beyond.write_methods_csv(dataset, rows, i.dirs.tables / out.csv_files[-1])


def _active_part(out: Written, dataset: str, i: Inputs) -> None:
    out.lines += ["#### Active learning: accuracy vs labels", ""]
    data, why = beyond.load_result(i.active_root / dataset / "curves.json", "active")
    try:
        strategies = beyond.strategy_curves(data) if data else None
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        strategies, why = None, f"`{i.active_root.as_posix()}/{dataset}/curves.json` is malformed: {err!r}"
    if strategies is None:
        _note(out, f"No active-learning results: {why}.")
        return
    budgets = beyond.label_budgets(strategies)
    rows = beyond.active_rows(strategies, budgets)
    out.lines += [f"{data.get('model', 'linear probe')}. Accuracy at the first, middle and last round; "
                  "selection time is candidate pooling + scoring per round (not the probe's fit).", "",
                  beyond.active_markdown(rows, budgets), ""]
    for names in beyond.identical_curves(strategies):
        _note(out, f"{' and '.join(names)} have identical accuracy curves: their lines coincide in the plot.")
    out.csv_files.append(f"{dataset}_active_learning.csv")
    beyond.write_active_csv(dataset, rows, budgets, i.dirs.tables / out.csv_files[-1])
    path = figures.plot_active_learning(strategies, dataset, i.dirs.figures / f"{dataset}_active_learning.png")
    out.lines += figure_lines(Figure("", f"{dataset}: test accuracy vs labels per strategy (left) and "
                                         "selection seconds per round (right)", path), i.dirs.out)


def _prune_part(out: Written, dataset: str, i: Inputs) -> None:
    out.lines += ["#### Prototype pruning: kept fraction vs accuracy", ""]
    summary, why = beyond.load_result(i.prune_root / dataset / "summary.json", "prune")
    try:
        curve = beyond.prune_curve(summary) if summary else None
        written_fraction = (summary or {}).get("kept_for_training", {}).get("fraction")
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        curve, why = None, f"`{i.prune_root.as_posix()}/{dataset}/summary.json` is malformed: {err!r}"
    if curve is None:
        _note(out, f"No pruning curve: {why}.")
        return
    fraction = i.keep_fraction if i.keep_fraction is not None else written_fraction
    points = beyond.resnet_points(i.runs, dataset, i.methods) if fraction is not None else {}
    out.lines += ["Lines: a linear probe on the extracted features trained on the easiest (closest to a "
                  f"k-means centroid), hardest, or randomly chosen kept examples. Points: {i.learner} runs of "
                  f"the train matrix on the split pruned at prune.keep_fraction = {fraction}.", "",
                  beyond.prune_markdown(curve), ""]
    if written_fraction is not None and fraction is not None and written_fraction != fraction:
        _note(out, f"summary.json was written with keep_fraction {written_fraction}, params say {fraction}: "
                   "stage `prune` is stale.")
    if not points:
        _note(out, f"No prune_easy / prune_hard / prune_auto run finished on {dataset}: no {i.learner} points.")
    out.csv_files.append(f"{dataset}_pruning_curve.csv")
    beyond.write_prune_csv(dataset, curve, i.dirs.tables / out.csv_files[-1])
    path = figures.plot_pruning_curve(curve.fractions, curve.acc, points, fraction, dataset, i.learner,
                                      i.styles, i.dirs.figures / f"{dataset}_pruning_curve.png")
    caption = (f"{dataset}: kept fraction vs test accuracy, linear probe on the features (lines) and "
               f"{i.learner} prune_* runs (points)")
    out.lines += figure_lines(Figure("", caption, path), i.dirs.out)
