"""The report's verdicts on small constructed runs: paired intervals over seeds, Holm's correction, the
shared budget grid, reading measured points only (images, all-in seconds), runs that did not train, the
best rate per budget chosen on validation, time to target, and the whole report on a small results tree."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from saln.evaluation import budget_grid
from saln.report.build import build_report
from saln.report.claims import (CLAIMS, DID_NOT_TRAIN, Chance, MethodRuns, RateRuns, at_epochs, at_images,
                                at_seconds, claim_rows, claims_markdown, image_budget, pair_rows, pairs_markdown)
from saln.report.history import read_history
from saln.report.runs import load_run
from saln.report.stats import LOSS, TIE, WIN, holm, holm_outcome, paired
from saln.report.verdicts import Inputs, chance_of, evidence, rates_summary, time_to_target, untrained_lines
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


def rate_runs(root, method, rows_by_seed: dict, lr=LR, chance=CHANCE) -> RateRuns:
    """Write one rate's runs (seed -> rows) and read them back as the report does."""
    runs, histories = {}, {}
    for seed, rows in rows_by_seed.items():
        d = write_run(root, "digits", method, seed, lr=lr, rows=rows)
        runs[seed], histories[seed] = load_run(d, "digits", method, seed), read_history(d)
    return RateRuns(runs, histories, all(chance.trained(r) for r in runs.values()))
