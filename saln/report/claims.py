"""The paper's claims, each judged on one primary measurement, with every other measurement of the
same pair as a Holm-corrected secondary.

Every measurement compares SALN with a baseline seed by seed (``stats.paired``: 95% Student-t
interval) and reads only **completed runs**: a run whose schedule ended with its own budget
(``train.budget_fractions``: one run per share of the budget, saln/schedule.py), never a point in
the middle of a longer run. Each method is read at its best rate on validation *for that budget*,
among the rates whose runs trained. The measurements:

* (a) equal images back-propagated: the pair of completed runs, one per method, whose images agree
  within one step (the largest such pair); under ``train.budget: images`` the full budgets;
* (b) equal epochs, the paper's own reading: the pair whose passes over the training split agree
  within one step (a selector budgeted for keep / B of standard's images under ``images``);
* (c) equal all-in seconds: the pair whose mean all-in seconds (training plus the one-off work the
  method needs, amortised) differ by at most ``SECONDS_TOLERANCE`` of the smaller (the largest such
  pair); otherwise the cell is *not resolved by these budgets* and names the closest pair;
* (d) all-in seconds saved at equal epochs (the pair of (b)).

Test accuracy is compared; validation accuracy only chooses rates. A rate whose runs did not train
(``Chance.trained``) is never read, and a method with no such rate gets no verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from saln.report.history import History
from saln.report.markdown import markdown_table
from saln.report.stats import LOSS, TIE, WIN, Paired, holm, holm_outcome, paired

METHOD = "saln"
PAIRS = ("standard", "random", "jest")  # SALN against each
FULL = 1.0  # the full budget's fraction
SECONDS_TOLERANCE = 0.10  # two runs compared at equal all-in seconds differ by at most this share
MEASUREMENTS = [  # (key, column header)
    ("images", "(a) equal images back-propagated: test acc (pp)"),
    ("epochs", "(b) equal epochs (the paper's reading): test acc (pp)"),
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
    ClaimSpec("1", "SALN reaches higher accuracy than standard training", "standard", "images"),
    ClaimSpec("2", "SALN trains faster than standard training (more accurate for the same all-in seconds)",
              "standard", "seconds"),
    ClaimSpec("3", "SALN beats JEST: higher accuracy", "jest", "images"),
    ClaimSpec("3", "SALN beats JEST: shorter training (more accurate for the same all-in seconds)", "jest",
              "seconds"),
    ClaimSpec("control", "SALN's choice beats a random subset of the same size (isolates selection)", "random",
              "images"),
]
RULE = (
    "Each cell is the mean per-seed difference SALN minus the baseline (same seed: same initialisation, "
    "batch order and augmentation of each image), with its 95% Student-t interval over seeds (n - 1 degrees "
    "of freedom); *win* or *loss* only when the interval excludes 0, else *tie*. Each claim is judged on one "
    "**primary** measurement; the table's other cells are secondary, Holm-corrected together at family-wise "
    "5% (with few seeds they rarely reach significance: expected). Every cell reads **completed runs**: one "
    "run per share of the budget (`train.budget_fractions`), each with its rate schedule ending at its own "
    "last step, never a point in the middle of a longer run. (a) pairs the runs whose images "
    "back-propagated agree within one step, (b) those whose passes over the data agree within one step, "
    f"(c) those whose mean all-in seconds differ by at most {SECONDS_TOLERANCE:.0%} of the smaller (else "
    "*not resolved by these budgets*); each at the largest such budget. Each method runs at its best rate "
    "for that budget, chosen on validation accuracy. Runs that did not train are never read.")
SPEED_NOTE = ("All-in seconds: training seconds (evaluation excluded; selection scoring included) plus the "
              "one-off work the method needs (feature extraction; the reference model's training and "
              "scoring), amortised over the runs that share it.")
DID_NOT_TRAIN = "did not train"
NOT_RESOLVED = "not resolved by these budgets"
SAME_RUNS = "the same completed runs as"


# ---------------------------------------------------------------------------------------------
# The runs of one dataset


@dataclass
class RateRuns:
    """One method's finished runs at one (rate, budget): seed -> metrics (with "dir"), seed -> history."""

    runs: dict[int, dict]
    histories: dict[int, History]
    trained: bool


def passes_of(run: dict) -> float:
    """Passes over the run's training split (steps / batches per pass)."""
    if "passes" in run:
        return float(run["passes"])
    return run["steps"] / max(run["train_images"] // run["batch_size"], 1)


@dataclass(frozen=True)
class Completed:
    """One method's completed runs at one budget, at its best rate for that budget."""

    fraction: float
    lr: float
    rate: RateRuns
    one_off: float  # amortised one-off seconds added to each run's training seconds

    def per_seed(self, key: str, scale: float = 1.0) -> dict[int, float]:
        return {seed: scale * float(run[key]) for seed, run in self.rate.runs.items()}

    def all_in(self) -> dict[int, float]:
        return {seed: run["train_seconds"] + self.one_off for seed, run in self.rate.runs.items()}

    @staticmethod
    def _mean(values: dict[int, float]) -> float:
        return sum(values.values()) / len(values)

    @property
    def images(self) -> float:
        return self._mean(self.per_seed("images_backprop"))

    @property
    def seconds(self) -> float:
        return self._mean(self.all_in())

    @property
    def passes(self) -> float:
        return self._mean({s: passes_of(r) for s, r in self.rate.runs.items()})

    @property
    def step_images(self) -> float:
        """Images one step back-propagates (the tolerance of equal images)."""
        return max(float(r["keep_per_batch"]) for r in self.rate.runs.values())

    @property
    def step_passes(self) -> float:
        """The share of a pass one step makes (the tolerance of equal epochs)."""
        return max(passes_of(r) / max(r["steps"], 1) for r in self.rate.runs.values())

    def label(self, method: str) -> str:
        return (f"`{method}` budget {self.fraction:g} (lr {self.lr:g}; {self.images:,.0f} img, "
                f"{self.passes:.3g} passes, {self.seconds:.3g} s)")


@dataclass
class MethodRuns:
    """One method's runs: ``rates`` at the full budget and ``fractions`` (share -> rate -> runs) at the
    smaller budgets of ``train.budget_fractions``."""

    rates: dict[float, RateRuns]
    best_lr: float | None  # stage best_lr's pick (final validation accuracy, full budget)
    one_off: float = 0.0  # amortised one-off seconds added to every run's training seconds
    fractions: dict[float, dict[float, RateRuns]] = field(default_factory=dict)

    def at(self, fraction: float) -> dict[float, RateRuns]:
        return self.rates if fraction == FULL else self.fractions.get(fraction, {})

    def budgets(self) -> list[float]:
        return sorted({*self.fractions, FULL})

    def eligible(self, fraction: float = FULL) -> dict[float, RateRuns]:
        return {lr: r for lr, r in self.at(fraction).items() if r.trained and r.runs}

    def rate_at(self, fraction: float) -> float | None:
        """The best rate for a budget on final validation accuracy (mean over seeds) among the rates whose
        runs trained; equal means go to the smaller rate. Stage best_lr's pick may be a rate whose runs
        did not train (a high accuracy with a loss above ln(classes)): verdicts never read those."""
        scored = [(sum(r["val_acc"] for r in rate.runs.values()) / len(rate.runs), -lr)
                  for lr, rate in self.eligible(fraction).items()]
        return -max(scored)[1] if scored else None

    @property
    def rate(self) -> float | None:
        return self.rate_at(FULL)

    def completed(self, fraction: float) -> Completed | None:
        lr = self.rate_at(fraction)
        return None if lr is None else Completed(fraction, lr, self.at(fraction)[lr], self.one_off)

    def all_completed(self) -> list[Completed]:
        return [c for f in self.budgets() if (c := self.completed(f)) is not None]


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
# Measurements on completed runs


@dataclass(frozen=True)
class Cell:
    key: str
    text: str
    result: Paired | None = None  # None: not measured (the text says why)
    outcome: str | None = None  # after the primary / Holm rule
    runs: tuple | None = None  # (budget, rate) of each side's completed runs read


def _no_rate(a: MethodRuns, b: MethodRuns, baseline: str) -> str | None:
    for name, m in ((METHOD, a), (baseline, b)):
        if not m.all_completed():
            return f"`{name}` {DID_NOT_TRAIN} at any rate: no verdict"
    return None


def _agree(ca: Completed, cb: Completed, key: str) -> bool:
    """The two budgets are equal in ``key``: images or passes within one step, seconds within the tolerance."""
    if key == "images":
        return abs(ca.images - cb.images) <= max(ca.step_images, cb.step_images) + 1e-9
    if key == "epochs":
        return abs(ca.passes - cb.passes) <= max(ca.step_passes, cb.step_passes) + 1e-9
    return seconds_gap(ca, cb) <= SECONDS_TOLERANCE + 1e-12


def seconds_gap(ca: Completed, cb: Completed) -> float:
    """How far apart two runs' all-in seconds are, as a share of the smaller."""
    return abs(ca.seconds - cb.seconds) / max(min(ca.seconds, cb.seconds), 1e-12)


def _size(pair: tuple[Completed, Completed], key: str) -> tuple:
    ca, cb = pair
    value = {"images": ca.images + cb.images, "epochs": ca.passes + cb.passes}.get(key, ca.seconds + cb.seconds)
    return value, ca.fraction, cb.fraction


def matched(a: MethodRuns, b: MethodRuns, key: str) -> tuple[Completed, Completed] | None:
    """The largest pair of completed budgets, one per method, equal in ``key`` (images, epochs, seconds)."""
    pairs = [(ca, cb) for ca in a.all_completed() for cb in b.all_completed() if _agree(ca, cb, key)]
    return max(pairs, key=lambda p: _size(p, key)) if pairs else None


NOUNS = {"images": "images back-propagated", "epochs": "passes over the data"}


def at_equal(a: MethodRuns, b: MethodRuns, baseline: str, key: str) -> Cell:
    """(a) equal images or (b) equal epochs: final test accuracy of the two completed runs."""
    if why := _no_rate(a, b, baseline):
        return Cell(key, why)
    pair = matched(a, b, key)
    if pair is None:
        return Cell(key, f"no pair of completed runs that trained has equal {NOUNS[key]} (within one step; "
                         "the share keep / B of train.budget_fractions gives one, when its runs train)")
    return _accuracy_cell(key, *pair, baseline)


def _accuracy_cell(key: str, ca: Completed, cb: Completed, baseline: str) -> Cell:
    result = paired(ca.per_seed("test_acc", 100), cb.per_seed("test_acc", 100))
    if result is None:
        return Cell(key, "no seed in common")
    return Cell(key, f"{result.format('pp')}; {ca.label(METHOD)} vs {cb.label(baseline)}", result,
                runs=(ca.fraction, ca.lr, cb.fraction, cb.lr))


def at_seconds(a: MethodRuns, b: MethodRuns, baseline: str) -> Cell:
    """(c) final test accuracy of two completed runs whose all-in seconds agree within the tolerance."""
    if why := _no_rate(a, b, baseline):
        return Cell("seconds", why)
    pair = matched(a, b, "seconds")
    if pair is None:
        ca, cb = min(((ca, cb) for ca in a.all_completed() for cb in b.all_completed()),
                     key=lambda p: seconds_gap(*p))
        return Cell("seconds", f"{NOT_RESOLVED}: the closest completed runs, {ca.label(METHOD)} and "
                               f"{cb.label(baseline)}, are {seconds_gap(ca, cb):.0%} apart "
                               f"(at most {SECONDS_TOLERANCE:.0%} is read)")
    return _accuracy_cell("seconds", *pair, baseline)


def seconds_saved(a: MethodRuns, b: MethodRuns, baseline: str) -> Cell:
    """(d) the baseline's all-in seconds minus SALN's, at equal epochs."""
    if why := _no_rate(a, b, baseline):
        return Cell("saved", why)
    pair = matched(a, b, "epochs")
    if pair is None:
        return Cell("saved", "no pair of completed runs that trained has equal passes over the data")
    ca, cb = pair
    result = paired(cb.all_in(), ca.all_in())
    if result is None:
        return Cell("saved", "no seed in common")
    return Cell("saved", f"{result.format('s')}; budgets {ca.fraction:g} vs {cb.fraction:g}", result)


def measure(a: MethodRuns, b: MethodRuns, baseline: str) -> list[Cell]:
    """Every measurement of SALN against ``baseline``, in MEASUREMENTS' order. A secondary accuracy cell
    that reads the same completed runs as an earlier cell is that cell's test, not another one: it
    points there and is left out of Holm's family."""
    cells = [at_equal(a, b, baseline, "images"), at_equal(a, b, baseline, "epochs"), at_seconds(a, b, baseline),
             seconds_saved(a, b, baseline)]
    primaries = {c.primary for c in CLAIMS if c.baseline == baseline}
    names = dict(MEASUREMENTS)
    for i, cell in enumerate(cells):
        earlier = next((c for c in cells[:i] if cell.runs is not None and c.runs == cell.runs), None)
        if earlier is not None and cell.key not in primaries:
            cells[i] = Cell(cell.key, f"{SAME_RUNS} {names[earlier.key].split(':')[0]}: one test, read there",
                            runs=cell.runs)
    return cells


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
        rows.append(PairRow(baseline, measure(groups[METHOD], groups[baseline], baseline)))
    return _judge(rows)


def _judge(rows: list[PairRow]) -> list[PairRow]:
    """Primary cells keep their interval's verdict; the others are Holm-corrected together."""
    primaries = {(c.baseline, c.primary) for c in CLAIMS}
    secondary = [(r, i) for r, row in enumerate(rows) for i, cell in enumerate(row.cells)
                 if (row.baseline, cell.key) not in primaries and cell.result is not None]
    rejected = holm([rows[r].cells[i].result.p for r, i in secondary])
    for (r, i), rej in zip(secondary, rejected):
        cell = rows[r].cells[i]
        rows[r].cells[i] = replace(cell, outcome=holm_outcome(cell.result, rej))
    for row in rows:
        row.cells = [replace(c, outcome=c.result.outcome) if c.result is not None and c.outcome is None
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


def _short(cell: Cell) -> str:
    if cell.outcome:
        return cell.outcome
    return "same runs as another cell" if cell.text.startswith(SAME_RUNS) else "not measured"


def claims_markdown(rows: list[ClaimRow]) -> str:
    names = dict(MEASUREMENTS)
    body = []
    for r in rows:
        primary = r.primary.text if r.primary else "not measured"
        others = "; ".join(f"{_short(c)} at {k}{_primary_of(r.spec.baseline, k)}"
                           for k, c in r.secondary)
        body.append([f"{r.spec.number}. {r.spec.text}", f"{METHOD} vs {r.spec.baseline}",
                     f"{names[r.spec.primary]}: {primary}", f"**{r.verdict}**", others or "—"])
    return markdown_table(["claim", "comparison", "primary measurement", "verdict",
                           "secondary (each measured once; Holm)"], body)
