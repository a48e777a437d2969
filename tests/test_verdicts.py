"""The report's verdicts on small constructed runs: paired intervals over seeds, Holm's correction, the
shared budget grid, reading measured points only (images, all-in seconds), runs that did not train, the
best rate per budget chosen on validation, time to target, and the whole report on a small results tree."""

import csv
import dataclasses
import json
import math
import shutil

import numpy as np
import pytest
from scipy import stats as scipy_stats

from saln.evaluation import budget_grid
from saln.layout import METRICS_FILE, UNRECALIBRATED, rate_dir, run_dir
from saln.rates import choose_best, record_divergence
from saln.report.build import build_report
from saln.report.claims import (CLAIMS, DID_NOT_TRAIN, NOT_RESOLVED, SAME_RUNS, SECONDS_TOLERANCE, Chance, MethodRuns,
                                RateRuns, at_equal, at_seconds, claim_rows, claims_markdown, pair_rows,
                                pairs_markdown, seconds_gap)
from saln.report.history import read_history
from saln.report.paper import load_paper
from saln.report.runs import load_run
from saln.report.stats import LOSS, TIE, WIN, holm, holm_outcome, paired
from saln.report.verdicts import (Evidence, Inputs, batchnorm_table, chance_of, evidence, flattening_line,
                                  rates_summary, time_to_target, untrained_lines, verdict_lines)
from saln.schedule import run_budget
from tests.test_report import (LR, make_regime, make_roots, write_best, write_models, write_one_offs,
                               write_prepared, write_run)

# A digits-like run: 1149 training images, batches of 64, a selector keeps 12 (filter_ratio 0.8), 3 epochs.
TRAIN_IMAGES, BATCH, KEEP, EPOCHS = 1149, 64, 12, 3
N_BATCHES = TRAIN_IMAGES // BATCH   # 17 steps an epoch
CHANCE = Chance(num_classes=10, majority=0.1, n_val=100)


def trainer_rows(kept, val, test, step_seconds=0.1, val_loss=1.0, epochs=EPOCHS) -> list[dict]:
    """The rows the trainer logs for a method back-propagating ``kept`` images per step: the epoch-0 row,
    each point of the shared budget grid reached inside an epoch (fractional epoch), and every epoch end.
    ``val`` / ``test``: accuracy as a function of images back-propagated."""
    grid = set(budget_grid(TRAIN_IMAGES, BATCH, KEEP, EPOCHS))

    def row(epoch, images, steps):
        return {"epoch": epoch, "val_loss": val_loss if images else 3.0, "val_acc": val(images),
                "test_loss": 1.0, "test_acc": test(images), "train_seconds": step_seconds * steps,
                "selection_seconds": 0.0, "images_backprop": images, "images_scored": 0, "steps": steps}

    rows, images, steps = [row(0, 0, 0)], 0, 0
    for epoch in range(1, epochs + 1):
        for b in range(N_BATCHES):
            images, steps = images + kept, steps + 1
            if images in grid and b + 1 < N_BATCHES:
                rows.append(row(epoch - 1 + (b + 1) / N_BATCHES, images, steps))
        rows.append({**row(epoch, images, steps), "train_loss": 1.0, "train_acc": test(images)})
    return rows


def rate_runs(root, method, rows_by_seed: dict, lr=LR, keep=KEEP, chance=CHANCE) -> RateRuns:
    """Write one rate's runs (seed -> rows) and read them back as the report does."""
    runs, histories = {}, {}
    for seed, rows in rows_by_seed.items():
        d = write_run(root, "digits", method, seed, lr=lr, rows=rows, keep=keep)
        runs[seed], histories[seed] = load_run(d, "digits", method, seed), read_history(d)
    return RateRuns(runs, histories, all(chance.trained(r) for r in runs.values()))


def flat(value):
    """Accuracy that jumps to ``value`` after the first step and stays there."""
    return lambda images: value if images else 0.1


def ramp(start, end, final=612):
    """Accuracy rising linearly from ``start`` (no image back-propagated) to ``end`` at ``final`` images."""
    return lambda images: start + (end - start) * min(images, final) / final


# --- (1) Paired intervals over seeds ---------------------------------------------------------------


def test_paired_interval_is_the_paired_t_interval_over_the_shared_seeds():
    a = {0: 71.0, 1: 74.5, 2: 69.0, 3: 73.0, 7: 50.0}     # seed 7: only A ran it
    b = {0: 70.0, 1: 72.0, 2: 68.5, 3: 70.0, 9: 99.0}     # seed 9: only B
    shared = [0, 1, 2, 3]
    result = paired(a, b)
    reference = scipy_stats.ttest_rel([a[s] for s in shared], [b[s] for s in shared])
    low, high = reference.confidence_interval(0.95)
    assert result.n == 4 and result.mean == pytest.approx(1.75)
    assert (result.low, result.high) == (pytest.approx(low), pytest.approx(high))
    assert result.p == pytest.approx(reference.pvalue)
    # The same by hand: mean ± t(0.975, n - 1) · s / √n over the differences 1, 2.5, 0.5, 3.
    d = np.array([1.0, 2.5, 0.5, 3.0])
    half = scipy_stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    assert result.low == pytest.approx(1.75 - half) and result.high == pytest.approx(1.75 + half)
    # Every seed favours A, but the interval spans 0 with 3 degrees of freedom: a tie, not a win.
    assert result.low < 0 < result.high and result.outcome == TIE
    assert result.format("pp") == f"+1.75 pp [{1.75 - half:+.2f}, {1.75 + half:+.2f}] (n=4)"
    swapped = paired(b, a)
    assert swapped.mean == pytest.approx(-1.75) and swapped.low == pytest.approx(-result.high)


def test_paired_outcomes_follow_the_interval():
    win = paired({0: 3.0, 1: 3.2, 2: 2.9}, {0: 1.0, 1: 1.1, 2: 1.0})
    assert win.low > 0 and win.outcome == WIN
    assert paired({0: 1.0, 1: 1.1, 2: 1.0}, {0: 3.0, 1: 3.2, 2: 2.9}).outcome == LOSS
    same_gain = paired({0: 2.0, 1: 3.0}, {0: 1.0, 1: 2.0})   # identical differences: no spread
    assert (same_gain.low, same_gain.mean, same_gain.high) == (1.0, 1.0, 1.0) and same_gain.outcome == WIN
    one = paired({0: 2.0, 1: 5.0}, {0: 1.0})
    assert one.n == 1 and math.isnan(one.low) and one.outcome == TIE   # one seed: no interval
    assert one.format("pp") == "+1.00 pp (n=1: no interval)"
    assert paired({0: 1.0}, {1: 1.0}) is None


# --- (2) Holm's correction -------------------------------------------------------------------------


def _holm_adjusted(p_values):
    """Holm-adjusted p-values: p_(i) · (m - i + 1), made monotone, capped at 1 (the textbook definition)."""
    order = np.argsort(p_values)
    m = len(p_values)
    adjusted, running = np.empty(m), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def test_holm_on_the_textbook_example():
    # Four hypotheses at family-wise 5%: 0.005 <= 0.05/4 and 0.01 <= 0.05/3 are rejected, then 0.03 > 0.05/2
    # stops the procedure, so 0.04 is kept although it is below 0.05.
    assert holm([0.01, 0.04, 0.03, 0.005]) == [True, False, False, True]
    # Step-down: all three rejected (0.001 <= 0.05/3, 0.019 <= 0.05/2, 0.02 <= 0.05), where Bonferroni's
    # 0.05/3 would keep the last two.
    assert holm([0.001, 0.02, 0.019]) == [True, True, True]
    assert holm([float("nan"), 0.04]) == [False, True]   # a NaN is never rejected and is not counted
    assert holm([]) == []
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = list(rng.uniform(0, 0.08, size=rng.integers(1, 8)))
        assert holm(p) == [bool(x <= 0.05) for x in _holm_adjusted(p)]


def test_secondary_cells_are_holm_corrected_and_primaries_are_not(tmp_path):
    """SALN is 2, 2.5 and 3 pp above every baseline at every budget (seeds 0-2): each measurement alone has
    p ≈ 0.013, below 5%, so the five primaries win. A secondary cell reading the same completed runs as an
    earlier cell is that cell's test (against random and JEST, equal epochs are the equal-images runs), so
    four secondaries remain: standard at equal epochs and the three seconds-saved cells (p = 1). They share
    Holm's correction (0.013 > 0.05 / 4) and stay ties although the first interval excludes 0."""
    gains = {0: 0.02, 1: 0.025, 2: 0.03}
    base = flat(0.5)   # the same at every budget: only the gains differ
    groups = {}
    for method in ("standard", "random", "jest", "saln"):
        groups[method] = budgeted(tmp_path, method, base, lambda s, g=None, m=method: (
            (lambda i: base(i) + gains[s]) if m == "saln" else base), seeds=tuple(gains))
    p = paired({s: g for s, g in gains.items()}, {s: 0.0 for s in gains}).p
    assert 0.05 / 4 < p < 0.05   # significant alone, not after Holm over four
    rows = pair_rows(groups)
    primaries = {(c.baseline, c.primary) for c in CLAIMS}
    assert len(primaries) == 5
    same = {(row.baseline, c.key) for row in rows for c in row.cells if c.text.startswith(SAME_RUNS)}
    assert same == {("random", "epochs"), ("random", "seconds"), ("jest", "epochs")}
    for row in rows:
        for cell in row.cells:
            if (row.baseline, cell.key) in same:
                assert cell.result is None and "(a) equal images back-propagated: one test" in cell.text
                continue
            if cell.key == "saved":   # same seconds: nothing saved, a tie either way
                assert cell.result.mean == pytest.approx(0) and cell.outcome == TIE
                continue
            assert cell.result.p == pytest.approx(p) and cell.result.low > 0, (row.baseline, cell.key, cell.text)
            assert cell.outcome == (WIN if (row.baseline, cell.key) in primaries else TIE), (row.baseline, cell.key)
    claims = claim_rows(rows)
    assert [c.verdict for c in claims] == ["supported"] * 5
    assert "same runs as another cell at epochs" in claims_markdown(claims)
    text = pairs_markdown(rows)
    assert text.count("(primary)") == 5 and text.count("(Holm)") == 4
    assert holm_outcome(rows[0].cells[1].result, rejected=True) == WIN


# --- (3) Budgeted runs: each budget is a completed run ---------------------------------------------


def completed_rows(kept, steps, val, test, step_seconds=0.1, val_loss=1.0) -> list[dict]:
    """What a run budgeted for a share logs: the epoch-0 row and its one evaluation, at its end."""
    images = kept * steps

    def row(epoch, images, steps):
        return {"epoch": epoch, "val_loss": val_loss if images else 3.0, "val_acc": val(images),
                "test_loss": 1.0, "test_acc": test(images), "train_seconds": step_seconds * steps,
                "selection_seconds": 0.0, "images_backprop": images, "images_scored": 0, "steps": steps}
    return [row(0, 0, 0), {**row(steps / N_BATCHES, images, steps), "train_loss": 1.0, "train_acc": test(images)}]


def runs_at(root, method, fraction, rows_by_seed: dict, lr=LR, keep=KEEP, chance=CHANCE) -> RateRuns:
    """Write one (rate, budget fraction)'s runs (seed -> rows) and read them back as the report does."""
    runs, histories = {}, {}
    for seed, rows in rows_by_seed.items():
        d = write_run(root, "digits", method, seed, lr=lr, rows=rows, keep=keep, fraction=fraction)
        runs[seed], histories[seed] = load_run(d, "digits", method, seed), read_history(d)
    return RateRuns(runs, histories, all(chance.trained(r) for r in runs.values()))


def budgeted(root, method, val, test_of, seeds=(0, 1, 2), kind="images", fractions=(0.1875, 1.0), lr=LR,
             step_seconds=0.1, one_off=0.0, val_loss=1.0) -> MethodRuns:
    """A method's completed runs at each budget fraction, with the steps saln.schedule gives them (digits-like:
    17 batches a pass, 3 epochs); ``test_of(seed)`` is the test accuracy as a function of images."""
    keep = BATCH if method == "standard" else KEEP
    at = {}
    for fraction in fractions:
        steps = run_budget(kind, fraction, EPOCHS, N_BATCHES, BATCH, keep).steps
        at[fraction] = {lr: runs_at(root, method, fraction, {
            s: completed_rows(keep, steps, val, test_of(s), step_seconds, val_loss) for s in seeds}, lr, keep)}
    return MethodRuns(at.pop(1.0), lr, one_off, at)


def test_equal_images_and_equal_epochs_pair_completed_runs_within_one_step(tmp_path):
    """Image budget: every method's full run back-propagates 3264 images (standard 51 steps of 64, saln 272
    of 12), so (a) pairs the full runs; saln budgeted for 0.1875 makes 51 steps, standard's 3 passes, so
    (b) pairs it with standard's full run."""
    standard = budgeted(tmp_path, "standard", ramp(0.2, 0.9, 3264), lambda s: lambda i: 0.4 + i / 10000 + 0.01 * s)
    saln = budgeted(tmp_path, "saln", ramp(0.2, 0.9, 3264), lambda s: lambda i: 0.3 + i / 5000 + 0.02 * s)
    images = at_equal(saln, standard, "standard", "images")
    assert images.result.mean == pytest.approx(np.mean([100 * (0.3 + 3264 / 5000 + 0.02 * s
                                                                - 0.4 - 3264 / 10000 - 0.01 * s) for s in (0, 1, 2)]))
    assert "`saln` budget 1 (lr 0.01; 3,264 img, 16 passes" in images.text
    assert "`standard` budget 1 (lr 0.01; 3,264 img, 3 passes" in images.text
    epochs = at_equal(saln, standard, "standard", "epochs")
    assert "`saln` budget 0.1875 (lr 0.01; 612 img, 3 passes" in epochs.text and "`standard` budget 1" in epochs.text
    assert epochs.result.mean == pytest.approx(np.mean([100 * (0.3 + 612 / 5000 + 0.02 * s
                                                                - 0.4 - 3264 / 10000 - 0.01 * s) for s in (0, 1, 2)]))
    # Epoch budget: the full runs are equal epochs; standard budgeted for 0.1875 makes 10 steps (640 images),
    # within one step of saln's 612, so (a) pairs those; read nowhere inside a longer run.
    standard = budgeted(tmp_path / "e", "standard", flat(0.6), lambda s: flat(0.5), kind="epochs")
    saln = budgeted(tmp_path / "e", "saln", flat(0.6), lambda s: flat(0.45), kind="epochs")
    images = at_equal(saln, standard, "standard", "images")
    assert "`saln` budget 1 (lr 0.01; 612 img" in images.text and "`standard` budget 0.1875 (lr 0.01; 640 img" in images.text
    assert "budget 1" in at_equal(saln, standard, "standard", "epochs").text
    # Without the keep / B share there is no pair of completed runs with equal images: no cell.
    standard.fractions, saln.fractions = {}, {}
    cell = at_equal(saln, standard, "standard", "images")
    assert cell.result is None and "no pair of completed runs that trained has equal images" in cell.text


# --- (4) Equal all-in seconds reads two completed runs within 10 % --------------------------------


def test_equal_seconds_reads_completed_runs_within_the_tolerance_or_says_not_resolved(tmp_path):
    # standard's full run: 51 steps of 0.1 s = 5.1 s. saln at 0.1875: 51 steps of 0.095 s = 4.845 s (5% apart):
    # read. Its full run (272 steps, 25.8 s) is far from every standard budget.
    standard = budgeted(tmp_path, "standard", flat(0.7), lambda s: flat(0.70 + 0.01 * s))
    saln = budgeted(tmp_path, "saln", flat(0.6), lambda s: flat(0.60 + 0.02 * s), step_seconds=0.095)
    cell = at_seconds(saln, standard, "standard")
    assert cell.result.mean == pytest.approx(np.mean([100 * (0.01 * s - 0.10) for s in (0, 1, 2)]))
    assert "`saln` budget 0.1875" in cell.text and "`standard` budget 1" in cell.text
    assert SECONDS_TOLERANCE == 0.10
    # One-off work counts: 1 s more for saln puts its 0.1875 run at 5.845 s, 14.6% above standard's 5.1 s.
    late = budgeted(tmp_path / "late", "saln", flat(0.6), lambda s: flat(0.6), step_seconds=0.095, one_off=1.0)
    cell = at_seconds(late, standard, "standard")
    assert cell.result is None and cell.text.startswith(NOT_RESOLVED)
    assert "`saln` budget 0.1875" in cell.text and "`standard` budget 1" in cell.text and "15% apart" in cell.text
    assert seconds_gap(late.completed(0.1875), standard.completed(1.0)) == pytest.approx((5.845 - 5.1) / 5.1)


# --- (5) A run that did not train gets no verdict --------------------------------------------------


def write_tree(roots, rows_of, methods, seeds, lrs, extract=2.0, fractions=(1.0,)):
    """A results tree as the stages leave it: each method's runs at every rate and budget fraction
    (``rows_of(method, seed, lr)``, and ``rows_of(method, seed, lr, fraction)`` below the full budget),
    heads and selections, best.json, prepared data and the one-off costs."""
    for method in methods:
        keep = BATCH if method == "standard" else KEEP
        for seed in seeds:
            for lr in lrs:
                for f in fractions:
                    rows = rows_of(method, seed, lr) if f == 1.0 else rows_of(method, seed, lr, f)
                    write_run(roots.train, "digits", method, seed, lr=lr, rows=rows, keep=keep, fraction=f)
                    write_models(roots.models, "digits", method, seed, lr=lr, keep=keep, fraction=f)
    write_best(roots.train, roots.lr, "digits", methods, seeds, lrs)
    write_prepared(roots.prepared)
    write_one_offs(roots, extract=extract)


def inputs(roots):
    return Inputs(roots.train, roots.lr, roots.prepared, roots.features, roots.reference)


def test_chance_is_read_from_the_validation_split(tmp_path):
    d = tmp_path / "digits"
    d.mkdir()
    np.save(d / "labels.npy", np.array([0, 0, 0, 0, 1, 1, 2, 2, 0, 1]))
    np.savez(d / "splits.npz", train=np.array([8, 9, 5, 7]), val=np.array([0, 1, 2, 3, 4, 6]),
             test=np.array([]), reference=np.array([]))
    assert chance_of(tmp_path, "digits") == Chance(num_classes=3, majority=4 / 6, n_val=6)
    # 10 classes, majority 10%, 100 validation images: trained means loss < ln 10 = 2.3026 and accuracy
    # above 0.1 + 2·√(0.1·0.9/100) = 0.16.
    assert CHANCE.trained({"val_loss": 2.30, "val_acc": 0.17})
    assert not CHANCE.trained({"val_loss": 2.30, "val_acc": 0.16})
    assert not CHANCE.trained({"val_loss": 2.31, "val_acc": 0.90})


def test_a_method_that_did_not_train_at_any_rate_gets_no_verdict(tmp_path):
    roots = make_roots(tmp_path)

    def rows_of(method, seed, lr):   # saln's validation loss ends above ln(10) at both rates
        return trainer_rows(BATCH if method == "standard" else KEEP, ramp(0.2, 0.6), ramp(0.2, 0.6),
                            val_loss=2.5 if method == "saln" else 1.0)
    write_tree(roots, rows_of, ["standard", "saln"], [0, 1], [0.01, 0.1])
    ev = evidence("digits", ["standard", "saln"], [0, 1], [0.01, 0.1], inputs(roots))
    assert ev.chance.n_val == 40 and ev.chance.num_classes == 10
    assert ev.groups["saln"].eligible() == {} and set(ev.groups["standard"].eligible()) == {0.01, 0.1}
    standard_row = next(r for r in ev.pairs if r.baseline == "standard")
    assert [c.text for c in standard_row.cells] == [f"`saln` {DID_NOT_TRAIN} at any rate: no verdict"] * 4
    assert all(c.result is None for row in ev.pairs for c in row.cells)
    assert [c.verdict for c in ev.claims] == ["not tested"] * 5
    assert f"*{DID_NOT_TRAIN}:* `saln` at lr 0.01, `saln` at lr 0.1" in untrained_lines(ev)
    assert f"0.01: 60.0% ({DID_NOT_TRAIN})" in rates_summary(ev)[0]
    assert DID_NOT_TRAIN in claims_markdown(ev.claims)


def test_a_rate_that_did_not_train_is_never_read_even_when_best_on_validation(tmp_path):
    standard = budgeted(tmp_path, "standard", flat(0.9), lambda s: flat(0.4), seeds=(0, 1))
    # Rate 0.1 leads on validation at both budgets, but its final validation loss is 2.5 > ln 10.
    steady = budgeted(tmp_path, "saln", flat(0.6), lambda s: flat(0.6), seeds=(0, 1))
    diverging = budgeted(tmp_path, "saln", flat(0.95), lambda s: flat(0.95), seeds=(0, 1), lr=0.1, val_loss=2.5)
    assert not diverging.rates[0.1].trained and steady.rates[LR].trained
    saln = MethodRuns({**steady.rates, **diverging.rates}, LR, 0.0,
                      {0.1875: {**steady.fractions[0.1875], **diverging.fractions[0.1875]}})
    for key in ("images", "epochs"):
        cell = at_equal(saln, standard, "standard", key)
        assert "`saln` budget" in cell.text and "(lr 0.01;" in cell.text and "(lr 0.1;" not in cell.text
        assert cell.result.mean == pytest.approx(100 * (0.6 - 0.4))


def test_a_rate_with_a_diverged_seed_is_never_read(tmp_path):
    """Stage best_lr never picks a rate where a seed diverged (diverged.json, no metrics.json); the
    measurements must not read it either, even when its surviving seed leads on validation."""
    roots = make_roots(tmp_path)

    def rows_of(method, seed, lr, fraction=1.0):
        keep = BATCH if method == "standard" else KEEP
        steps = run_budget("images", fraction, EPOCHS, N_BATCHES, BATCH, keep).steps
        level = 0.9 if method == "saln" and lr == 0.1 else 0.6
        return completed_rows(keep, steps, flat(level), flat(level))
    write_tree(roots, rows_of, ["standard", "saln"], [0, 1, 2], [0.01, 0.1], fractions=(0.1875, 1.0))
    for seed in (1, 2):   # as the train stage leaves a rate whose loss blew up
        for fraction in (0.1875, 1.0):
            run = rate_dir(run_dir(roots.train, "digits", "saln", seed), 0.1, fraction)
            for name in (METRICS_FILE, "dvclive"):
                shutil.rmtree(run / name) if (run / name).is_dir() else (run / name).unlink()
            record_divergence(run, 0.1, "training loss became non-finite")
    best = write_best(roots.train, roots.lr, "digits", ["standard", "saln"], [0, 1, 2], [0.01, 0.1])
    assert best["methods"]["saln"]["best_lr"] == 0.01 and best["methods"]["saln"]["diverged"] == ["0.1"]
    ev = evidence("digits", ["standard", "saln"], [0, 1, 2], [0.01, 0.1], inputs(roots), [0.1875, 1.0])
    assert list(ev.groups["saln"].rates[0.1].runs) == [0] and not ev.groups["saln"].rates[0.1].trained
    assert not ev.groups["saln"].fractions[0.1875][0.1].trained
    cells = {c.key: c for c in next(r for r in ev.pairs if r.baseline == "standard").cells}
    for key in ("images", "epochs"):
        assert "(lr 0.1;" not in cells[key].text and cells[key].result.n == 3, cells[key].text
    assert "`saln` at lr 0.1, budget 0.1875" in " ".join(untrained_lines(ev))


# --- (6) The best rate per budget is chosen on validation, not on test -----------------------------


def test_the_best_rate_at_each_budget_is_chosen_on_validation_accuracy_there(tmp_path):
    standard = budgeted(tmp_path, "standard", flat(0.5), lambda s: flat(0.4), seeds=(0, 1))
    # Budgeted for 0.1875, rate 0.1 leads on validation (69% vs 60%) but trails on test (30% vs 65%); at the
    # full budget 0.01 leads on validation (70% vs 69%).
    slow = budgeted(tmp_path, "saln", lambda i: 0.6 if i < 1000 else 0.7, lambda s: lambda i: 0.65, seeds=(0, 1))
    fast = budgeted(tmp_path, "saln", flat(0.69), lambda s: flat(0.3), seeds=(0, 1), lr=0.1)
    saln = MethodRuns({**slow.rates, **fast.rates}, LR, 0.0, {0.1875: {**slow.fractions[0.1875],
                                                                       **fast.fractions[0.1875]}})
    assert saln.rate_at(0.1875) == 0.1 and saln.rate == 0.01
    epochs = at_equal(saln, standard, "standard", "epochs")
    assert "`saln` budget 0.1875 (lr 0.1;" in epochs.text and epochs.result.mean == pytest.approx(100 * (0.3 - 0.4))
    images = at_equal(saln, standard, "standard", "images")
    assert "`saln` budget 1 (lr 0.01;" in images.text and images.result.mean == pytest.approx(100 * (0.65 - 0.4))


# --- (7) Time to target and flattening, from completed runs ----------------------------------------


def test_time_to_target_reads_the_smallest_budget_whose_completed_run_reaches_it(tmp_path):
    roots = make_roots(tmp_path)
    # standard ends at 80% validation (full budget) and 65% at 0.1875; saln's seed 0 reaches 80% at 0.1875,
    # seed 1 only at the full budget; jest never gets to half of 80%.
    level = {("standard", 1.0): {0: 0.8, 1: 0.8}, ("standard", 0.1875): {0: 0.65, 1: 0.65},
             ("saln", 1.0): {0: 0.85, 1: 0.8}, ("saln", 0.1875): {0: 0.8, 1: 0.5},
             ("jest", 1.0): {0: 0.35, 1: 0.35}, ("jest", 0.1875): {0: 0.3, 1: 0.3}}

    def rows_of(method, seed, lr, fraction=1.0):
        keep = BATCH if method == "standard" else KEEP
        steps = run_budget("images", fraction, EPOCHS, N_BATCHES, BATCH, keep).steps
        acc = level[method, fraction][seed]
        return completed_rows(keep, steps, flat(acc), flat(acc), step_seconds=0.1 if method == "standard" else 0.03)
    write_tree(roots, rows_of, ["standard", "saln", "jest"], [0, 1], [LR], extract=2.0, fractions=(0.1875, 1.0))
    ev = evidence("digits", ["standard", "saln", "jest"], [0, 1], [LR], inputs(roots), [0.1875, 1.0])
    # saln's one-off seconds: 2 s of feature extraction shared by its 4 runs (2 seeds x 1 rate x 2 budgets).
    assert ev.groups["saln"].one_off == pytest.approx(0.5)
    text, rows = time_to_target(ev)
    got = {(r[1], r[2]): r for r in rows}
    # Targets: 50%, 75%, 90% and 100% of standard's final 80%: 0.40, 0.60, 0.72, 0.80.
    assert got["standard", 0.75][3:] == [640, pytest.approx(1.0), 2, 2]   # 0.1875: 10 steps of 0.1 s
    assert got["standard", 1.0][3:] == [3264, pytest.approx(5.1), 2, 2]
    # saln at 100%: seed 0 at 0.1875 (612 images, 51 steps), seed 1 at the full budget (3264, 272 steps).
    assert got["saln", 1.0][3:] == [pytest.approx((612 + 3264) / 2), pytest.approx(0.5 + 0.03 * (51 + 272) / 2), 2, 2]
    assert got["saln", 0.5][3:] == [612, pytest.approx(0.5 + 0.03 * 51), 2, 2]   # both seeds at 0.1875
    assert all(got["jest", f][3:] == [None, None, 0, 2] for f in (0.5, 0.75, 0.9, 1.0))
    assert "| jest | " + " | ".join(["not reached by any budget (0/2)"] * 4) + " |" in text
    assert "budget 0.1875/1 (2/2)" in text and "80.0%" in text
    no_base = dataclasses.replace(ev, groups={m: g for m, g in ev.groups.items() if m != "standard"})
    assert time_to_target(no_base) == ("*No time-to-target table: `standard` has no trained run at its best "
                                       "rate.*", [])
    assert "not measured" in flattening_line(ev) and "add 0.8 to train.budget_fractions" in flattening_line(ev)


def test_flattening_compares_standards_completed_runs_at_0_8_and_1(tmp_path):
    gains = {0: 0.004, 1: 0.006, 2: 0.005}
    standard = budgeted(tmp_path, "standard", flat(0.7), lambda s: flat(0.7), fractions=(0.8, 1.0))
    for seed, gain in gains.items():   # the full run ends 0.4-0.6 pp above the 0.8 run
        standard.rates[LR].runs[seed]["val_acc"] += gain
    saln = budgeted(tmp_path, "saln", flat(0.6), lambda s: flat(0.6), fractions=(0.8, 1.0))
    ev = Evidence("digits", {"standard": standard, "saln": saln}, CHANCE, None, {}, [], [])
    line = flattening_line(ev)
    assert "+0.50 pp [" in line and "**flattened: under 1 pp**" in line and "lr 0.01 and 0.01" in line


def test_batchnorm_table_pairs_each_seeds_final_accuracy_with_and_without_recalibration(tmp_path):
    """Recalibrated runs record the final metrics twice; the table differences them seed by seed."""
    roots = make_roots(tmp_path)
    write_tree(roots, lambda m, s, lr: trainer_rows(BATCH if m == "standard" else KEEP, flat(0.6), flat(0.7)),
               ["standard", "saln"], [0, 1, 2], [LR])
    assert batchnorm_table(evidence("digits", ["standard", "saln"], [0, 1, 2], [LR], inputs(roots))) is None
    gains = {0: 0.02, 1: 0.04, 2: 0.06}  # saln: re-estimated statistics 2, 4 and 6 pp above training's
    for seed, gain in gains.items():
        path = rate_dir(run_dir(roots.train, "digits", "saln", seed), LR) / METRICS_FILE
        metrics = json.loads(path.read_text())
        metrics |= {"bn_recalibrate": 256, f"test_acc{UNRECALIBRATED}": metrics["test_acc"] - gain,
                    f"val_acc{UNRECALIBRATED}": metrics["val_acc"], f"test_loss{UNRECALIBRATED}": 1.0,
                    f"val_loss{UNRECALIBRATED}": 1.0}
        path.write_text(json.dumps(metrics))
    text, rows = batchnorm_table(evidence("digits", ["standard", "saln"], [0, 1, 2], [LR], inputs(roots)))
    assert [r[:4] for r in rows] == [["digits", "saln", LR, "test"], ["digits", "saln", LR, "val"]]
    test, val = rows
    half = scipy_stats.t.ppf(0.975, 2) * 2.0 / math.sqrt(3)  # differences 2, 4, 6 pp: sd 2
    assert test[4:] == pytest.approx([66.0, 70.0, 4.0, 4.0 - half, 4.0 + half, 3])
    assert val[4:] == pytest.approx([60.0, 60.0, 0.0, 0.0, 0.0, 3])
    assert "on 256 fixed training images" in text and "| saln | 0.01 | 66.0 | 70.0 | +4.0 pp [" in text
    assert "| standard |" not in text  # it did not recalibrate
    lines, names = verdict_lines(evidence("digits", ["standard", "saln"], [0, 1, 2], [LR], inputs(roots)), "", "",
                                 tmp_path)
    assert "re-estimated" in lines[0] and "#### BatchNorm statistics" in lines and "digits_batchnorm.csv" in names
    assert len(list(csv.DictReader((tmp_path / "digits_batchnorm.csv").open()))) == 2


# --- The whole report on a small results tree -------------------------------------------------------


def test_build_report_writes_claims_with_intervals_time_to_target_and_all_in_cost(tmp_path):
    """standard, random, saln and jest, 3 seeds, 2 rates, budgets 0.1875 and 1 of an image budget."""
    roots = make_roots(tmp_path)
    methods, seeds, lrs, fractions = ["standard", "random", "saln", "jest"], [0, 1, 2], [0.01, 0.1], [0.1875, 1.0]
    level = {"standard": 0.5, "random": 0.45, "saln": 0.55, "jest": 0.5}

    def rows_of(method, seed, lr, fraction=1.0):
        keep = BATCH if method == "standard" else KEEP
        top = level[method] + 0.01 * seed * (1 + (method == "saln")) - (0.05 if lr == 0.1 else 0.0)
        steps = run_budget("images", fraction, EPOCHS, N_BATCHES, BATCH, keep).steps
        if fraction == 1.0:  # the full run logs its curves: the budget grid and every epoch end
            rows = trainer_rows(keep, ramp(0.1, top, 3264), ramp(0.11, top + 0.01, 3264), step_seconds=0.1,
                                epochs=math.ceil(steps / N_BATCHES))
            return [r for r in rows if r["steps"] <= steps]
        return completed_rows(keep, steps, flat(top - 0.1), flat(top - 0.09))
    write_tree(roots, rows_of, methods, seeds, lrs, extract=2.0, fractions=fractions)
    build_report(make_regime(methods=methods, seeds=seeds, lrs=lrs, budget="images", schedule="linear",
                             fractions=fractions), roots, load_paper())

    report = (roots.out / "report.md").read_text()
    assert "budget (images): standard's images in 3 epochs for every method; schedule linear" in report
    claims = report[report.index("#### Claims"):report.index("#### Measurements")]
    assert "| claim | comparison | primary measurement | verdict |" in claims
    assert claims.count("| saln vs ") == 5 and " pp [" in claims
    measured = report[report.index("#### Measurements"):report.index("#### Time to target")]
    assert "(primary)" in measured and "(Holm)" in measured
    # saln ahead of standard by 5, 6 and 7 pp at equal images (the full budgets, 3264 images): a win.
    first = next(line for line in measured.splitlines() if line.startswith("| saln vs standard |"))
    assert first.split(" | ")[1].startswith("+6.00 pp [") and "→ **win** (primary)" in first.split(" | ")[1]
    assert "`saln` budget 1 (lr 0.01; 3,264 img" in first
    for heading in ("#### Rates", "#### Time to target", "#### All-in cost"):
        assert heading in report
    assert "*did not train:* none." in report and "budget 0.8 and 1: add 0.8" in report

    tables = roots.out / "tables"
    for name in ("digits_time_to_target.csv", "digits_all_in_cost.csv", "digits_test_accuracy.csv",
                 "digits_pairings.csv"):
        assert (tables / name).is_file() and f"tables/{name}" in report
    cost = [r for r in csv.DictReader((tables / "digits_all_in_cost.csv").open())]
    assert {(r["method"], float(r["budget"])) for r in cost} == {(m, f) for m in methods for f in fractions}
    assert all(r["lr"] == "0.01" for r in cost)
    # Each one-off cost is shared by the runs that need it: 3 seeds x 2 rates x 2 budgets of one method each.
    for method, one_off in (("standard", 0.0), ("random", 0.0), ("saln", 2.0 / 12), ("jest", 31.0 / 12)):
        for row in (r for r in cost if r["method"] == method):
            assert float(row["all_in_amortised"]) - float(row["train_seconds"]) == pytest.approx(one_off)
    targets = list(csv.DictReader((tables / "digits_time_to_target.csv").open()))
    assert len(targets) == 4 * 4 and all(r["seeds"] == "3" for r in targets)
    assert (roots.out / "figures" / "digits_time_to_accuracy.png").is_file()
