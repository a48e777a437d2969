"""One dataset's verdict evidence: every method's runs at every rate (trained or not), its one-off
costs, and the tables built on them: measured comparisons, claims, time to target, all-in cost."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from saln.costs import OneOff, cost_breakdown, noisy, read_one_offs, sharing_runs
from saln.layout import UNRECALIBRATED, rate_dir, run_dir
from saln.rates import rate_diverged, read_outcome
from saln.report.claims import (DID_NOT_TRAIN, Chance, ClaimRow, MethodRuns, PairRow, RateRuns, claim_rows,
                                did_not_train_rule, pair_rows)
from saln.report.history import read_history
from saln.report.markdown import markdown_table
from saln.report.runs import best_rates, collect_rate_runs, stat
from saln.report.stats import paired

TARGETS = (0.5, 0.75, 0.9)  # fractions of standard's final validation accuracy
BASELINE = "standard"


@dataclass(frozen=True)
class Inputs:
    train: Path
    lr: Path
    prepared: Path
    features: Path
    reference: Path


def chance_of(prepared: Path, dataset: str) -> Chance:
    labels = np.load(Path(prepared) / dataset / "labels.npy")
    with np.load(Path(prepared) / dataset / "splits.npz") as splits:
        val = labels[splits["val"]]
    counts = np.bincount(val, minlength=int(labels.max()) + 1)
    return Chance(int(labels.max()) + 1, float(counts.max() / max(len(val), 1)), int(len(val)))


@dataclass
class Evidence:
    dataset: str
    groups: dict[str, MethodRuns]
    chance: Chance
    one_off: OneOff
    sharing: dict[str, int]
    pairs: list[PairRow]
    claims: list[ClaimRow]


def evidence(dataset: str, methods: list[str], seeds: list[int], lrs: list[float], roots: Inputs) -> Evidence:
    chance = chance_of(roots.prepared, dataset)
    one_off = read_one_offs(Path(roots.features) / dataset / "probe.json",
                            Path(roots.reference) / dataset / "metrics.json")
    sharing = sharing_runs(methods, seeds, lrs)
    best = best_rates(roots.lr, dataset)
    groups = {}
    for method, rates in collect_rate_runs(dataset, methods, seeds, lrs, roots.train).items():
        offset = cost_breakdown({"train_seconds": 0.0, "selection_seconds": 0.0}, method, one_off,
                                sharing)["all_in_amortised"]
        run_dirs = [run_dir(roots.train, dataset, method, s) for s in seeds]
        groups[method] = MethodRuns(
            {lr: RateRuns(runs, {s: read_history(r["dir"]) for s, r in runs.items()},
                          not rate_diverged([read_outcome(rate_dir(d, lr)) for d in run_dirs])
                          and all(chance.trained(r) for r in runs.values())) for lr, runs in rates.items()},
            best.get(method), offset)
    pairs = pair_rows(groups)
    return Evidence(dataset, groups, chance, one_off, sharing, pairs, claim_rows(pairs))


def untrained_lines(ev: Evidence) -> list[str]:
    bad = [f"`{m}` at lr {lr:g}" for m, g in ev.groups.items() for lr, r in sorted(g.rates.items())
           if not r.trained]
    text = f"Rule: {did_not_train_rule(ev.chance)}; its runs are labelled and never read by a verdict."
    return [text, "", f"*{DID_NOT_TRAIN}:* " + (", ".join(bad) if bad else "none."), ""]


def _first_reach(points, target: float) -> tuple[float, float] | None:
    for images, seconds, val in points:
        if val >= target:
            return images, seconds
    return None


def time_to_target(ev: Evidence) -> tuple[str, list[list]]:
    """Per method at its best rate: images and all-in seconds to first reach each fraction of standard's
    final validation accuracy (mean over the seeds that reached it, and how many did)."""
    base = ev.groups.get(BASELINE)
    if base is None or base.rate is None:
        return f"*No time-to-target table: `{BASELINE}` has no trained run at its best rate.*", []
    final = stat([r["val_acc"] for r in base.rates[base.rate].runs.values()]).mean
    rows, csv_rows = [], []
    for method, g in ev.groups.items():
        rate = g.rates.get(g.rate)
        if rate is None:
            rows.append([method, "—"] + ["no rate trained"] * len(TARGETS))
            continue
        cells = [method, f"{g.rate:g}"]
        for fraction in TARGETS:
            reached = []
            for h in rate.histories.values():
                images, val = h.series("images_backprop", "val_acc")
                sec = h.series("images_backprop", "train_seconds")[1]
                points = list(zip(images, sec + g.one_off, val)) if len(sec) == len(images) else []
                if (hit := _first_reach(points, fraction * final)) is not None:
                    reached.append(hit)
            n = len(rate.histories)
            if reached:
                img, sec = (float(np.mean([r[i] for r in reached])) for i in (0, 1))
                cells.append(f"{img:,.0f} img, {sec:.3g} s ({len(reached)}/{n})")
            else:
                img = sec = None
                cells.append(f"not reached (0/{n})")
            csv_rows.append([ev.dataset, method, g.rate, fraction, img, sec, len(reached), n])
        rows.append(cells)
    header = ["method", "best lr"] + [f"{int(100 * f)}% of {100 * final:.1f}%" for f in TARGETS]
    intro = (f"Images back-propagated and all-in seconds until validation accuracy first reaches each share "
             f"of `{BASELINE}`'s final validation accuracy ({100 * final:.1f}%, at its best rate), each "
             "method at its best rate; mean over the seeds that reached it (reached/seeds).")
    return intro + "\n\n" + markdown_table(header, rows), csv_rows


def cost_table(ev: Evidence) -> tuple[str, list[list]]:
    """Per method at its best rate: steps, scoring, one-off and all-in seconds, noisy timings flagged."""
    rows, csv_rows = [], []
    for method, g in ev.groups.items():
        lr = g.rate if g.rate is not None else g.best_lr  # costs are read even where nothing trained
        rate = g.rates.get(lr)
        if rate is None or not rate.runs:
            continue
        parts = [cost_breakdown(r, method, ev.one_off, ev.sharing) for r in rate.runs.values()]
        means = {k: float(np.mean([p[k] for p in parts])) for k in parts[0]}
        flag = "noisy timing" if noisy([p["train_seconds"] for p in parts]) else ""
        rows.append([method, f"{lr:g}", f"{means['steps_seconds']:.2f}", f"{means['scoring_seconds']:.2f}",
                     f"{means['one_off_seconds']:.2f}", f"{means['all_in_amortised']:.2f}",
                     f"{means['all_in_dataset']:.2f}", flag or "—"])
        csv_rows.append([ev.dataset, method, lr, *(means[k] for k in sorted(means)), flag])
    header = ["method", "best lr", "steps s", "selection scoring s", "one-off s (per dataset)",
              "all-in s (amortised)", "all-in s (one-off paid alone)", "timing"]
    return markdown_table(header, rows), csv_rows


def batchnorm_table(ev: Evidence) -> tuple[str, list[list]] | None:
    """Per method at its best rate, final accuracy with BatchNorm's statistics re-estimated (what every
    table above reads) against training's own statistics, on the same weights; None when the runs
    did not recalibrate (train.bn_recalibrate 0)."""
    rows, csv_rows, sample = [], [], 0
    for method, g in ev.groups.items():
        rate = g.rates.get(g.rate)
        runs = {s: r for s, r in rate.runs.items() if f"test_acc{UNRECALIBRATED}" in r} if rate else {}
        if not runs:
            continue
        sample = max(r["bn_recalibrate"] for r in runs.values())
        cells = [method, f"{g.rate:g}"]
        for split in ("test", "val"):
            on = {s: 100 * r[f"{split}_acc"] for s, r in runs.items()}
            off = {s: 100 * r[f"{split}_acc{UNRECALIBRATED}"] for s, r in runs.items()}
            diff, mean_on, mean_off = paired(on, off), stat(on.values()).mean, stat(off.values()).mean
            cells += [f"{mean_off:.1f}", f"{mean_on:.1f}", f"{diff.format('pp', 1)} {diff.outcome}"]
            csv_rows.append([ev.dataset, method, g.rate, split, mean_off, mean_on, diff.mean, diff.low, diff.high,
                             diff.n])
        rows.append(cells)
    if not rows:
        return None
    header = ["method", "best lr"] + [f"{split} acc % {what}" for split in ("test", "val")
                                      for what in ("training stats", "re-estimated", "re-estimated − training")]
    intro = (f"Every evaluation of these runs re-estimated BatchNorm's statistics on {sample} fixed training "
             "images (`train.bn_recalibrate`), so the tables above read the weights alone, not the statistics "
             "a selector's kept images left behind. The final evaluation also read the same weights with "
             "training's own running statistics (`*_unrecalibrated`): each method at its best rate, paired "
             "over seeds (95% interval).")
    return intro + "\n\n" + markdown_table(header, rows), csv_rows


BATCHNORM_FIELDS = ["dataset", "method", "lr", "split", "acc_training_stats", "acc_reestimated",
                    "difference", "low", "high", "seeds"]
COST_FIELDS = ["dataset", "method", "lr", "all_in_amortised", "all_in_dataset", "one_off_seconds",
               "scoring_seconds", "steps_seconds", "train_seconds", "flag"]
TARGET_FIELDS = ["dataset", "method", "lr", "fraction", "images", "all_in_seconds", "seeds_reached", "seeds"]


def write_rows(path: Path, header: list[str], rows: list[list]) -> None:
    import csv

    with Path(path).open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows([["" if v is None else v for v in row] for row in rows])


def rates_summary(ev: Evidence) -> list[str]:
    """Which rates each method trained at, the best on validation, and grid-edge flags."""
    rows = []
    for method, g in ev.groups.items():
        cells = []
        for lr, r in sorted(g.rates.items()):
            mean = stat([x["val_acc"] for x in r.runs.values()])
            cells.append(f"{lr:g}: {100 * mean.mean:.1f}%" + ("" if r.trained else f" ({DID_NOT_TRAIN})"))
        lrs = sorted(g.rates)
        edge = g.rate is not None and len(lrs) > 1 and g.rate in (lrs[0], lrs[-1])
        rows.append([method, "; ".join(cells), "—" if g.best_lr is None else f"{g.best_lr:g}",
                     "none trained" if g.rate is None else f"{g.rate:g}",
                     "widen the grid" if edge else "—"])
    header = ["method", "final val acc by rate (mean over seeds)", "best rate (stage best_lr)",
              "best rate that trained (verdicts)", "grid"]
    return [markdown_table(header, rows), ""]


def verdict_lines(ev: Evidence, pairs_md: str, claims_md: str, table_dir: Path) -> tuple[list[str], list[str]]:
    target_md, target_rows = time_to_target(ev)
    cost_md, cost_rows = cost_table(ev)
    names = [f"{ev.dataset}_time_to_target.csv", f"{ev.dataset}_all_in_cost.csv"]
    write_rows(table_dir / names[0], TARGET_FIELDS, target_rows)
    write_rows(table_dir / names[1], COST_FIELDS, cost_rows)
    batchnorm = batchnorm_table(ev)
    lines = [] if batchnorm is None else [
        "*Every evaluation below read BatchNorm statistics re-estimated on fixed training images "
        "(`train.bn_recalibrate`); the table \"BatchNorm statistics\" sets training's own beside them.*", ""]
    lines += ["#### Rates", ""] + rates_summary(ev) + untrained_lines(ev)
    lines += ["#### Claims", "", claims_md, "", "#### Measurements", "", pairs_md, ""]
    lines += ["#### Time to target", "", target_md, ""]
    if batchnorm is not None:
        names.append(f"{ev.dataset}_batchnorm.csv")
        write_rows(table_dir / names[-1], BATCHNORM_FIELDS, batchnorm[1])
        lines += ["#### BatchNorm statistics", "", batchnorm[0], ""]
    lines += ["#### All-in cost", "", f"One-off seconds: features {_sec(ev.one_off.features)}, reference model "
              f"{_sec(ev.one_off.reference)}; shared by {ev.sharing['features']} and {ev.sharing['reference']} "
              "runs of this dataset. A timing whose coefficient of variation over seeds exceeds 25% is flagged "
              "*noisy timing* (README: rerun it on a quiet machine).", "", cost_md, ""]
    return lines, names


def _sec(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.2f} s"

