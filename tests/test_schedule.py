"""Budgets and rate schedules: what a run trains for, at what rate, and that train.budget epochs
with a constant rate is the loop with no schedule (recorded metrics, bit for bit)."""

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from saln.augment import AugmentSpec
from saln.errors import SalnError
from saln.schedule import budget_fractions, rate_factor, run_budget, schedule_settings
from saln.train import RunInputs, train_run
from tests.test_jest import tiny_prepared
from tests.test_resume import Killed, assert_same_run, kill_after_epoch, resumed_epoch, tiny_config, tiny_inputs

FIXTURE = Path(__file__).parent / "data" / "epochs_constant_metrics.json"
NO_AUGMENT = AugmentSpec(resize=8, hflip=0.0, rotation=0, brightness=0, contrast=0, saturation=0, hue=0,
                         test_resize=8, test_crop=8)


def test_epochs_and_constant_reproduce_the_metrics_recorded_before_budgets(tmp_path, one_thread):
    """The fixture holds tiny runs' final metrics recorded by the loop without any schedule
    (augmentation off, as in the default): every recorded key is bitwise the same."""
    recorded = json.loads(FIXTURE.read_text())
    for method, want in recorded.items():
        prepared = tiny_prepared()
        inputs = RunInputs(prepared, NO_AUGMENT,
                           features=np.random.default_rng(1).random((len(prepared.labels), 8)))
        got = train_run(inputs, tiny_config(), method, 0, tmp_path / method, progress=False)
        assert {k: got[k] for k in want} == want, method
        assert got["budget"] == "epochs" and got["schedule"] == "constant" and got["passes"] == 3


def test_image_budget_gives_every_method_standards_images(tmp_path, one_thread):
    cfg = tiny_config(budget="images", schedule="linear")
    runs = {m: train_run(tiny_inputs(m), cfg, m, 0, tmp_path / m, progress=False) for m in ("standard", "random")}
    std, rnd = runs["standard"], runs["random"]
    assert std["images_backprop"] == std["steps"] * cfg.batch_size and std["passes"] == cfg.epochs
    assert std["images_backprop"] <= rnd["images_backprop"] < std["images_backprop"] + cfg.keep
    assert rnd["steps"] == math.ceil(std["images_backprop"] / cfg.keep)
    assert rnd["passes"] == pytest.approx(rnd["steps"] / (std["steps"] / cfg.epochs))


def test_a_budget_fraction_is_a_shorter_completed_run(tmp_path, one_thread):
    cfg = tiny_config(budget="images", schedule="linear")
    whole = train_run(tiny_inputs("random"), cfg, "random", 0, tmp_path / "whole", progress=False)
    part = train_run(tiny_inputs("random"), replace(cfg, budget_fraction=0.25), "random", 0, tmp_path / "part",
                     progress=False, curves=False)
    assert part["budget_fraction"] == 0.25 and part["schedule"] == "linear"
    assert abs(part["images_backprop"] - 0.25 * whole["images_backprop"]) < cfg.keep
    assert part["test_acc"] != whole["test_acc"] or part["val_loss"] != whole["val_loss"]


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_decaying_schedules_start_at_the_rate_and_end_at_zero(schedule):
    total = 40
    factors = [rate_factor(schedule, t, total, 0.0) for t in range(total)]
    assert factors[0] == 1.0 and all(a >= b for a, b in zip(factors, factors[1:]))
    assert rate_factor(schedule, total, total, 0.0) == pytest.approx(0.0, abs=1e-12)
    warm = [rate_factor(schedule, t, total, 0.25) for t in range(total)]
    assert warm[:10] == [(t + 1) / 10 for t in range(10)] and warm[10] == 1.0


def test_constant_schedule_is_one_everywhere():
    assert {rate_factor("constant", t, 7, 0.0) for t in range(7)} == {1.0}


def test_run_budget_counts_steps_for_each_kind():
    assert run_budget("epochs", 1.0, 3, 17, 64, 12).steps == 51
    images = run_budget("images", 1.0, 3, 17, 64, 12)
    assert images.steps == math.ceil(3 * 17 * 64 / 12) and images.images >= 3 * 17 * 64
    standard_at_selector_images = run_budget("images", 12 / 64, 3, 17, 64, 64)
    # a selector's images at equal epochs (612), rounded up to whole 64-image steps
    assert 3 * 17 * 12 <= standard_at_selector_images.images < 3 * 17 * 12 + 64


def test_resume_restores_the_schedule_bitwise(tmp_path, monkeypatch, capsys, one_thread):
    """A decaying rate is a function of the step count, which the checkpoint holds: a killed image-
    budget run with a warm-up resumes to the uninterrupted result."""
    cfg = tiny_config(budget="images", schedule="cosine", warmup=0.1)
    ck, run = tmp_path / "ck.pt", tmp_path / "run"
    train_run(tiny_inputs("jest"), cfg, "jest", 0, tmp_path / "whole", progress=False)
    kill_after_epoch(monkeypatch, 2)
    with pytest.raises(Killed):
        train_run(tiny_inputs("jest"), cfg, "jest", 0, run, progress=False, checkpoint=ck, checkpoint_key="k")
    monkeypatch.undo()
    shutil.rmtree(run)
    capsys.readouterr()
    train_run(tiny_inputs("jest"), cfg, "jest", 0, run, progress=False, checkpoint=ck, checkpoint_key="k")
    assert resumed_epoch(capsys.readouterr().err, ck) == 2 and not ck.exists()
    assert_same_run(tmp_path / "whole", run)


@pytest.mark.parametrize("train, message", [
    ({"budget": "steps", "schedule": "linear", "warmup": 0.0}, "train.budget must be one of epochs, images"),
    ({"budget": "images", "schedule": "step", "warmup": 0.0}, "train.schedule must be one of constant"),
    ({"budget": "images", "schedule": "linear", "warmup": 1.0}, "train.warmup must be"),
    ({"budget": "images", "schedule": "constant", "warmup": 0.1}, "needs a decaying train.schedule"),
])
def test_bad_schedule_settings_get_one_line(train, message):
    with pytest.raises(SalnError, match=message):
        schedule_settings(train)


@pytest.mark.parametrize("fractions, message", [
    ([], "non-empty list"), ([0.5], "must include 1.0"), ([0.0, 1.0], "budget_fractions"),
    ([1.0, 1.0], "more than once"), ([1.5, 1.0], "budget_fractions"),
])
def test_bad_budget_fractions_get_one_line(fractions, message):
    with pytest.raises(SalnError, match=message):
        budget_fractions({"budget_fractions": fractions})
    assert budget_fractions({"budget_fractions": [0.1875, 1.0]}) == [0.1875, 1.0]
