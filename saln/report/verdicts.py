"""One dataset's verdict evidence: every method's runs at every rate (trained or not), its one-off
costs, and the tables built on them: measured comparisons, claims, time to target, all-in cost."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from saln.costs import OneOff, cost_breakdown, noisy, read_one_offs, sharing_runs
from saln.layout import UNRECALIBRATED, rate_dir, run_dir
from saln.rates import rate_diverged, read_outcome
from saln.report.claims import (DID_NOT_TRAIN, FULL, Chance, ClaimRow, Completed, MethodRuns, PairRow, RateRuns,
                                claim_rows, did_not_train_rule, pair_rows)
from saln.report.history import read_history
from saln.report.figures import BudgetPoint
from saln.report.markdown import markdown_table
from saln.report.runs import best_rates, collect_rate_runs, stat
from saln.report.stats import paired

TARGETS = (0.5, 0.75, 0.9, 1.0)  # shares of standard's final validation accuracy
FLAT_SHARE = 0.8  # standard has flattened when its run budgeted for this share ends within 1 pp of its full run
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


def evidence(dataset: str, methods: list[str], seeds: list[int], lrs: list[float], roots: Inputs,
             fractions: list[float] = (FULL,)) -> Evidence:
    """Every method's runs at every (rate, budget fraction), trained or not, with its one-off costs."""
    chance = chance_of(roots.prepared, dataset)
    one_off = read_one_offs(Path(roots.features) / dataset / "probe.json",
                            Path(roots.reference) / dataset / "metrics.json")
    sharing = sharing_runs(methods, seeds, lrs, list(fractions))
    best = best_rates(roots.lr, dataset)
    by_fraction = {f: collect_rate_runs(dataset, methods, seeds, lrs, roots.train, f) for f in fractions}
    groups = {}
    for method in methods:
        if method not in by_fraction.get(FULL, {}):
            continue
        offset = cost_breakdown({"train_seconds": 0.0, "selection_seconds": 0.0}, method, one_off,
                                sharing)["all_in_amortised"]
        run_dirs = [run_dir(roots.train, dataset, method, s) for s in seeds]
        groups[method] = MethodRuns(
            _rate_runs(by_fraction[FULL][method], FULL, run_dirs, chance), best.get(method), offset,
            {f: _rate_runs(by_fraction[f].get(method, {}), f, run_dirs, chance) for f in fractions if f != FULL})
    pairs = pair_rows(groups)
    return Evidence(dataset, groups, chance, one_off, sharing, pairs, claim_rows(pairs))


def _rate_runs(rates: dict, fraction: float, run_dirs: list[Path], chance: Chance) -> dict[float, RateRuns]:
    """One method's finished runs at one budget fraction, per rate; a rate trained when no seed diverged
    there and every run beat chance."""
    return {lr: RateRuns(runs, {s: read_history(r["dir"]) for s, r in runs.items()},
                         not rate_diverged([read_outcome(rate_dir(d, lr, fraction)) for d in run_dirs])
                         and all(chance.trained(r) for r in runs.values())) for lr, runs in rates.items()}


def _budget_name(fraction: float) -> str:
    return "" if fraction == FULL else f", budget {fraction:g}"


def untrained_lines(ev: Evidence) -> list[str]:
    bad = [f"`{m}` at lr {lr:g}{_budget_name(f)}" for m, g in ev.groups.items() for f in g.budgets()
           for lr, r in sorted(g.at(f).items()) if not r.trained]
    text = f"Rule: {did_not_train_rule(ev.chance)}; its runs are labelled and never read by a verdict."
    return [text, "", f"*{DID_NOT_TRAIN}:* " + (", ".join(bad) if bad else "none."), ""]


def _first_reach(budgets: list[Completed], seed: int, target: float) -> Completed | None:
    """The smallest budget whose completed run of ``seed`` ends at or above ``target`` validation accuracy."""
    return next((c for c in budgets if seed in c.rate.runs and c.rate.runs[seed]["val_acc"] >= target), None)


def time_to_target(ev: Evidence) -> tuple[str, list[list]]:
    """Per method: the images and all-in seconds of the smallest budget whose completed run (at the method's
    best rate for that budget) reaches each share of standard's final validation accuracy, per seed;
    mean over the seeds that reached it, and how many did."""
    base = ev.groups.get(BASELINE)
    final_run = base.completed(FULL) if base is not None else None
    if final_run is None:
        return f"*No time-to-target table: `{BASELINE}` has no trained run at its best rate.*", []
    final = stat(final_run.per_seed("val_acc").values()).mean
    rows, csv_rows = [], []
    for method, g in ev.groups.items():
        budgets = g.all_completed()
        if not budgets:
            rows.append([method] + ["no rate trained"] * len(TARGETS))
            continue
        seeds = sorted({s for c in budgets for s in c.rate.runs})
        cells = [method]
        for fraction in TARGETS:
            hits = {s: hit for s in seeds if (hit := _first_reach(budgets, s, fraction * final)) is not None}
            if hits:
                img = float(np.mean([h.rate.runs[s]["images_backprop"] for s, h in hits.items()]))
                sec = float(np.mean([h.all_in()[s] for s, h in hits.items()]))
                shares = "/".join(f"{f:g}" for f in sorted({h.fraction for h in hits.values()}))
                cells.append(f"{img:,.0f} img, {sec:.3g} s, budget {shares} ({len(hits)}/{len(seeds)})")
            else:
                img = sec = None
                cells.append(f"not reached by any budget (0/{len(seeds)})")
            csv_rows.append([ev.dataset, method, fraction, img, sec, len(hits), len(seeds)])
        rows.append(cells)
    header = ["method"] + [f"{int(100 * f)}% of {100 * final:.1f}%" for f in TARGETS]
    intro = (f"Per seed, the smallest budget (`train.budget_fractions`) whose completed run, at the method's "
             f"best rate for that budget, ends at or above each share of `{BASELINE}`'s final validation "
             f"accuracy ({100 * final:.1f}%, its full budget at its best rate); its images back-propagated and "
             "all-in seconds, mean over the seeds that reached it (reached/seeds). Read from completed runs "
             "only: with few budget fractions this is coarse (the figure's points inside the full run are the "
             "anytime view).")
    return intro + "\n\n" + markdown_table(header, rows), csv_rows


def cost_table(ev: Evidence) -> tuple[str, list[list]]:
    """Per method and budget at its best rate there: steps, scoring, one-off and all-in seconds, noisy
    timings flagged."""
    rows, csv_rows = [], []
    for method, g in ev.groups.items():
        for fraction in g.budgets():
            lr = g.rate_at(fraction)
            if lr is None and fraction == FULL:
                lr = g.best_lr  # costs are read even where nothing trained
            rate = g.at(fraction).get(lr)
            if rate is None or not rate.runs:
                continue
            parts = [cost_breakdown(r, method, ev.one_off, ev.sharing) for r in rate.runs.values()]
            means = {k: float(np.mean([p[k] for p in parts])) for k in parts[0]}
            images = float(np.mean([r["images_backprop"] for r in rate.runs.values()]))
            flag = "noisy timing" if noisy([p["train_seconds"] for p in parts]) else ""
            rows.append([method, f"{fraction:g}", f"{lr:g}", f"{images:,.0f}", f"{means['steps_seconds']:.2f}",
                         f"{means['scoring_seconds']:.2f}", f"{means['one_off_seconds']:.2f}",
                         f"{means['all_in_amortised']:.2f}", f"{means['all_in_dataset']:.2f}", flag or "—"])
            csv_rows.append([ev.dataset, method, fraction, lr, images, *(means[k] for k in sorted(means)), flag])
    header = ["method", "budget", "best lr", "images back-propagated", "steps s", "selection scoring s",
              "one-off s (per dataset)", "all-in s (amortised)", "all-in s (one-off paid alone)", "timing"]
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
COST_FIELDS = ["dataset", "method", "budget", "lr", "images_backprop", "all_in_amortised", "all_in_dataset", "one_off_seconds",
               "scoring_seconds", "steps_seconds", "train_seconds", "flag"]
TARGET_FIELDS = ["dataset", "method", "target_share", "images", "all_in_seconds", "seeds_reached", "seeds"]


def write_rows(path: Path, header: list[str], rows: list[list]) -> None:
    import csv

    with Path(path).open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows([["" if v is None else v for v in row] for row in rows])


def budget_points(ev: Evidence) -> tuple[dict[str, list[BudgetPoint]], dict[str, list[BudgetPoint]]]:
    """What the budget figure draws, per method: each completed budget at its best rate (the verdicts'
    points) and the evaluations inside the full-budget run at that rate (the anytime view: the image
    counts every seed logged)."""
    ends, anytime = {}, {}
    for method, g in ev.groups.items():
        completed = g.all_completed()
        ends[method] = [BudgetPoint(c.passes, c.images, c.seconds, *_acc(c.per_seed("test_acc", 100).values()),
                                    label=f"{c.fraction:g}") for c in completed]
        full = g.completed(FULL)
        if full is not None:
            anytime[method] = _inside(list(full.rate.histories.values()), g.one_off)
    return ends, anytime


def _acc(values) -> tuple[float, float, int]:
    s = stat(values)
    return s.mean, s.std, s.n


def _inside(histories: list, one_off: float) -> list[BudgetPoint]:
    """Mean over seeds at each image count every seed logged (epoch 0 included)."""
    per_seed = []
    for h in histories:
        columns = [h.values.get(name) for name in ("images_backprop", "train_seconds", "test_acc")]
        if any(c is None for c in columns):
            return []
        images, seconds, test = columns
        ok = np.isfinite(images) & np.isfinite(seconds) & np.isfinite(test) & np.isfinite(h.epoch)
        per_seed.append({float(i): (float(e), float(t), 100 * float(a))
                         for i, e, t, a in zip(images[ok], h.epoch[ok], seconds[ok], test[ok])})
    shared = sorted(set.intersection(*(set(d) for d in per_seed))) if per_seed else []
    points = []
    for images in shared:
        rows = [d[images] for d in per_seed]
        points.append(BudgetPoint(float(np.mean([r[0] for r in rows])), images,
                                  float(np.mean([r[1] for r in rows])) + one_off, *_acc(r[2] for r in rows)))
    return points


def flattening_line(ev: Evidence, share: float = FLAT_SHARE) -> str:
    """Standard's gain over the last (1 - share) of its budget, from its completed runs at ``share`` and 1."""
    base = ev.groups.get(BASELINE)
    full, part = (base.completed(FULL), base.completed(share)) if base is not None else (None, None)
    what = f"`{BASELINE}`'s gain over the last {1 - share:.0%} of its budget"
    if full is None or part is None:
        return (f"*{what}: not measured (it needs completed `{BASELINE}` runs at budget {share:g} and 1: add "
                f"{share:g} to train.budget_fractions).*")
    gain = paired(full.per_seed("val_acc", 100), part.per_seed("val_acc", 100))
    verdict = ("flattened: under 1 pp" if abs(gain.mean) < 1 else
               "not flattened: a longer budget could move the verdicts")
    return (f"{what} (validation accuracy, its completed full-budget run minus its completed budget-{share:g} "
            f"run, each at its best rate, lr {full.lr:g} and {part.lr:g}): {gain.format('pp')}; **{verdict}**.")


def rates_summary(ev: Evidence) -> list[str]:
    """Per method and budget: final validation accuracy at each rate, the best that trained, and a flag
    when it lies at an edge of the grid."""
    rows = []
    for method, g in ev.groups.items():
        for fraction in g.budgets():
            rates = g.at(fraction)
            cells = []
            for lr, r in sorted(rates.items()):
                mean = stat([x["val_acc"] for x in r.runs.values()])
                cells.append(f"{lr:g}: {100 * mean.mean:.1f}%" + ("" if r.trained else f" ({DID_NOT_TRAIN})"))
            lrs, best = sorted(rates), g.rate_at(fraction)
            edge = best is not None and len(lrs) > 1 and best in (lrs[0], lrs[-1])
            picked = ("—" if g.best_lr is None else f"{g.best_lr:g}") if fraction == FULL else ""
            rows.append([method, f"{fraction:g}", "; ".join(cells) or "no run", picked,
                         "none trained" if best is None else f"{best:g}", "widen the grid" if edge else "—"])
    header = ["method", "budget", "final val acc by rate (mean over seeds)", "best rate (stage best_lr)",
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
    lines += ["#### Rates", ""] + rates_summary(ev) + untrained_lines(ev) + [flattening_line(ev), ""]
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

