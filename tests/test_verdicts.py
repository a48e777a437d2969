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
from saln.report.claims import (CLAIMS, DID_NOT_TRAIN, Chance, MethodRuns, RateRuns, at_epochs, at_images,
                                at_seconds, claim_rows, claims_markdown, image_budget, pair_rows, pairs_markdown)
from saln.report.history import read_history
from saln.report.paper import load_paper
from saln.report.runs import load_run
from saln.report.stats import LOSS, TIE, WIN, holm, holm_outcome, paired
from saln.report.verdicts import (Inputs, batchnorm_table, chance_of, evidence, rates_summary, time_to_target,
                                  untrained_lines, verdict_lines)
from tests.test_report import (LR, make_regime, make_roots, write_best, write_models, write_one_offs,
                               write_prepared, write_run)

# A digits-like run: 1149 training images, batches of 64, a selector keeps 12 (filter_ratio 0.8), 3 epochs.
TRAIN_IMAGES, BATCH, KEEP, EPOCHS = 1149, 64, 12, 3
N_BATCHES = TRAIN_IMAGES // BATCH   # 17 steps an epoch
CHANCE = Chance(num_classes=10, majority=0.1, n_val=100)


def trainer_rows(kept, val, test, step_seconds=0.1, val_loss=1.0) -> list[dict]:
    """The rows the trainer logs for a method back-propagating ``kept`` images per step: the epoch-0 row,
    each point of the shared budget grid reached inside an epoch (fractional epoch), and every epoch end.
    ``val`` / ``test``: accuracy as a function of images back-propagated."""
    grid = set(budget_grid(TRAIN_IMAGES, BATCH, KEEP, EPOCHS))

    def row(epoch, images, steps):
        return {"epoch": epoch, "val_loss": val_loss if images else 3.0, "val_acc": val(images),
                "test_loss": 1.0, "test_acc": test(images), "train_seconds": step_seconds * steps,
                "selection_seconds": 0.0, "images_backprop": images, "images_scored": 0, "steps": steps}

    rows, images, steps = [row(0, 0, 0)], 0, 0
    for epoch in range(1, EPOCHS + 1):
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
    """SALN is 2, 2.5 and 3 pp above every baseline at every point (seeds 0-2): each measurement alone has
    p ≈ 0.013, below 5%, so the five primaries win; the seven secondaries share Holm's correction
    (0.013 > 0.05 / 7) and stay ties although each interval excludes 0."""
    gains = {0: 0.02, 1: 0.025, 2: 0.03}
    base = ramp(0.2, 0.6)
    groups = {}
    for method in ("standard", "random", "jest", "saln"):
        rows = {s: trainer_rows(KEEP, base, (lambda i, g=g: base(i) + g) if method == "saln" else base)
                for s, g in gains.items()}
        groups[method] = MethodRuns({LR: rate_runs(tmp_path, method, rows)}, LR)
    p = paired({s: g for s, g in gains.items()}, {s: 0.0 for s in gains}).p
    assert 0.05 / 7 < p < 0.05   # significant alone, not after Holm over seven
    rows = pair_rows(groups)
    primaries = {(c.baseline, c.primary) for c in CLAIMS}
    assert len(primaries) == 5
    for row in rows:
        for cell in row.cells:
            if cell.key == "saved":   # same seconds: nothing saved, a tie either way
                assert cell.result.mean == 0 and cell.outcome == TIE
                continue
            assert cell.result.p == pytest.approx(p) and cell.result.low > 0
            assert cell.outcome == (WIN if (row.baseline, cell.key) in primaries else TIE), (row.baseline, cell.key)
    claims = claim_rows(rows)
    assert [c.verdict for c in claims] == ["supported"] * 5
    text = pairs_markdown(rows)
    assert text.count("(primary)") == 5 and text.count("(Holm)") == 7
    assert holm_outcome(rows[0].cells[1].result, rejected=True) == WIN


# --- (3) A grid point at every budget compared -----------------------------------------------------


def test_budget_grid_has_a_point_at_or_below_every_final_budget():
    # Digits-like: 17 batches an epoch; standard ends at 17·64·3 = 3264 images, a selector at 17·12·3 = 612.
    # lcm(12, 64) = 192: the doublings 192 ... 3072, plus 3264 (= 17·192) and 576 (= 3·192, the largest
    # multiple at or below 612).
    assert budget_grid(TRAIN_IMAGES, BATCH, KEEP, EPOCHS) == (192, 384, 576, 768, 1536, 3072, 3264)
    for train, batch, keep, epochs in [(1149, 64, 12, 3), (500, 32, 6, 10), (1000, 100, 20, 5),
                                       (37 * 64 + 5, 64, 2, 25), (3680, 128, 25, 7)]:
        grid = budget_grid(train, batch, keep, epochs)
        unit = math.lcm(keep, batch)
        finals = [train // batch * per_step * epochs for per_step in (batch, keep)]
        for final in finals:
            assert final // unit * unit in grid, (train, batch, keep, epochs, final)
        # Both kinds of method reach every point after a whole number of steps, and never past their end.
        assert all(p % batch == 0 and p % keep == 0 and 0 < p <= max(finals) for p in grid)
        assert list(grid) == sorted(set(grid))


def test_equal_images_reads_the_largest_grid_point_both_methods_measured(tmp_path):
    standard = MethodRuns({LR: rate_runs(tmp_path, "standard", {
        s: trainer_rows(BATCH, ramp(0.2, 0.9, 3264), lambda i, s=s: 0.15 + i / 5000 + 0.01 * s) for s in (0, 1, 2)},
        keep=BATCH)}, LR)
    saln_test = {0: lambda i: 0.25 + i / 2000, 1: lambda i: 0.24 + i / 2000, 2: lambda i: 0.28 + i / 2000}
    saln = MethodRuns({LR: rate_runs(tmp_path, "saln", {
        s: trainer_rows(KEEP, ramp(0.2, 0.8), saln_test[s]) for s in (0, 1, 2)})}, LR)
    # The trainer logged 576 inside epoch 1 for standard (9 steps) and inside epoch 3 for saln (48 steps).
    h = saln.rates[LR].histories[0]
    assert h.epoch[list(h.values["images_backprop"]).index(576)] == pytest.approx(2 + 14 / 17)
    h = standard.rates[LR].histories[0]
    assert h.epoch[list(h.values["images_backprop"]).index(576)] == pytest.approx(9 / 17)
    assert image_budget(saln, standard) == 576   # saln's final 612 is not a multiple of 64: standard never saw it

    cell = at_images(saln, standard, "standard")
    expected = [100 * (saln_test[s](576) - (0.15 + 576 / 5000 + 0.01 * s)) for s in (0, 1, 2)]
    assert cell.result.n == 3 and cell.result.mean == pytest.approx(np.mean(expected))
    assert "at 576 images (grid point below the final 612)" in cell.text

    # Two selectors both end at 612: that final point is shared, and read there.
    random = MethodRuns({LR: rate_runs(tmp_path, "random", {
        s: trainer_rows(KEEP, ramp(0.2, 0.7), ramp(0.2, 0.7)) for s in (0, 1, 2)})}, LR)
    assert image_budget(saln, random) == 612
    cell = at_images(saln, random, "random")
    assert "at 612 images;" in cell.text and "below" not in cell.text
    assert cell.result.mean == pytest.approx(np.mean([100 * (saln_test[s](612) - 0.7) for s in (0, 1, 2)]))

    # A standard seed that did not log 576 (say, an older run): the budget falls to the next shared point.
    rows = [r for r in trainer_rows(BATCH, ramp(0.2, 0.9, 3264), ramp(0.2, 0.9, 3264)) if r["images_backprop"] != 576]
    standard.rates[LR] = rate_runs(tmp_path / "older", "standard", {0: rows, 1: rows, 2: rows}, keep=BATCH)
    assert image_budget(saln, standard) == 384


# --- (4) Equal all-in seconds reads measured points only ------------------------------------------


def _timed(tmp_path, method, seconds_by_seed, acc_by_seed, one_off=0.0):
    """Runs logged only at epoch ends (and epoch 0) with the given training seconds and test accuracy."""
    rows = {s: [{**r, "train_seconds": t, "test_acc": a, "val_acc": a}
                for r, t, a in zip(_epoch_ends(), (0.0, *seconds_by_seed[s]), (0.1, *acc_by_seed[s]))]
            for s in seconds_by_seed}
    return MethodRuns({LR: rate_runs(tmp_path, method, rows)}, LR, one_off)


def _epoch_ends():
    return [r for r in trainer_rows(KEEP, flat(0.5), flat(0.5)) if r["epoch"] == round(r["epoch"])]


def test_equal_seconds_reads_each_seeds_last_point_at_or_before_the_budget(tmp_path):
    standard = _timed(tmp_path, "standard", {0: (2.0, 4.0, 6.0), 1: (1.0, 2.9, 5.0)},
                      {0: (0.50, 0.60, 0.70), 1: (0.52, 0.62, 0.72)})
    saln = _timed(tmp_path, "saln", {0: (1.0, 2.0, 3.0), 1: (1.0, 2.0, 3.2)},
                  {0: (0.40, 0.55, 0.65), 1: (0.41, 0.56, 0.66)})
    # Budget: the smaller final, 3.0 s (saln seed 0). Standard seed 0 is read at 2.0 s (epoch 1), seed 1 at
    # 2.9 s (epoch 2); saln seed 1 at 2.0 s (epoch 2: its 3.2 s is past the budget). Nothing is interpolated.
    cell = at_seconds(saln, standard, "standard")
    assert cell.result.mean == pytest.approx(np.mean([100 * (0.65 - 0.50), 100 * (0.56 - 0.62)]))
    assert "at 3 s all-in, each seed's last point at or before it" in cell.text

    # One-off work counts: saln's points move 1.5 s later, its smallest final is 4.5 s and standard is read at
    # 4.0 s (seed 0, epoch 2) and 2.9 s (seed 1, epoch 2), saln at 4.5 s (seed 0 epoch 3, seed 1 epoch 2).
    late = _timed(tmp_path / "late", "saln", {0: (1.0, 2.0, 3.0), 1: (1.0, 2.0, 3.2)},
                  {0: (0.40, 0.55, 0.65), 1: (0.41, 0.56, 0.66)}, one_off=1.5)
    cell = at_seconds(late, standard, "standard")
    assert cell.result.mean == pytest.approx(np.mean([100 * (0.65 - 0.60), 100 * (0.56 - 0.62)]))
    assert "at 4.5 s all-in" in cell.text

    # One-off work longer than the baseline's whole training: saln has no point by the budget.
    slow = _timed(tmp_path / "slow", "saln", {0: (1.0, 2.0, 3.0), 1: (1.0, 2.0, 3.2)},
                  {0: (0.40, 0.55, 0.65), 1: (0.41, 0.56, 0.66)}, one_off=10.0)
    cell = at_seconds(slow, standard, "standard")
    assert cell.result is None and "`saln` has no measured point by 5 s" in cell.text
    assert "its one-off work alone takes 10 s" in cell.text


# --- (5) A run that did not train gets no verdict --------------------------------------------------


def write_tree(roots, rows_of, methods, seeds, lrs, extract=2.0):
    """A results tree as the stages leave it: each method's runs at every rate (``rows_of(method, seed, lr)``),
    heads and selections, best.json, prepared data and the one-off costs."""
    for method in methods:
        keep = BATCH if method == "standard" else KEEP
        for seed in seeds:
            for lr in lrs:
                write_run(roots.train, "digits", method, seed, lr=lr, rows=rows_of(method, seed, lr), keep=keep)
                write_models(roots.models, "digits", method, seed, lr=lr, keep=keep)
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


def test_a_rate_that_did_not_train_is_never_read_even_when_best_at_the_budget(tmp_path):
    standard = MethodRuns({LR: rate_runs(tmp_path, "standard", {
        s: trainer_rows(BATCH, ramp(0.2, 0.9, 3264), flat(0.4)) for s in (0, 1)}, keep=BATCH)}, LR)
    # Rate 0.1 is the best on validation at 576 images, but its final validation loss is 2.5 > ln 10.
    diverging = rate_runs(tmp_path, "saln", {s: trainer_rows(KEEP, flat(0.95), flat(0.95), val_loss=2.5)
                                             for s in (0, 1)}, lr=0.1)
    steady = rate_runs(tmp_path, "saln", {s: trainer_rows(KEEP, ramp(0.2, 0.6), ramp(0.2, 0.6)) for s in (0, 1)})
    assert not diverging.trained and steady.trained
    saln = MethodRuns({LR: steady, 0.1: diverging}, LR)
    cell = at_images(saln, standard, "standard")
    assert "lr 0.01 vs 0.01" in cell.text
    assert cell.result.mean == pytest.approx(100 * (0.2 + 0.4 * 576 / 612 - 0.4))
    assert "lr 0.01 vs 0.01" in at_seconds(saln, standard, "standard").text


def test_a_rate_with_a_diverged_seed_is_never_read(tmp_path):
    """Stage best_lr never picks a rate where a seed diverged (diverged.json, no metrics.json); the
    measurements must not read it either, even when its surviving seed leads on validation."""
    roots = make_roots(tmp_path)

    def rows_of(method, seed, lr):
        if method == "saln" and lr == 0.1:
            return trainer_rows(KEEP, flat(0.9), flat(0.9))
        return trainer_rows(BATCH if method == "standard" else KEEP, ramp(0.2, 0.6), ramp(0.2, 0.6))
    write_tree(roots, rows_of, ["standard", "saln"], [0, 1, 2], [0.01, 0.1])
    for seed in (1, 2):   # as the train stage leaves a rate whose loss blew up
        run = rate_dir(run_dir(roots.train, "digits", "saln", seed), 0.1)
        for name in (METRICS_FILE, "dvclive"):
            shutil.rmtree(run / name) if (run / name).is_dir() else (run / name).unlink()
        record_divergence(run, 0.1, "training loss became non-finite")
    best = write_best(roots.train, roots.lr, "digits", ["standard", "saln"], [0, 1, 2], [0.01, 0.1])
    assert best["methods"]["saln"]["best_lr"] == 0.01 and best["methods"]["saln"]["diverged"] == ["0.1"]
    ev = evidence("digits", ["standard", "saln"], [0, 1, 2], [0.01, 0.1], inputs(roots))
    assert list(ev.groups["saln"].rates[0.1].runs) == [0] and not ev.groups["saln"].rates[0.1].trained
    cells = {c.key: c for c in next(r for r in ev.pairs if r.baseline == "standard").cells}
    for key in ("images", "seconds"):
        assert "lr 0.01 vs 0.01" in cells[key].text and cells[key].result.n == 3, cells[key].text
    assert "`saln` at lr 0.1" in " ".join(untrained_lines(ev))


# --- (6) The best rate per budget is chosen on validation, not on test -----------------------------


def test_the_best_rate_at_each_budget_is_chosen_on_validation_accuracy_there(tmp_path):
    standard = MethodRuns({LR: rate_runs(tmp_path, "standard", {
        s: trainer_rows(BATCH, ramp(0.2, 0.9, 3264), flat(0.4), step_seconds=0.0565) for s in (0, 1)},
        keep=BATCH)}, LR)
    # Rate 0.01 climbs to 70% validation (test 5 pp higher); rate 0.1 sits at 69% validation, 30% test.
    # At 576 images and at standard's final 2.88 s, 0.1 leads on validation (69% vs 67.1% and 36.7%) while
    # 0.01 leads on test; at the end 0.01 leads on validation, so best_lr picks 0.01.
    slow_val = ramp(0.2, 0.7)
    rates = {0.01: rate_runs(tmp_path, "saln", {s: trainer_rows(KEEP, slow_val, lambda i: slow_val(i) + 0.05)
                                                for s in (0, 1)}),
             0.1: rate_runs(tmp_path, "saln", {s: trainer_rows(KEEP, flat(0.69), flat(0.3)) for s in (0, 1)}, lr=0.1)}
    best = choose_best("digits", ["saln"], [0, 1], [0.01, 0.1], tmp_path)["methods"]["saln"]["best_lr"]
    assert best == 0.01
    saln = MethodRuns(rates, best)

    images = at_images(saln, standard, "standard")
    assert "at 576 images" in images.text and "lr 0.1 vs 0.01" in images.text
    assert images.result.mean == pytest.approx(100 * (0.3 - 0.4))   # 0.1's test accuracy, the lower one
    seconds = at_seconds(saln, standard, "standard")
    assert "lr 0.1 vs 0.01" in seconds.text and seconds.result.mean == pytest.approx(100 * (0.3 - 0.4))
    epochs = at_epochs(saln, standard, "standard", "epochs")
    assert "lr 0.01 vs 0.01" in epochs.text and epochs.result.mean == pytest.approx(100 * (0.75 - 0.4))


# --- (7) Time to target -----------------------------------------------------------------------------


def test_time_to_target_counts_the_seeds_that_reached_it(tmp_path):
    roots = make_roots(tmp_path)
    standard_val = lambda i: 0.1 if i == 0 else 0.3 if i < 1000 else 0.65 if i < 3264 else 0.8   # noqa: E731
    saln_val = {0: lambda i: 0.1 if i < 200 else 0.5 if i < 500 else 0.75,
                1: lambda i: 0.1 if i < 300 else 0.5 if i < 500 else 0.65}

    def rows_of(method, seed, lr):
        if method == "standard":
            return trainer_rows(BATCH, standard_val, standard_val)
        if method == "saln":
            return trainer_rows(KEEP, saln_val[seed], saln_val[seed], step_seconds=0.03)
        return trainer_rows(KEEP, flat(0.35), flat(0.35))   # jest: never half of standard's 80%
    write_tree(roots, rows_of, ["standard", "saln", "jest"], [0, 1], [LR], extract=2.0)
    ev = evidence("digits", ["standard", "saln", "jest"], [0, 1], [LR], inputs(roots))
    # Targets: 50%, 75% and 90% of standard's final validation accuracy 80%: 0.40, 0.60, 0.72.
    # saln's one-off seconds: 2 s of feature extraction shared by its 2 runs (2 seeds x 1 rate) = 1 s.
    assert ev.groups["saln"].one_off == pytest.approx(1.0)
    text, rows = time_to_target(ev)
    got = {(r[1], r[3]): r for r in rows}
    # standard: first point at or above 1000 images is epoch 1's end (1088, 17 steps of 0.1 s); 72% at the end.
    assert got["standard", 0.5][4:] == [1088, pytest.approx(1.7), 2, 2]
    assert got["standard", 0.9][4:] == [3264, pytest.approx(5.1), 2, 2]
    # saln: seed 0 reaches 40% at 204 images (epoch 1's end, 17 steps), seed 1 at 384 (32 steps); both
    # reach 60% at 576 (48 steps); only seed 0 reaches 72%. Seconds include the 1 s one-off.
    assert got["saln", 0.5][4:] == [294, pytest.approx(1.0 + 0.03 * (17 + 32) / 2), 2, 2]
    assert got["saln", 0.75][4:] == [576, pytest.approx(1.0 + 0.03 * 48), 2, 2]
    assert got["saln", 0.9][4:] == [576, pytest.approx(1.0 + 0.03 * 48), 1, 2]
    assert all(got["jest", f][4:] == [None, None, 0, 2] for f in (0.5, 0.75, 0.9))
    assert "| jest | 0.01 | not reached (0/2) | not reached (0/2) | not reached (0/2) |" in text
    assert "576 img, 2.44 s (1/2)" in text and "80.0%" in text
    no_base = dataclasses.replace(ev, groups={m: g for m, g in ev.groups.items() if m != "standard"})
    assert time_to_target(no_base) == ("*No time-to-target table: `standard` has no trained run at its best "
                                       "rate.*", [])


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
    """standard, random, saln and jest, 3 seeds, 2 rates, logged as the trainer logs them."""
    roots = make_roots(tmp_path)
    methods, seeds, lrs = ["standard", "random", "saln", "jest"], [0, 1, 2], [0.01, 0.1]
    level = {"standard": 0.5, "random": 0.45, "saln": 0.55, "jest": 0.5}

    def rows_of(method, seed, lr):
        top = level[method] + 0.01 * seed * (1 + (method == "saln")) - (0.05 if lr == 0.1 else 0.0)
        curve = ramp(0.1, top, 3264 if method == "standard" else 612)
        return trainer_rows(BATCH if method == "standard" else KEEP, curve, lambda i: curve(i) + 0.01,
                            step_seconds=0.1 if method == "standard" else 0.03)
    write_tree(roots, rows_of, methods, seeds, lrs, extract=2.0)
    build_report(make_regime(methods=methods, seeds=seeds, lrs=lrs), roots, load_paper())

    report = (roots.out / "report.md").read_text()
    claims = report[report.index("#### Claims"):report.index("#### Measurements")]
    assert "| claim | comparison | primary measurement | verdict |" in claims
    assert claims.count("| saln vs ") == 5 and " pp [" in claims
    measured = report[report.index("#### Measurements"):report.index("#### Time to target")]
    assert "(primary)" in measured and "(Holm)" in measured
    # saln ahead of standard by 5, 6 and 7 pp at equal epochs (seeds 0-2): a win on the primary.
    first = next(line for line in measured.splitlines() if line.startswith("| saln vs standard |"))
    assert first.split(" | ")[1].startswith("+6.00 pp [") and "→ **win** (primary)" in first.split(" | ")[1]
    assert "at 576 images (grid point below the final 612)" in first
    for heading in ("#### Rates", "#### Time to target", "#### All-in cost"):
        assert heading in report
    assert "*did not train:* none." in report

    tables = roots.out / "tables"
    for name in ("digits_time_to_target.csv", "digits_all_in_cost.csv", "digits_test_accuracy.csv",
                 "digits_pairings.csv"):
        assert (tables / name).is_file() and f"tables/{name}" in report
    cost = {r["method"]: r for r in csv.DictReader((tables / "digits_all_in_cost.csv").open())}
    assert set(cost) == set(methods) and all(r["lr"] == "0.01" for r in cost.values())
    # Each one-off cost is shared by the runs that need it: 3 seeds x 2 rates of one method each.
    for method, one_off in (("standard", 0.0), ("random", 0.0), ("saln", 2.0 / 6), ("jest", 31.0 / 6)):
        row = cost[method]
        assert float(row["all_in_amortised"]) - float(row["train_seconds"]) == pytest.approx(one_off)
    targets = list(csv.DictReader((tables / "digits_time_to_target.csv").open()))
    assert len(targets) == 4 * 3 and all(r["seeds"] == "3" for r in targets)
