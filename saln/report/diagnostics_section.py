"""report.md's section "Why SALN keeps what it keeps": stage diagnostics' per-selector numbers as tables and
CSVs, and the selection atlas figure, for each dataset with a results/diagnostics/<ds>/diagnostics.json.

Reads only that JSON and the runs' metrics (no selector code): stage diagnostics did the measuring.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from saln.report import figures
from saln.report.figures import plt
from saln.report.beyond import load_result
from saln.report.beyond_section import Dirs, Written
from saln.report.document import Figure, figure_lines
from saln.report.markdown import markdown_table
from saln.report.runs import Stat, stat

TITLE = "Why SALN keeps what it keeps: selection diagnostics"
FILE = "diagnostics.json"
SELECTS = {"per_batch": "per batch", "whole_batch": "nothing (the whole batch: its numbers are the batch's)",
           "subset": "a subset, once (stage prune): no per-batch numbers", "not_run": "no saved selections"}


@dataclass(frozen=True)
class Metric:
    key: str       # a key of diagnostics.json's per-method entry
    label: str
    digits: int


GRAPH_METRICS = [Metric("participation_ratio", "Fiedler participation ratio", 2),
                 Metric("eigengap_ratio", "eigengap λ2/λ3", 3)]
KEPT_METRICS = [Metric("degree_rank", "mean degree rank", 1), Metric("class_balance", "class balance", 3),
                Metric("loss_percentile", "reference-loss percentile", 1)]


def diagnostics_section(runs: list[dict], datasets: list[str], methods: list[str], dirs: Dirs,
                        root: str | Path, styles: dict | None = None) -> Written:
    """The section, one subsection per dataset whose diagnostics.json exists; nothing when none does."""
    root = Path(root)
    present = [d for d in datasets if (root / d / FILE).is_file()]
    if not present:
        return Written()
    out = Written([f"## {TITLE}", "", *INTRO, ""])
    for dataset in present:
        out.lines += [f"### `{dataset}`", ""]
        data, why = load_result(root / dataset / FILE, "diagnostics")
        part = Written()
        if data is not None:
            try:
                _dataset_part(part, dataset, data, runs, methods, dirs, styles or {})
            except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
                data, why = None, f"`{(root / dataset / FILE).as_posix()}` is malformed: {err!r}"
        if data is None:
            out.lines += [f"*No diagnostics: {why}.*", ""]
        else:
            out.lines += part.lines
            out.csv_files += part.csv_files
    return out


INTRO = [
    "Stage `diagnostics` measures what each selector kept on the first-epoch batches the runs saved "
    "(`train.log_batches`, every seed; runs with the same seed see the same batches). Per kept set:",
    "",
    "- **Fiedler participation ratio** (Σv²)²/Σv⁴ of the Fiedler vector v of the method's own batch graph: "
    "1 = the vector sits on one image, B = spread evenly; **eigengap λ2/λ3**: small = the graph has one "
    "clear cut. Both depend only on the batch and the graph (spectral methods only).",
    "- **Mean degree rank** of the kept images in the batch's dense cosine graph (0 = highest degree, the most "
    "typical image; high = atypical images).",
    "- **Class balance**: entropy of the kept labels / entropy of the batch's labels (1 = as balanced as the "
    "batch).",
    "- **Reference-loss percentile** of the kept images within their batch (0 = easiest for the reference "
    "model, 100 = hardest).",
    "",
    "Cells are mean ± sample std over the saved batches (n = batches); the chance row is the expectation "
    "for a uniform random subset, next to the `random` control's measured row.",
]


def _dataset_part(out: Written, dataset: str, data: dict, runs: list[dict], methods: list[str], dirs: Dirs,
                  styles: dict) -> None:
    entries = data["methods"]
    order = row_order([m for m in entries if m in methods] + [m for m in entries if m not in methods], entries)
    accuracy = {m: stat([r["test_acc"] for r in runs if r["dataset"] == dataset and r["method"] == m
                         and isinstance(r.get("test_acc"), (int, float))]) for m in order}
    shape = ("No per-batch selector saved a batch." if data.get("batch_size") is None else
             f"Batches of B = {data['batch_size']} candidates, {data['keep']} kept per selecting method.")
    out.lines += [shape, "", diagnostics_markdown(order, entries, data.get("chance", {}), accuracy), ""]
    out.lines += [f"- {line}" for line in graph_lines(order, entries)] + [""]
    for note in data.get("notes", []):
        out.lines += [f"*Note: {note}*", ""]
    out.csv_files.append(f"{dataset}_diagnostics.csv")
    write_diagnostics_csv(dataset, order, entries, accuracy, dirs.tables / out.csv_files[-1])
    matrix = data.get("jaccard") or {}
    if matrix.get("methods"):
        chance = data.get("chance", {}).get("jaccard")
        out.lines += ["#### Overlap of the kept sets (Jaccard)", "",
                      "Mean Jaccard overlap |A ∩ B| / |A ∪ B| of two methods' kept sets on the same batches "
                      "(same seed and batch number; n = batches)"
                      + (f"; two independent uniform random subsets overlap by {chance:.3f} on average."
                         if chance is not None else "."), "", jaccard_markdown(matrix), ""]
        out.csv_files.append(f"{dataset}_jaccard.csv")
        write_jaccard_csv(dataset, matrix, dirs.tables / out.csv_files[-1])
    atlas = data.get("atlas")
    if not atlas or not atlas.get("batches"):
        out.lines += ["*No selection atlas: no per-batch selector saved a batch.*", ""]
        return
    path = plot_selection_atlas(atlas, dataset, styles, dirs.figures / f"{dataset}_selection_atlas.png")
    caption = (f"{dataset}: selection atlas, seed {atlas['seed']}: each saved batch (columns) in 2-D, "
               f"{atlas['projection']}; grey = the batch, marked = what each selector (rows) kept")
    out.lines += figure_lines(Figure("", caption, path), dirs.out)


def row_order(methods: list[str], entries: dict) -> list[str]:
    """Spectral methods first, then the random control beside them, then the rest (each in given order)."""
    spectral = [m for m in methods if "options" in entries[m]]
    control = [m for m in methods if m == "random"]
    return spectral + control + [m for m in methods if m not in spectral and m not in control]


def _cell(summary: dict | None, metric: Metric, batches: int) -> str:
    if not summary or not summary.get("n"):
        return "—"
    text = f"{summary['mean']:.{metric.digits}f} ± {summary['std']:.{metric.digits}f}"
    return text if summary["n"] == batches else f"{text} (n={summary['n']})"


def diagnostics_markdown(order: list[str], entries: dict, chance: dict, accuracy: dict[str, Stat]) -> str:
    rank_chance = chance.get("degree_rank")
    header = (["method", "selects", "batches"] + [m.label for m in GRAPH_METRICS]
              + [f"mean degree rank (chance {rank_chance:g})" if rank_chance is not None else "mean degree rank",
                 "class balance", f"reference-loss percentile (chance {chance.get('loss_percentile', 50):g})",
                 "test accuracy (%): mean ± std (n runs)"])
    rows = []
    for m in order:
        e = entries[m]
        batches = e.get("batches", 0)
        graph = [_cell(e.get(g.key), g, batches) if "options" in e else "— (no graph)" for g in GRAPH_METRICS]
        kept = [_cell(e.get(k.key), k, batches) for k in KEPT_METRICS]
        acc = accuracy[m]
        rows.append([m, SELECTS.get(e["kind"], e["kind"]), batches or "—"] + graph + kept
                    + ["not run" if acc.n == 0 else acc.format(2, 100.0)])
    if rank_chance is not None:
        rows.append(["chance (uniform random subset)", "—", "—", "—", "—", f"{rank_chance:g}", "—",
                     f"{chance.get('loss_percentile', 50):g}", "—"])
    return markdown_table(header, rows)


def graph_lines(order: list[str], entries: dict) -> list[str]:
    """One line per spectral method: the graph and ranking it uses, and whether it re-selects its saved sets."""
    lines = []
    for m in order:
        o, e = entries[m].get("options"), entries[m]
        if o is None:
            continue
        knn = f" (k = {o['knn_k']})" if o["graph"] == "knn" else ""
        text = (f"`{m}`: {o['laplacian']} Laplacian, {o['graph']} cosine graph{knn}, features "
                f"{'centred' if o['center'] else 'not centred'}, ranked by {o['ranking']}")
        if (r := e.get("reproduced")) is not None:
            text += f"; re-running it on the saved batches keeps the saved set on {r['matching']} of {r['batches']}"
        lines.append(text + ".")
    return lines


def jaccard_markdown(matrix: dict) -> str:
    names = matrix["methods"]
    rows = [[a] + ["—" if matrix["n"][i][j] == 0 or matrix["mean"][i][j] is None
                   else f"{matrix['mean'][i][j]:.3f} (n={matrix['n'][i][j]})" for j in range(len(names))]
            for i, a in enumerate(names)]
    return markdown_table(["method"] + names, rows)


def write_diagnostics_csv(dataset: str, order: list[str], entries: dict, accuracy: dict[str, Stat],
                          path: str | Path) -> None:
    """Long format, unrounded: one line per method x metric."""
    with Path(path).open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["dataset", "method", "kind", "metric", "mean", "std", "n"])
        for m in order:
            e = entries[m]
            for metric in GRAPH_METRICS + KEPT_METRICS:
                s = e.get(metric.key)
                if s and s.get("n"):
                    writer.writerow([dataset, m, e["kind"], metric.key, s["mean"], s["std"], s["n"]])
            if accuracy[m].n:
                writer.writerow([dataset, m, e["kind"], "test_acc", accuracy[m].mean, accuracy[m].std,
                                 accuracy[m].n])


def write_jaccard_csv(dataset: str, matrix: dict, path: str | Path) -> None:
    names = matrix["methods"]
    with Path(path).open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["dataset", "method_a", "method_b", "mean_jaccard", "n_batches"])
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                mean = matrix["mean"][i][j]
                writer.writerow([dataset, a, b, "" if mean is None else mean, matrix["n"][i][j]])


def plot_selection_atlas(atlas: dict, dataset: str, styles: dict, path: str | Path) -> Path:
    """One row per selector, one column per saved batch: the batch's images as grey points in the shared
    2-D projection, the ones the selector kept in its colour and marker."""
    batches = atlas["batches"]
    methods = list(dict.fromkeys(m for b in batches for m in b["kept"]))
    fig, axes = plt.subplots(len(methods), len(batches), figsize=(3.4 * len(batches) + 0.6, 3.0 * len(methods)),
                             squeeze=False, sharex=True, sharey=True)
    share = atlas.get("explained_variance") or [0.0, 0.0]
    for col, batch in enumerate(batches):
        xy = batch["xy"]
        xs, ys = [p[0] for p in xy], [p[1] for p in xy]
        for row, method in enumerate(methods):
            ax = axes[row][col]
            ax.scatter(xs, ys, s=14, color="0.78", linewidths=0, label="batch")
            style = styles.get(method, {"color": "0.3", "marker": "o"})
            kept = batch["kept"].get(method)
            if kept is None:
                ax.text(0.5, 0.5, "not saved", transform=ax.transAxes, ha="center", va="center")
            else:
                ax.scatter([xs[i] for i in kept], [ys[i] for i in kept], s=46, color=style["color"],
                           marker=style["marker"], edgecolors="black", linewidths=0.5,
                           label=f"kept ({len(kept)})")
                ax.legend(loc="best", fontsize=7, framealpha=0.7)
            if row == 0:
                ax.set_title(f"batch {batch['batch']}", fontsize=10)
            if col == 0:
                ax.set_ylabel(f"{method}\nPC2 ({share[1]:.0%})", fontsize=9)
            if row == len(methods) - 1:
                ax.set_xlabel(f"PC1 ({share[0]:.0%} of variance)", fontsize=9)
            ax.grid(alpha=0.25)
    fig.suptitle(f"{dataset}: what each selector kept (epoch 1, seed {atlas['seed']})", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_figheight()))  # room for the title
    return figures.save(fig, path)
