"""The paper's claims, each with a verdict at (a) equal epochs, (b) equal images back-propagated and
(c) equal training seconds, against the paper's baseline and against the random control."""

from __future__ import annotations

from dataclasses import dataclass

from saln.report.budget import COSTS, AtBudget, at_budget
from saln.report.compare import LOSS, TIE, WIN, diff_se, two_se
from saln.report.history import History, read_history
from saln.report.markdown import markdown_table
from saln.report.runs import Stat, stat

METHOD, CONTROL = "saln", "random"
BUDGETS = [  # (cost, column header, short name)
    ("epoch", "(a) equal epochs (final epoch)", "equal epochs"),
    ("images_backprop", "(b) equal images back-propagated", "equal images"),
    ("train_seconds", "(c) equal training seconds", "equal seconds"),
]
RULE = ("A difference counts when it exceeds two standard errors of the difference of the means over seeds "
        "(SE = √(s²ₐ/nₐ + s²ᵦ/nᵦ), sample std s); otherwise the cell reads *tie (within 2 SE)*. With one seed "
        "per method there is no spread and the rule reduces to the sign. (a) compares the runs' final "
        "epoch (the stated policy: every method trains train.epochs epochs). (b) and (c): for a pair, the "
        "budget is the smaller of the two methods' final cost (each method's smallest final over its seeds, "
        "so no seed is extrapolated); each seed's per-epoch accuracy curve is interpolated linearly in cost "
        "at that budget, then averaged over seeds. A claim holding at one budget and failing at another "
        "reads *mixed*.")


@dataclass(frozen=True)
class ClaimSpec:
    number: int
    text: str
    quantity: str     # accuracy | speed
    baseline: str


CLAIMS = [
    ClaimSpec(1, "SALN reaches higher accuracy than standard training", "accuracy", "standard"),
    ClaimSpec(2, "SALN trains faster than standard training", "speed", "standard"),
    ClaimSpec(3, "SALN beats JEST: higher accuracy", "accuracy", "jest"),
    ClaimSpec(3, "SALN beats JEST: shorter training", "speed", "jest"),
]
SPEED_NOTE = ("Speed: (a) training seconds saved for the same epochs; (b) seconds saved at the same number of "
              "images back-propagated (the selection's scoring is paid here); (c) at equal seconds, faster "
              "means more accurate in the same time (accuracy gain at the seconds budget, as claim 1 (c)).")


@dataclass(frozen=True)
class Group:
    """One method's finished runs on one dataset (metrics.json + dir) and their per-epoch histories."""

    runs: list[dict]
    histories: list[History]


def group_runs(runs: list[dict]) -> dict[str, Group]:
    """method -> Group, for runs of one dataset."""
    by_method: dict[str, list[dict]] = {}
    for run in runs:
        by_method.setdefault(run["method"], []).append(run)
    return {m: Group(rs, [read_history(r["dir"]) for r in rs]) for m, rs in by_method.items()}


def accuracy_metric(groups: dict[str, Group]) -> str:
    """test_acc when every run logged it per epoch, else val_acc (runs from before the change)."""
    histories = [h for g in groups.values() for h in g.histories]
    has_test = histories and all(len(h.series("epoch", "test_acc")[0]) for h in histories)
    return "test_acc" if has_test else "val_acc"


def data_notes(groups: dict[str, Group]) -> list[str]:
    """What the curves allow: which accuracy (b) and (c) read, and whether the epoch-0 row is there."""
    histories = [h for g in groups.values() for h in g.histories]
    notes = []
    if accuracy_metric(groups) == "val_acc":
        notes.append("(b) and (c) read validation accuracy: these runs did not log test accuracy per epoch "
                     "((a) uses the final test accuracy).")
    if any(not h.has_start for h in histories):
        notes.append("Some runs lack the epoch-0 row (the model before training; logged by runs since the "
                     "change): a budget below such a run's first epoch cannot be read and that seed is "
                     "left out, as the cell says.")
    return notes


@dataclass(frozen=True)
class Cell:
    text: str
    outcome: str | None    # WIN | LOSS | TIE; None: not measured (the text says why)


def _cell(diff: float, se: float, unit: str, n: tuple[int, int], detail: str = "") -> Cell:
    diff, outcome = diff + 0.0, two_se(diff, se)   # + 0.0: no '-0.00'
    spread = "; 1 seed: no spread" if min(n) == 1 else ""
    return Cell(f"{diff:+.2f} ± {se:.2f} {unit} (n={n[0]} vs {n[1]}){detail}{spread} → **{outcome}**", outcome)


def _final(group: Group, key: str, scale: float = 1.0) -> Stat:
    return stat([scale * r[key] for r in group.runs if isinstance(r.get(key), (int, float))])


def _epochs_detail(a: Group, b: Group) -> str:
    ea, eb = ({r.get("epochs") for r in g.runs} for g in (a, b))
    return "" if ea == eb else f"; epochs differ: {sorted(ea)} vs {sorted(eb)}"


def _budget_detail(r: AtBudget) -> str:
    left = f"; seeds left out (no point at or below the budget): {r.left_out[0]} vs {r.left_out[1]}" \
        if any(r.left_out) else ""
    return f" at {r.budget:.4g} {COSTS[r.cost]}{left}"


def measure(a: Group, b: Group, quantity: str, cost: str, metric: str) -> Cell:
    """One cell: ``a`` (the method) against ``b`` (the baseline) at one budget."""
    if cost == "epoch" and quantity == "accuracy":
        sa, sb = _final(a, "test_acc", 100), _final(b, "test_acc", 100)
        return _cell(sa.mean - sb.mean, diff_se(sa, sb), "pp test acc", (sa.n, sb.n), _epochs_detail(a, b))
    if cost == "epoch":  # speed: seconds saved for the same epochs
        sa, sb = _final(a, "train_seconds"), _final(b, "train_seconds")
        ratio = sb.mean / sa.mean if sa.mean else float("nan")
        return _cell(sb.mean - sa.mean, diff_se(sa, sb), "s saved", (sa.n, sb.n),
                     f", {ratio:.2f}× the baseline's speed{_epochs_detail(a, b)}")
    if quantity == "speed" and cost == "images_backprop":
        r = at_budget(a.histories, b.histories, cost, "train_seconds")
        if isinstance(r, str):
            return Cell(r, None)
        return _cell(-r.diff, r.se, "s saved", (r.a.n, r.b.n), _budget_detail(r))
    r = at_budget(a.histories, b.histories, cost, metric)
    if isinstance(r, str):
        return Cell(r, None)
    label = "test acc" if metric == "test_acc" else "val acc"
    return _cell(100 * r.diff, 100 * r.se, f"pp {label}", (r.a.n, r.b.n), _budget_detail(r))


@dataclass(frozen=True)
class ClaimRow:
    spec: ClaimSpec
    baseline: str
    cells: list[Cell]     # one per BUDGETS entry

    @property
    def verdict(self) -> str:
        return overall(self.cells)


def overall(cells: list[Cell]) -> str:
    """supported / contradicted / tie (within 2 SE) when every measured budget agrees, else mixed."""
    measured = [(short, c.outcome) for (_, _, short), c in zip(BUDGETS, cells) if c.outcome]
    if not measured:
        return "not tested"
    outcomes = {o for _, o in measured}
    if outcomes == {WIN}:
        verdict = "supported"
    elif outcomes == {LOSS}:
        verdict = "contradicted"
    elif outcomes == {TIE}:
        verdict = TIE
    else:
        verdict = "mixed: " + "; ".join(f"{o} at {short}" for short, o in measured)
    missing = [short for (_, _, short), c in zip(BUDGETS, cells) if not c.outcome]
    return verdict + (f" (not measured at {', '.join(missing)})" if missing else "")


def _not_run(method: str) -> list[Cell]:
    return [Cell(f"`{method}` has no finished run (add it to train.methods)", None)] * len(BUDGETS)


def claim_rows(groups: dict[str, Group]) -> list[ClaimRow]:
    """Each claim against its baseline and against the random control (a control row once per quantity)."""
    metric, rows, done = accuracy_metric(groups), [], set()
    for spec in CLAIMS:
        for baseline in (spec.baseline, CONTROL):
            if (spec.quantity, baseline) in done:
                continue
            done.add((spec.quantity, baseline))
            missing = next((m for m in (METHOD, baseline) if m not in groups), None)
            cells = _not_run(missing) if missing else [
                measure(groups[METHOD], groups[baseline], spec.quantity, cost, metric) for cost, _, _ in BUDGETS]
            rows.append(ClaimRow(spec, baseline, cells))
    return rows


def claims_markdown(rows: list[ClaimRow]) -> str:
    header = ["claim (paper)", "comparison"] + [h for _, h, _ in BUDGETS] + ["verdict"]
    body = [[f"{r.spec.number}. {r.spec.text}",
             f"{METHOD} vs {r.baseline}" + (" (control)" if r.baseline == CONTROL else "")]
            + [c.text for c in r.cells] + [f"**{r.verdict}**"] for r in rows]
    return markdown_table(header, body)
