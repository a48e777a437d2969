"""The paper's claims, each judged on one primary measurement, with every other measurement of the
same pair as a Holm-corrected secondary.

Every measurement compares SALN with a baseline seed by seed (``stats.paired``: 95% Student-t
interval) and reads only points the runs measured:

* (a) equal epochs: final test accuracy, each method at its best rate on validation among the rates
  whose runs trained (``MethodRuns.rate``);
* (b) equal images back-propagated: test accuracy at the largest point of the shared budget grid at
  or below the smaller of the two methods' final budgets (every run evaluates at that grid);
* (c) equal all-in seconds: test accuracy at each seed's last measured point at or before the smaller
  final all-in seconds (training seconds plus the one-off work the method needs, amortised);
* (d) all-in seconds saved for the same epochs.

At (b) and (c) each method is read at its best rate *for that budget* among the rates it ran,
chosen on validation accuracy at the budget. Training uses one constant rate with no schedule, so
this is a rate tuned to the budget, not a schedule completed within it (Kaddour et al. 2023). A rate
whose runs did not train (``did_not_train``) is never read, and a method with no such rate gets no
verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from saln.report.history import History
from saln.report.markdown import markdown_table
from saln.report.stats import LOSS, TIE, WIN, Paired, holm, holm_outcome, paired

METHOD = "saln"
PAIRS = ("standard", "random", "jest")  # SALN against each
MEASUREMENTS = [  # (key, column header)
    ("epochs", "(a) equal epochs: test acc (pp)"),
    ("images", "(b) equal images back-propagated: test acc (pp)"),
    ("seconds", "(c) equal all-in seconds: test acc (pp)"),
    ("saved", "(d) all-in seconds saved, equal epochs (s)"),
]


@dataclass(frozen=True)
class ClaimSpec:
    number: str
    text: str
    baseline: str
    primary: str  # a key of MEASUREMENTS


CLAIMS = [
    ClaimSpec("1", "SALN reaches higher accuracy than standard training", "standard", "epochs"),
    ClaimSpec("2", "SALN trains faster than standard training (more accurate for the same all-in seconds)",
              "standard", "seconds"),
    ClaimSpec("3", "SALN beats JEST: higher accuracy", "jest", "epochs"),
    ClaimSpec("3", "SALN beats JEST: shorter training (more accurate for the same all-in seconds)", "jest",
              "seconds"),
    ClaimSpec("control", "SALN's choice beats a random subset of the same size (isolates selection)", "random",
              "images"),
]
RULE = (
    "Each cell is the mean per-seed difference SALN minus the baseline (same seed: same initialisation and "
    "batch order), with its 95% Student-t interval over seeds (n - 1 degrees of freedom); *win* or *loss* "
    "only when the interval excludes 0, else *tie*. Each claim is judged on one **primary** measurement; the "
    "table's other cells are secondary, Holm-corrected together at family-wise 5% (with few seeds they "
    "rarely reach significance: expected). (b) and (c) read measured points only: (b) the largest point of "
    "the shared evaluation grid at or below the smaller final budget; (c) each seed's last measured point "
    "at or before the smaller final all-in seconds. At (b) and (c) each method runs at its best rate for "
    "that budget, chosen on validation accuracy there: a rate tuned to the budget (constant rate, no "
    "schedule), not a schedule completed within it. Runs that did not train are never read.")
SPEED_NOTE = ("All-in seconds: training seconds (evaluation excluded; selection scoring included) plus the "
              "one-off work the method needs (feature extraction; the reference model's training and "
              "scoring), amortised over the runs that share it.")
DID_NOT_TRAIN = "did not train"


# ---------------------------------------------------------------------------------------------
# The runs of one dataset


@dataclass
class RateRuns:
    """One method's finished runs at one rate: seed -> metrics (with "dir"), seed -> history."""

    runs: dict[int, dict]
    histories: dict[int, History]
    trained: bool


@dataclass
class MethodRuns:
    rates: dict[float, RateRuns]
    best_lr: float | None  # stage best_lr's pick (final validation accuracy)
    one_off: float = 0.0  # amortised one-off seconds added to every point's training seconds

    def eligible(self) -> dict[float, RateRuns]:
        return {lr: r for lr, r in self.rates.items() if r.trained and r.runs}

    @property
    def rate(self) -> float | None:
        """The best rate on final validation accuracy (mean over seeds) among the rates whose runs
        trained; equal means go to the smaller rate. Stage best_lr's pick may be a rate whose runs
        did not train (a high accuracy with a loss above ln(classes)): verdicts never read those."""
        scored = [(sum(r["val_acc"] for r in rate.runs.values()) / len(rate.runs), -lr)
                  for lr, rate in self.eligible().items()]
        return -max(scored)[1] if scored else None


@dataclass(frozen=True)
class Chance:
    """What an untrained classifier scores on the validation split."""

    num_classes: int
    majority: float  # share of the validation split's most common class
    n_val: int

    def trained(self, run: dict) -> bool:
        """Final validation loss below ln(classes), and accuracy above the majority-class rate by more
        than two binomial standard errors."""
        se = math.sqrt(self.majority * (1 - self.majority) / max(self.n_val, 1))
        return run["val_loss"] < math.log(self.num_classes) and run["val_acc"] > self.majority + 2 * se


def did_not_train_rule(chance: Chance) -> str:
    return (f"a run *did not train* when its final validation loss is at or above ln({chance.num_classes}) = "
            f"{math.log(chance.num_classes):.3f} or its validation accuracy is within two binomial standard "
            f"errors of the majority-class rate {100 * chance.majority:.1f}% (n = {chance.n_val})")


# ---------------------------------------------------------------------------------------------
# Measurements


@dataclass(frozen=True)
class Cell:
    key: str
    text: str
    result: Paired | None = None  # None: not measured (the text says why)
    outcome: str | None = None  # after the primary / Holm rule


def _per_seed(rate: RateRuns, value) -> dict[int, float]:
    return {seed: value(run, rate.histories[seed]) for seed, run in rate.runs.items()}


def _rate_text(lr_a: float, lr_b: float, baseline: str) -> str:
    return f"lr {lr_a:g} vs {lr_b:g}"


def _no_rate(a: MethodRuns, b: MethodRuns, baseline: str) -> str | None:
    for name, m in ((METHOD, a), (baseline, b)):
        if not m.eligible():
            return f"`{name}` {DID_NOT_TRAIN} at any rate: no verdict"
    return None


def at_epochs(a: MethodRuns, b: MethodRuns, baseline: str, key: str) -> Cell:
    """(a) final test accuracy or (d) all-in seconds saved, each at its best rate on validation."""
    if why := _no_rate(a, b, baseline):
        return Cell(key, why)
    ra, rb = (m.eligible()[m.rate] for m in (a, b))
    if key == "epochs":
        result = paired(*(_per_seed(r, lambda run, h: 100 * run["test_acc"]) for r in (ra, rb)))
        unit = "pp"
    else:  # seconds saved: baseline minus method
        result = paired(_per_seed(rb, lambda run, h: run["train_seconds"] + b.one_off),
                        _per_seed(ra, lambda run, h: run["train_seconds"] + a.one_off))
        unit = "s"
    if result is None:
        return Cell(key, "no seed in common")
    return Cell(key, f"{result.format(unit)}; {_rate_text(a.rate, b.rate, baseline)}", result)


def _points(history: History, x_name: str, offset: float = 0.0) -> list[tuple[float, float, float]]:
    """(x, val_acc, test_acc) at every measured row, x ascending."""
    x, val = history.series(x_name, "val_acc")
    x2, test = history.series(x_name, "test_acc")
    if len(x) != len(x2):
        return []
    return [(float(xi) + offset, float(v), float(t)) for xi, v, t in zip(x, val, test)]


def _read(points: list[tuple[float, float, float]], budget: float, exact: bool) -> tuple[float, float] | None:
    """(val, test) at ``budget``: the point exactly there (images) or the last at or before it (seconds)."""
    eps = 1e-9 * max(1.0, abs(budget))
    found = [p for p in points if (abs(p[0] - budget) <= eps if exact else p[0] <= budget + eps)]
    return (found[-1][1], found[-1][2]) if found else None


def _best_at(m: MethodRuns, x_name: str, budget: float, exact: bool, offset: float):
    """(rate, seed -> test acc) of the rate with the best mean validation accuracy at ``budget``."""
    best = None
    for lr, rate in sorted(m.eligible().items()):
        read = {s: _read(_points(h, x_name, offset), budget, exact) for s, h in rate.histories.items()}
        if any(v is None for v in read.values()):
            continue
        mean_val = sum(v[0] for v in read.values()) / len(read)
        if best is None or mean_val > best[0]:
            best = (mean_val, lr, {s: 100 * v[1] for s, v in read.items()})
    return None if best is None else (best[1], best[2])


def _finals(m: MethodRuns, x_name: str, offset: float) -> list[float]:
    return [pts[-1][0] for r in m.eligible().values() for h in r.histories.values()
            if (pts := _points(h, x_name, offset))]


def image_budget(a: MethodRuns, b: MethodRuns) -> float | None:
    """The largest point every eligible run of both methods measured, at or below the smaller final budget."""
    finals = _finals(a, "images_backprop", 0) + _finals(b, "images_backprop", 0)
    shared = None
    for m in (a, b):
        for rate in m.eligible().values():
            for h in rate.histories.values():
                xs = {p[0] for p in _points(h, "images_backprop")}
                shared = xs if shared is None else shared & xs
    candidates = [x for x in shared or () if finals and x <= min(finals)]
    return max(candidates) if candidates else None


def at_images(a: MethodRuns, b: MethodRuns, baseline: str) -> Cell:
    if why := _no_rate(a, b, baseline):
        return Cell("images", why)
    budget = image_budget(a, b)
    if budget is None or budget == 0:
        return Cell("images", "no grid point both methods measured")
    picks = [_best_at(m, "images_backprop", budget, True, 0.0) for m in (a, b)]
    if None in picks:
        return Cell("images", f"no rate measured {budget:g} images in every seed")
    result = paired(picks[0][1], picks[1][1])
    smaller = min(_finals(a, "images_backprop", 0) + _finals(b, "images_backprop", 0))
    where = f"at {budget:g} images" + ("" if budget == smaller else f" (grid point below the final {smaller:g})")
    return Cell("images", f"{result.format('pp')}; {where}; {_rate_text(picks[0][0], picks[1][0], baseline)}",
                result)


def at_seconds(a: MethodRuns, b: MethodRuns, baseline: str) -> Cell:
    if why := _no_rate(a, b, baseline):
        return Cell("seconds", why)
    finals = [min(_finals(m, "train_seconds", m.one_off)) for m in (a, b)]
    budget = min(finals)
    picks = [_best_at(m, "train_seconds", budget, False, m.one_off) for m in (a, b)]
    for name, m, pick in ((METHOD, a, picks[0]), (baseline, b, picks[1])):
        if pick is None:
            return Cell("seconds", f"`{name}` has no measured point by {budget:.3g} s "
                                   f"(its one-off work alone takes {m.one_off:.3g} s): no verdict")
    result = paired(picks[0][1], picks[1][1])
    return Cell("seconds", f"{result.format('pp')}; at {budget:.3g} s all-in, each seed's last point at or "
                           f"before it; {_rate_text(picks[0][0], picks[1][0], baseline)}", result)


# ---------------------------------------------------------------------------------------------
# The table: measurements per pair, claims on their primaries, Holm over the rest


@dataclass
class PairRow:
    baseline: str
    cells: list[Cell]


@dataclass
class ClaimRow:
    spec: ClaimSpec
    primary: Cell | None
    secondary: list[tuple[str, Cell]] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        if self.primary is None or self.primary.result is None:
            return "not tested"
        return {WIN: "supported", LOSS: "contradicted", TIE: "not shown (interval spans 0)"}[self.primary.outcome]


def pair_rows(groups: dict[str, MethodRuns]) -> list[PairRow]:
    rows = []
    for baseline in PAIRS:
        if METHOD not in groups or baseline not in groups:
            missing = METHOD if METHOD not in groups else baseline
            rows.append(PairRow(baseline, [Cell(k, f"`{missing}` has no finished run") for k, _ in MEASUREMENTS]))
            continue
        a, b = groups[METHOD], groups[baseline]
        rows.append(PairRow(baseline, [at_epochs(a, b, baseline, "epochs"), at_images(a, b, baseline),
                                       at_seconds(a, b, baseline), at_epochs(a, b, baseline, "saved")]))
    return _judge(rows)


def _judge(rows: list[PairRow]) -> list[PairRow]:
    """Primary cells keep their interval's verdict; the others are Holm-corrected together."""
    primaries = {(c.baseline, c.primary) for c in CLAIMS}
    secondary = [(r, i) for r, row in enumerate(rows) for i, cell in enumerate(row.cells)
                 if (row.baseline, cell.key) not in primaries and cell.result is not None]
    rejected = holm([rows[r].cells[i].result.p for r, i in secondary])
    for (r, i), rej in zip(secondary, rejected):
        cell = rows[r].cells[i]
        rows[r].cells[i] = Cell(cell.key, cell.text, cell.result, holm_outcome(cell.result, rej))
    for row in rows:
        row.cells = [Cell(c.key, c.text, c.result, c.result.outcome) if c.result is not None and c.outcome is None
                     and (row.baseline, c.key) in primaries else c for c in row.cells]
    return rows


def claim_rows(pairs: list[PairRow]) -> list[ClaimRow]:
    by_baseline = {row.baseline: row for row in pairs}
    out = []
    for spec in CLAIMS:
        row = by_baseline.get(spec.baseline)
        cells = {c.key: c for c in row.cells} if row else {}
        out.append(ClaimRow(spec, cells.get(spec.primary),
                            [(k, c) for k, c in cells.items() if k != spec.primary]))
    return out


def _cell_text(cell: Cell, primary: bool) -> str:
    if cell.result is None:
        return cell.text
    tag = "primary" if primary else "Holm"
    return f"{cell.text} → **{cell.outcome}** ({tag})"


def pairs_markdown(rows: list[PairRow]) -> str:
    primaries = {(c.baseline, c.primary) for c in CLAIMS}
    body = [[f"{METHOD} vs {row.baseline}"] + [_cell_text(c, (row.baseline, c.key) in primaries)
                                               for c in row.cells] for row in rows]
    return markdown_table(["comparison"] + [h for _, h in MEASUREMENTS], body)


def _primary_of(baseline: str, key: str) -> str:
    """' (claim N's primary)' when this cell is another claim's primary (not Holm-corrected)."""
    owner = next((c for c in CLAIMS if (c.baseline, c.primary) == (baseline, key)), None)
    return "" if owner is None else f" (claim {owner.number}'s primary)"


def claims_markdown(rows: list[ClaimRow]) -> str:
    names = dict(MEASUREMENTS)
    body = []
    for r in rows:
        primary = r.primary.text if r.primary else "not measured"
        others = "; ".join(f"{c.outcome or 'not measured'} at {k}{_primary_of(r.spec.baseline, k)}"
                           for k, c in r.secondary)
        body.append([f"{r.spec.number}. {r.spec.text}", f"{METHOD} vs {r.spec.baseline}",
                     f"{names[r.spec.primary]}: {primary}", f"**{r.verdict}**", others or "—"])
    return markdown_table(["claim", "comparison", "primary measurement", "verdict",
                           "secondary (each measured once; Holm)"], body)
