"""The report's figures as PNGs (matplotlib, Agg): curves, accuracy at equal budgets, selected batches,
classifier-layer weights, active learning, pruning. Every figure draws a method in the colour and marker
``method_styles`` gives it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on the machines that run the pipeline
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter  # noqa: E402

from saln.report.history import Curve  # noqa: E402

KEPT_FRAME = np.array([0, 170, 60], dtype=np.uint8)     # green: selected for back-propagation
DROPPED_FRAME = np.array([200, 200, 200], dtype=np.uint8)
TILE_PIXELS = 48                                         # thumbnails are downsampled to about this


MARKERS = "osD^v<>pP*XhdH8"   # 15 distinct markers; with the colours below every method differs in both


def method_styles(methods: list[str]) -> dict[str, dict]:
    """One fixed colour AND marker per method (by its place in ``methods``), used by every figure.

    The first ten methods take the default colour cycle, the next ten tab20's light shades of it; the
    markers cycle separately, so no two of the first 20 methods share a colour and none of the first
    150 share both colour and marker.
    """
    light = plt.get_cmap("tab20")
    palette = [f"C{i}" for i in range(10)] + [to_hex(light(2 * i + 1)) for i in range(10)]
    return {m: {"color": palette[i % len(palette)], "marker": MARKERS[i % len(MARKERS)]}
            for i, m in enumerate(methods)}


def _style(styles: dict, method: str) -> dict:
    return styles.get(method, {"color": "0.3", "marker": "o"})


def _legend_outside(fig_or_ax, handles=None, labels=None, fontsize=8) -> None:
    """A legend to the right of the plot area, so it hides no data."""
    if handles is None:
        handles, labels = fig_or_ax.get_legend_handles_labels()
    if handles:
        fig_or_ax.legend(handles, labels, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=fontsize)


def save(fig, path: str | Path) -> Path:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def _band(ax, x, curve: Curve, scale: float = 1.0, log: bool = False, **line):
    mean, std = curve.mean * scale, curve.std * scale
    (drawn,) = ax.plot(x, mean, markersize=4, **line)
    low = np.maximum(mean - std, mean * 0.5) if log else mean - std  # a log axis cannot show <= 0
    ax.fill_between(x, low, mean + std, color=drawn.get_color(), alpha=0.2, linewidth=0)


def _needs_log(curves: list[Curve]) -> bool:
    """Early validation losses can be 100x the later ones; a log axis keeps both readable."""
    means = np.concatenate([c.mean for c in curves]) if curves else np.ones(1)
    return bool(means.min() > 0 and means.max() / means.min() > 20)


def _log_axis(ax) -> None:
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def plot_curves(curves: dict[str, Curve], dataset: str, method: str, style: dict, path) -> Path:
    """Train, validation (and test, when logged) accuracy and loss per epoch for one method (the paper's
    Figs 1-6), in the method's colour and marker; the split sets the line style."""
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 3.6))
    splits = {"train": "--", "val": "-", "test": ":"}
    names = {"train": "train", "val": "validation", "test": "test"}
    for ax, metric, ylabel, scale in [(axes[0], "acc", "accuracy (%)", 100.0),
                                      (axes[1], "loss", "cross-entropy loss", 1.0)]:
        drawn = [c for split in splits if (c := curves.get(f"{split}_{metric}")) is not None]
        log = metric == "loss" and _needs_log(drawn)
        for split, linestyle in splits.items():
            if (curve := curves.get(f"{split}_{metric}")) is not None:
                _band(ax, curve.epochs, curve, scale, log=log, linestyle=linestyle, **style,
                      label=f"{method}, {names[split]} (n={curve.n})")
        if log:
            _log_axis(ax)
        ax.set(xlabel="epoch (0 = before training)", ylabel=ylabel + (" (log scale)" if log else ""))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    labelled = {}  # one entry per split drawn in either panel
    for ax in axes:
        labelled.update(zip(*reversed(ax.get_legend_handles_labels())))
    _legend_outside(fig, list(labelled.values()), list(labelled), fontsize=9)
    fig.suptitle(f"{dataset} / {method}: accuracy and loss per epoch (mean ± std over seeds)")
    return save(fig, path)


ACC_NAMES = {"test_acc": "test accuracy (%)", "val_acc": "validation accuracy (%)"}
BUDGET_AXES = [("passes", "passes over the training split (epochs)"),
               ("images", "images back-propagated"),
               ("seconds", "all-in seconds (training + amortised one-off work)")]


@dataclass(frozen=True)
class BudgetPoint:
    """Mean test accuracy (± std over seeds) at one measured budget: its passes, images and all-in seconds."""

    passes: float
    images: float
    seconds: float
    acc: float
    std: float
    n: int
    label: str = ""  # a completed run's budget fraction, written beside its point


def plot_time_to_accuracy(ends: dict[str, list[BudgetPoint]], anytime: dict[str, list[BudgetPoint]],
                          dataset: str, styles: dict, path) -> Path:
    """Test accuracy against passes, images back-propagated and all-in seconds: filled markers are the
    completed runs, one per budget fraction (what the verdicts read); hollow markers are the evaluations
    inside each method's full-budget run (the anytime view, its rate schedule not yet finished). Points
    only: no line joins two budgets."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, (x_name, xlabel) in zip(axes, BUDGET_AXES):
        for method, points in anytime.items():
            style = _style(styles, method)
            ax.plot([getattr(p, x_name) for p in points], [p.acc for p in points], linestyle="none",
                    marker=style["marker"], markersize=4, markerfacecolor="none", color=style["color"], alpha=0.6)
        for method, points in ends.items():
            style = _style(styles, method)
            ax.errorbar([getattr(p, x_name) for p in points], [p.acc for p in points], yerr=[p.std for p in points],
                        linestyle="none", markersize=7, capsize=2, **style,
                        label=f"{method} (n={max((p.n for p in points), default=0)})")
            for p in points:
                ax.annotate(p.label, (getattr(p, x_name), p.acc), textcoords="offset points", xytext=(4, -9),
                            fontsize=6, color=style["color"])
        ax.set(xlabel=xlabel, ylabel=ACC_NAMES["test_acc"])
        if x_name != "passes" and any(ends.values()):
            spread = [getattr(p, x_name) for points in ends.values() for p in points if getattr(p, x_name) > 0]
            if spread and max(spread) / min(spread) > 20:
                ax.set_xscale("log")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    handles += [plt.Line2D([], [], linestyle="none", marker="o", color="0.3", markersize=7),
                plt.Line2D([], [], linestyle="none", marker="o", color="0.3", markerfacecolor="none", markersize=4)]
    labels += ["completed run (label: budget fraction)", "inside the full-budget run (anytime)"]
    _legend_outside(fig, handles, labels, fontsize=9)
    fig.suptitle(f"{dataset}: test accuracy of completed runs at each budget, each method at its best rate there "
                 "(mean ± std over seeds)")
    return save(fig, path)


def mosaic(images: np.ndarray, kept: np.ndarray, columns: int) -> np.ndarray:
    """One picture of a batch: selected images framed green, dropped ones faded with a grey frame."""
    stride = max(1, images.shape[1] // TILE_PIXELS)
    thumbs = images[:, ::stride, ::stride, :3].astype(np.float32)
    h, w, pad = thumbs.shape[1], thumbs.shape[2], 3
    rows = math.ceil(len(thumbs) / columns)
    canvas = np.full((rows * (h + 2 * pad), columns * (w + 2 * pad), 3), 255, dtype=np.uint8)
    for i, (thumb, keep) in enumerate(zip(thumbs, kept)):
        r, c = divmod(i, columns)
        y, x = r * (h + 2 * pad), c * (w + 2 * pad)
        canvas[y:y + h + 2 * pad, x:x + w + 2 * pad] = KEPT_FRAME if keep else DROPPED_FRAME
        tile = thumb if keep else 255 - 0.35 * (255 - thumb)  # fade the dropped ones towards white
        canvas[y + pad:y + pad + h, x + pad:x + pad + w] = tile.astype(np.uint8)
    return canvas


def plot_batch_grid(images: np.ndarray, kept: dict[str, np.ndarray], dataset: str, batch_number: int,
                    seed: int, styles: dict, path) -> Path:
    """The same candidate batch under each selection method (the paper's Figs 7-8); each panel's title
    in the method's colour, with its marker."""
    columns = math.ceil(math.sqrt(len(images)))
    per_row = min(4, len(kept))                      # many methods wrap onto further rows
    rows = math.ceil(len(kept) / per_row)
    fig, axes = plt.subplots(rows, per_row, figsize=(4.2 * per_row, 4.4 * rows + 0.3), squeeze=False)
    for ax in axes.flat[len(kept):]:
        ax.axis("off")
    for ax, (method, mask) in zip(axes.flat, kept.items()):
        ax.imshow(mosaic(images, mask, columns), interpolation="nearest")
        style = _style(styles, method)
        ax.set_title(f"   {method}: {int(mask.sum())} of {len(mask)} selected", color=style["color"])
        # The method's own marker beside its title, as in every other figure's legend.
        ax.plot([0.0], [1.035], transform=ax.transAxes, clip_on=False, linestyle="none", markersize=8,
                **style)
        ax.axis("off")
    fig.suptitle(f"{dataset}, seed {seed}, epoch 1, batch {batch_number}: "
                 "green frame = selected for back-propagation, faded = dropped")
    return save(fig, path)


def plot_classifier_heatmaps(weights: dict[str, np.ndarray], classes: list[str], dataset: str, styles: dict,
                             path) -> Path:
    """The trained classifier layer's weights (classes x features), one panel per method, one colour
    scale (the paper's Fig 9)."""
    limit = max(float(np.abs(w).max()) for w in weights.values())
    n_classes = next(iter(weights.values())).shape[0]
    panel_height = 0.8 + min(0.12 * n_classes, 3.0)  # 37 pet breeds stay legible, not huge
    fig, axes = plt.subplots(len(weights), 1, figsize=(11, panel_height * len(weights) + 0.6), squeeze=False,
                             sharex=True, layout="constrained")  # x labels only under the last panel
    for ax, (method, w) in zip(axes[:, 0], weights.items()):
        image = ax.imshow(w, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        ax.set_title(method, loc="left", fontsize=10, color=_style(styles, method)["color"])
        ax.set_ylabel("class")
        if len(classes) == w.shape[0] and w.shape[0] <= 40:
            ax.set_yticks(range(len(classes)), classes, fontsize=6 if len(classes) > 12 else 8)
    axes[-1, 0].set_xlabel("feature (classifier-layer input)")
    fig.colorbar(image, ax=axes[:, 0].tolist(), label="weight", shrink=min(1.0, 4 / len(weights)))
    fig.suptitle(f"{dataset}: classifier-layer weights of the trained learner")
    return save(fig, path)


def plot_classifier_histograms(weights: dict[str, np.ndarray], styles: dict, dataset: str, path) -> Path:
    """Distribution of the trained classifier layer's weights per method (the paper's Fig 10): one line
    per method through the bins' densities, in its colour and marker."""
    values = {m: w.ravel() for m, w in weights.items()}
    bins = np.linspace(min(v.min() for v in values.values()), max(v.max() for v in values.values()), 60)
    centres = (bins[:-1] + bins[1:]) / 2
    fig, ax = plt.subplots(figsize=(8, 4))
    for method, v in values.items():
        density, _ = np.histogram(v, bins=bins, density=True)
        ax.plot(centres, density, linewidth=1.3, markersize=4, markevery=6, **_style(styles, method),
                label=f"{method} (mean {v.mean():+.4f}, std {v.std():.4f})")
    ax.set(xlabel="weight", ylabel="density", title=f"{dataset}: classifier-layer weight distribution")
    ax.grid(alpha=0.3)
    _legend_outside(ax)
    return save(fig, path)


STRATEGY_STYLE = {"full": "-", "seals": "--"}   # candidate pool -> line style


def _same_as(strategies: dict[str, dict]) -> dict[str, str]:
    """strategy -> the earlier strategy whose accuracy curve it repeats exactly."""
    first, out = {}, {}
    for name, s in strategies.items():
        key = (tuple(s["labels"]), tuple(s["test_acc"]))
        if key in first:
            out[name] = first[key]
        first.setdefault(key, name)
    return out


def plot_active_learning(strategies: dict[str, dict], dataset: str, path) -> Path:
    """Test accuracy against labels (left) and selection seconds per round (right), one line per strategy."""
    fig, (acc_ax, sec_ax) = plt.subplots(1, 2, figsize=(12.5, 4.4))
    same_as, n = _same_as(strategies), len(strategies)
    for i, (name, s) in enumerate(strategies.items()):
        # Earlier lines are drawn wider, so a later one that repeats them leaves them visible around it.
        width = 1.5 + 2.0 * (n - 1 - i) / max(n - 1, 1)
        style = dict(color=f"C{i % 10}", marker=MARKERS[i % len(MARKERS)], markersize=4 + 1.5 * width,
                     linewidth=width, linestyle=STRATEGY_STYLE.get(s.get("pool"), ":"))
        label = name + (f" (= {same_as[name]})" if name in same_as else "")
        acc_ax.plot(s["labels"], 100 * np.asarray(s["test_acc"]), label=label, **style)
        seconds = np.asarray(s["selection_seconds"], dtype=float)
        if seconds.size:  # round r's batch is chosen with labels[r] labeled
            sec_ax.plot(s["labels"][:seconds.size], np.maximum(seconds, 1e-7), label=name, **style)
    acc_ax.set(xlabel="labeled examples", ylabel="test accuracy (%)",
               title="test accuracy vs labels (linear probe on the features)")
    sec_ax.set(xlabel="labeled examples when the round's batch is chosen",
               ylabel="selection seconds (log scale)",
               title="selection time per round (candidate pool + scoring)")
    sec_ax.set_yscale("log")
    labels = next(iter(strategies.values()))["labels"]
    for ax, ticks in ((acc_ax, labels), (sec_ax, labels[:-1])):
        if 0 < len(ticks) <= 12:
            ax.set_xticks(ticks)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    _legend_outside(fig, *acc_ax.get_legend_handles_labels())
    fig.suptitle(f"{dataset}: simulated pool-based active learning (solid: full pool, dashed: SEALS pool)")
    return save(fig, path)


def plot_pruning_curve(fractions: list[float], acc: dict[str, list[float]], points: dict, keep_fraction,
                       dataset: str, learner: str, styles: dict, path) -> Path:
    """Kept fraction vs linear-probe test accuracy (easy / hard / random-kept), with the learner's
    prune_* runs at keep_fraction as points in their methods' styles (``points``: method -> (accuracy
    Stat, size Stat))."""
    fig, ax = plt.subplots(figsize=(8, 4.8))
    colors = {"easy": "0.15", "hard": "0.45", "random": "0.7"}   # greys: the methods own the colours
    for mode, accs in acc.items():
        ax.plot(fractions, 100 * np.asarray(accs), color=colors.get(mode), marker=".",
                linestyle="--" if mode == "random" else ("-" if mode == "easy" else "-."),
                label=f"linear probe, {mode}-kept")
    offsets = np.linspace(-0.012, 0.012, max(len(points), 1))  # side by side when the accuracies tie
    for (method, (acc_stat, size)), dx in zip(points.items(), offsets):
        images = f"{size.mean:.0f} images, " if size.n else ""
        style = _style(styles, method)
        ax.errorbar(keep_fraction + dx, 100 * acc_stat.mean, yerr=100 * acc_stat.std, fmt=style["marker"],
                    color=style["color"], markersize=8, capsize=3, markeredgecolor="black",
                    label=f"{learner} {method} ({images}n={acc_stat.n})")
    if points:
        ax.axvline(keep_fraction, color="0.8", linewidth=1, zorder=0,
                   label=f"prune.keep_fraction = {keep_fraction:g}")
    ax.set(xlabel="kept fraction of the training split", ylabel="test accuracy (%)",
           title=f"{dataset}: prototype pruning (difficulty = distance to the nearest k-means centroid)\n"
                 f"lines: linear probe on the extracted features; points: {learner} trained on the kept split"
                 + ("" if points else " (no prune_* run yet)"))
    ax.grid(alpha=0.3)
    _legend_outside(ax)
    return save(fig, path)
