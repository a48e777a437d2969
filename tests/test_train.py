"""The training loop on CPU: selection accounting, outputs, the batch-size rules, paired batch order,
evaluation on the budget grid, BatchNorm recalibration, and a stage's walk over the rates."""

import json
import runpy
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from saln import augment
from saln import device as device_module
from saln import train as train_module
from saln.errors import SalnError
from saln.evaluation import budget_grid
from saln.rates import choose_best
from saln.train import RunInputs, train_config, train_run
from tests.conftest import ROOT, stage_argv
from tests.test_resume import tiny_config as resume_tiny_config
from tests.test_resume import tiny_inputs as all_tables_inputs

LR = 0.03  # the one rate of these small runs


def tiny_config(params, **overrides):
    params["train"].update({"epochs": 1, "batch_size": 40, "filter_ratio": 0.8, "log_batches": [0, 2],
                            "device": "cpu", "lrs": [LR], "budget": "epochs", "schedule": "constant",
                            "warmup": 0.0, **overrides})  # the plain loop; tests/test_schedule.py varies these
    params["model"].update(arch="resnet18", weights="none")  # small and fast; the loop is arch-generic
    return train_config(params)


def tiny_inputs(params, prepared, with_features=False):
    spec = augment.augment_spec({**params["augment"], "resize": 16, "test_resize": 16, "test_crop": 16})
    features = np.random.default_rng(0).random((len(prepared.labels), 8)) if with_features else None
    return RunInputs(prepared, spec, features=features)


def logged(run: Path, name: str) -> list[tuple[int, float]]:
    """(step, value) of one dvclive metric, in logged order (a row is a step; not every row has every metric)."""
    rows = (run / "dvclive/plots/metrics" / f"{name}.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["step", name]
    return [(int(r.split("\t")[0]), float(r.split("\t")[1])) for r in rows[1:]]


def curve(run: Path, name: str) -> list[float]:
    """The values of a metric every row logs (steps 0, 1, 2, ...)."""
    rows = logged(run, name)
    assert [step for step, _ in rows] == list(range(len(rows))), name
    return [value for _, value in rows]


@pytest.mark.parametrize("method", ["standard", "saln"])
def test_run_writes_metrics_model_selections_and_curves(params, digits16, tmp_path, method, one_thread):
    cfg = tiny_config(params)
    metrics = train_run(tiny_inputs(params, digits16, with_features=True), cfg, method, 0, tmp_path,
                        progress=False)
    n_batches = len(digits16.splits["train"]) // cfg.batch_size
    per_batch = cfg.batch_size if method == "standard" else cfg.keep
    assert metrics["images_backprop"] == n_batches * per_batch  # the partial batch is dropped
    assert metrics["images_scored"] == 0 and metrics["keep_per_batch"] == per_batch
    assert 0 <= metrics["test_acc"] <= 1 and metrics["train_seconds"] > 0 and metrics["lr"] == LR
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics

    logged = np.load(tmp_path / "selections.npz")
    assert logged["batch"].tolist() == [0, 2]
    assert logged["indices"].shape == (2, cfg.batch_size)
    assert logged["kept"].sum(axis=1).tolist() == [per_batch, per_batch]
    assert np.isin(logged["indices"], digits16.splits["train"]).all()

    # One point before training, one at each budget-grid point inside the epoch, one at its end.
    grid = budget_grid(len(digits16.splits["train"]), cfg.batch_size, cfg.keep, cfg.epochs)
    inside = [g for g in grid if g < metrics["images_backprop"]]
    assert len(curve(tmp_path, "val_acc")) == 2 + len(inside)
    assert inside or method != "standard"
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert state["fc.weight"].shape == (10, 512)
    head = torch.load(tmp_path / "head.pt", weights_only=True)  # the classifier layer alone
    assert head.keys() == {"fc.weight", "fc.bias"} and torch.equal(head["fc.weight"], state["fc.weight"])


def test_without_save_model_only_the_head_is_written(tmp_path, one_thread):
    train_run(all_tables_inputs("standard"), resume_tiny_config(), "standard", 0, tmp_path, progress=False,
              save_model=False)
    assert (tmp_path / "head.pt").is_file() and not (tmp_path / "model.pt").exists()


def test_same_seed_same_selection(params, digits16, tmp_path, one_thread):
    cfg = tiny_config(params)
    runs = [train_run(tiny_inputs(params, digits16), cfg, "random", 3, tmp_path / str(i), progress=False)
            for i in range(2)]
    picks = [np.load(tmp_path / str(i) / "selections.npz")["kept"] for i in range(2)]
    np.testing.assert_array_equal(picks[0], picks[1])
    assert runs[0]["test_acc"] == runs[1]["test_acc"]


def test_training_split_smaller_than_a_batch_is_rejected(params, digits16, tmp_path):
    cfg = tiny_config(params, batch_size=2000)
    with pytest.raises(SalnError, match="fewer than train.batch_size=2000"):
        train_run(tiny_inputs(params, digits16), cfg, "standard", 0, tmp_path, progress=False)


def test_saln_without_features_is_rejected(params, digits16, tmp_path):
    with pytest.raises(SalnError, match="needs features"):
        train_run(tiny_inputs(params, digits16), tiny_config(params), "saln", 0, tmp_path, progress=False)


# ---------------------------------------------------------------------------------------------
# Paired comparisons: every method of a seed sees the same batches in every epoch


def record_candidates(monkeypatch) -> list:
    """Every step's candidate batch (dataset indices, before selection), in order."""
    seen, real = [], train_module.Trainer.step

    def step(self, idx, pass_number):
        seen.append(idx.clone())
        return real(self, idx, pass_number)

    monkeypatch.setattr(train_module.Trainer, "step", step)
    return seen


def test_every_method_of_a_seed_sees_the_same_batches_in_every_epoch(tmp_path, monkeypatch, one_thread):
    """The shuffle has its own generator: the selectors' draws (random's, JEST's sampling) and the
    learner view's forwards do not move the next epoch's order."""
    cfg = resume_tiny_config(epochs=2, log_batches=(0, 1))
    orders, kept = {}, {}
    for method in ("standard", "random", "saln", "jest"):
        seen = record_candidates(monkeypatch)
        train_run(all_tables_inputs(method), cfg, method, 4, tmp_path / method, progress=False)
        monkeypatch.undo()
        orders[method] = torch.stack(seen)
        with np.load(tmp_path / method / "selections.npz") as logged:
            np.testing.assert_array_equal(logged["indices"], orders[method][:2].numpy())
            kept[method] = logged["kept"]
    n_batches = len(all_tables_inputs("standard").prepared.splits["train"]) // cfg.batch_size
    assert orders["standard"].shape == (2 * n_batches, cfg.batch_size)
    for method in ("random", "saln", "jest"):
        assert torch.equal(orders[method], orders["standard"]), method
    epoch_1, epoch_2 = orders["standard"][:n_batches], orders["standard"][n_batches:]
    assert not torch.equal(epoch_1, epoch_2)  # a fresh shuffle every epoch
    assert not np.array_equal(kept["random"], kept["saln"])  # the selectors did choose differently

    seen = record_candidates(monkeypatch)
    train_run(all_tables_inputs("standard"), cfg, "standard", 5, tmp_path / "seed5", progress=False)
    assert not torch.equal(torch.stack(seen), orders["standard"])  # another seed, another order


# ---------------------------------------------------------------------------------------------
# Evaluation: on the budget grid, apart from the training clock


def test_runs_evaluate_at_every_grid_point_and_train_seconds_exclude_evaluation(tmp_path, monkeypatch,
                                                                              one_thread):
    """Every evaluation advances a fake clock by 100 s: counted as training time, it would show."""
    real_clock, jumped, reads = device_module.time.perf_counter, [0.0], []
    monkeypatch.setattr(device_module, "time", SimpleNamespace(perf_counter=lambda: real_clock() + jumped[0]))
    real_evaluate = train_module.evaluate

    def slow_evaluate(model, images, labels, indices, *args, **kwargs):
        reads.append(len(indices))
        result = real_evaluate(model, images, labels, indices, *args, **kwargs)
        jumped[0] += 100.0
        return result

    monkeypatch.setattr(train_module, "evaluate", slow_evaluate)
    cfg = resume_tiny_config(epochs=2, eval_subset=5)
    for method in ("standard", "saln"):
        reads.clear()
        inputs = all_tables_inputs(method)
        run = tmp_path / method
        metrics = train_run(inputs, cfg, method, 0, run, progress=False)
        train_images = len(inputs.prepared.splits["train"])
        n_batches = train_images // cfg.batch_size
        per_step = cfg.batch_size if method == "standard" else cfg.keep
        final = n_batches * per_step * cfg.epochs
        assert metrics["images_backprop"] == final

        grid = budget_grid(train_images, cfg.batch_size, cfg.keep, cfg.epochs)
        ends = [n_batches * per_step * e for e in range(1, cfg.epochs + 1)]
        backprop, epochs = curve(run, "images_backprop"), curve(run, "epoch")
        assert backprop == sorted({0.0, *(g for g in grid if g <= final), *ends})  # each once, in order
        for images, epoch in zip(backprop, epochs):  # fractional epochs at the points inside one
            assert epoch == pytest.approx(images / (n_batches * per_step))
        assert len(curve(run, "val_acc")) == len(backprop)  # every row is evaluated

        assert len(reads) == 2 * len(backprop)  # val and test at every row
        assert max(reads[:-2]) <= 5 and reads[-2:] == [len(inputs.prepared.splits[s]) for s in ("val", "test")]
        assert metrics["eval_seconds"] >= 100.0 * len(reads)
        assert metrics["train_seconds"] < 100.0 and metrics["selection_seconds"] < 100.0
        assert max(curve(run, "train_seconds")) < 100.0


# ---------------------------------------------------------------------------------------------
# BatchNorm recalibration: what evaluation sees, never what training does


def test_batchnorm_recalibration_changes_evaluation_and_leaves_training_bitwise_alone(tmp_path, one_thread):
    """``random`` with random augmentation: any draw from a training stream would change the run."""
    runs = {}
    for n in (0, 24):
        runs[n] = train_run(all_tables_inputs("random"), resume_tiny_config(epochs=2, bn_recalibrate=n),
                            "random", 0, tmp_path / str(n), progress=False)
    plain, recalibrated = tmp_path / "0", tmp_path / "24"
    assert (runs[0]["bn_recalibrate"], runs[24]["bn_recalibrate"]) == (0, 24)

    wa, wb = (torch.load(d / "model.pt", weights_only=True) for d in (plain, recalibrated))
    assert wa.keys() == wb.keys() and "bn1.running_mean" in wa and "layer1.0.bn2.running_var" in wa
    assert [k for k in wa if not torch.equal(wa[k], wb[k])] == []  # parameters and BatchNorm buffers
    for name in ("train_loss", "train_acc", "images_backprop", "epoch"):
        assert logged(plain, name) == logged(recalibrated, name), name
    assert len(logged(plain, "train_loss")) == 2  # one per epoch
    with np.load(plain / "selections.npz") as a, np.load(recalibrated / "selections.npz") as b:
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name])

    assert curve(plain, "val_loss") != curve(recalibrated, "val_loss")  # evaluation saw other statistics
    assert all(a != b for a, b in zip(curve(plain, "val_loss")[1:], curve(recalibrated, "val_loss")[1:]))
    assert runs[0]["val_loss"] != runs[24]["val_loss"]
    # The final evaluation also reads the same weights with training's statistics: the plain run's figures.
    for name in ("val_acc", "val_loss", "test_acc", "test_loss"):
        assert runs[24][f"{name}_unrecalibrated"] == runs[0][name], name
        assert f"{name}_unrecalibrated" not in runs[0]


# ---------------------------------------------------------------------------------------------
# A training stage: one process per (dataset, method, seed) walks every rate of train.lrs


def in_stage_folder(params: dict, tmp_path: Path, digits16_dir: Path, monkeypatch) -> None:
    """A folder laid out as dvc.yaml's train stages read it (params, prepared digits, augment spec), as cwd."""
    params["model"].update(arch="resnet18", weights="none")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "data" / "prepared").mkdir(parents=True)
    (tmp_path / "data" / "prepared" / "digits").symlink_to(digits16_dir)
    augment.save_spec(augment.augment_spec({**params["augment"], "resize": 16, "test_resize": 16,
                                            "test_crop": 16}), tmp_path / "results/augment/config.json")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT / "stages"))


def test_stage_trains_every_rate_and_records_a_diverged_one(tmp_path, monkeypatch, repo_params, digits16_dir,
                                                           one_thread):
    """Run as dvc.yaml runs it: lr<rate>/ folders in --out (metrics, curves) and --models (head,
    selections); a rate whose loss blows up leaves diverged.json and the next rate still trains."""
    params = json.loads(json.dumps(repo_params))
    params["train"].update(epochs=1, batch_size=40, lrs=[1000.0, LR], device="cpu", save_model=False,
                           budget_fractions=[1.0])
    in_stage_folder(params, tmp_path, digits16_dir, monkeypatch)
    argv = stage_argv("train_baselines", dataset="digits", method="standard", seed=0)
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(ROOT / argv[0]), run_name="__main__")

    out, models = Path("results/train/digits/standard/seed0"), Path("results/models/digits/standard/seed0")
    assert sorted(p.name for p in out.iterdir()) == ["lr0.03", "lr1000"]
    diverged = json.loads((out / "lr1000" / "diverged.json").read_text())
    assert diverged["lr"] == 1000.0 and "learning rate 1000.0" in diverged["reason"]
    assert not (out / "lr1000" / "metrics.json").exists() and not (models / "lr1000").exists()
    assert [p.name for p in (out / "lr1000").iterdir()] == ["diverged.json"]  # no curves of the blown-up run
    metrics = json.loads((out / "lr0.03" / "metrics.json").read_text())
    assert metrics["lr"] == LR and (out / "lr0.03" / "dvclive").is_dir()
    assert sorted(p.name for p in (out / "lr0.03").iterdir()) == ["dvclive", "metrics.json"]  # no weights
    assert sorted(p.name for p in (models / "lr0.03").iterdir()) == ["head.pt", "selections.npz"]
    assert list(Path("results/checkpoints").rglob("*.pt")) == []  # finished or diverged: none left

    best = choose_best("digits", ["standard"], [0], [1000.0, LR], Path("results/train"))["methods"]["standard"]
    assert best["best_lr"] == LR and best["diverged"] == ["1000.0"]


@pytest.mark.slow
def test_stage_trains_every_budget_fraction_as_a_completed_run(tmp_path, monkeypatch, repo_params, digits16_dir,
                                                               one_thread):
    """train.budget_fractions [0.25, 1.0] under an image budget: lr<rate>/ (the full budget, with its
    curves) and lr<rate>-f0.25/ (a run whose schedule ended at a quarter of it, evaluated once)."""
    params = json.loads(json.dumps(repo_params))
    params["train"].update(epochs=1, batch_size=40, lrs=[LR], device="cpu", save_model=False, budget="images",
                           schedule="linear", budget_fractions=[0.25, 1.0])
    in_stage_folder(params, tmp_path, digits16_dir, monkeypatch)
    argv = stage_argv("train_baselines", dataset="digits", method="random", seed=0)
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(ROOT / argv[0]), run_name="__main__")

    out = Path("results/train/digits/random/seed0")
    assert sorted(p.name for p in out.iterdir()) == ["lr0.03", "lr0.03-f0.25"]
    whole, part = (json.loads((out / name / "metrics.json").read_text()) for name in ("lr0.03", "lr0.03-f0.25"))
    assert whole["budget_fraction"] == 1.0 and part["budget_fraction"] == 0.25
    n_batches = len(np.load(digits16_dir / "splits.npz")["train"]) // 40
    assert whole["images_backprop"] >= n_batches * 40 and whole["passes"] > 1  # standard's images, in 8s
    assert abs(part["images_backprop"] - whole["images_backprop"] / 4) < 8
    assert len(curve(out / "lr0.03", "val_acc")) > 2 and len(logged(out / "lr0.03-f0.25", "val_acc")) == 1
