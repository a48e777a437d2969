"""Stage summary and saln.costs on a hand-made results tree: 2 methods x 2 seeds x 2 rates.

Every expected number below is worked out by hand from the tables here, not by the code under test.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from saln.costs import OneOff, cost_breakdown, needs, noisy, one_off_of, read_one_offs, sharing_runs
from saln.errors import SalnError
from saln.layout import rate_dir, run_dir
from saln.rates import choose_best, record_divergence
from saln.report.history import read_history
from saln.summary import (DIVERGED, PLOT_FOLDERS, PLOT_TEMPLATE, TEMPLATE_NAME, budget_curve, epoch_curve,
                          method_curves, plot_file, rate_key, summarise, write_curves)

ROOT = Path(__file__).resolve().parents[1]
DATASET, METHODS, SEEDS, LRS = "toy", ["standard", "saln"], [0, 1], [0.01, 0.1]

# (method, lr, seed) -> test_acc, val_acc, train_seconds, selection_seconds, images_backprop
FINAL = {
    ("standard", 0.01, 0): (0.60, 0.55, 10.0, 1.0, 640),
    ("standard", 0.01, 1): (0.80, 0.65, 14.0, 3.0, 640),
    ("standard", 0.1, 0): (0.70, 0.75, 11.0, 1.0, 640),
    ("standard", 0.1, 1): (0.90, 0.85, 13.0, 1.0, 640),
    ("saln", 0.01, 0): (0.50, 0.60, 20.0, 4.0, 128),
    ("saln", 0.01, 1): (0.70, 0.70, 24.0, 6.0, 128),
    ("saln", 0.1, 0): (0.40, 0.40, 20.0, 4.0, 128),
}
DIVERGED_RUN = ("saln", 0.1, 1)  # makes saln's rate 0.1 diverged, though seed 0 finished
EXTRACT_SECONDS, REFERENCE_TRAIN, REFERENCE_SCORING = 8.0, 5.0, 1.0

# Per seed, rows of (epoch, images_backprop, train_seconds, val_acc); seed 1 logs one extra point
# (16 images) that seed 0 lacks. A method's val_acc is shifted and its seconds scaled (below).
CURVE_ROWS = {
    0: [(0, 0, 0.0, 0.10), (0.5, 32, 1.0, 0.30), (1, 64, 2.0, 0.50)],
    1: [(0, 0, 0.0, 0.20), (0.25, 16, 0.5, 0.25), (0.5, 32, 3.0, 0.40), (1, 64, 4.0, 0.60)],
}
SHIFT = {"standard": (0.0, 1.0), "saln": (0.1, 2.0)}  # method -> (val_acc shift, seconds scale)


def write_tsv(folder: Path, name: str, points: list[tuple[int, float]]) -> None:
    with (folder / f"{name}.tsv").open("w", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t")
        writer.writerow(["step", name])
        writer.writerows(points)


def write_dvclive(directory: Path, method: str, seed: int) -> None:
    folder = directory / "dvclive" / "plots" / "metrics"
    folder.mkdir(parents=True)
    shift, scale = SHIFT[method]
    rows = CURVE_ROWS[seed]
    write_tsv(folder, "epoch", [(s, r[0]) for s, r in enumerate(rows)])
    write_tsv(folder, "images_backprop", [(s, r[1]) for s, r in enumerate(rows)])
    write_tsv(folder, "train_seconds", [(s, r[2] * scale) for s, r in enumerate(rows)])
    write_tsv(folder, "val_acc", [(s, r[3] + shift) for s, r in enumerate(rows)])
    # train_acc only at epoch ends, as the train loop logs it
    write_tsv(folder, "train_acc", [(s, 0.9) for s, r in enumerate(rows) if r[0] == int(r[0])])


def make_tree(base: Path) -> dict[str, Path]:
    """The fake results of one dataset; returns the paths the stage reads and writes."""
    train = base / "results" / "train"
    for (method, lr, seed), (test, val, seconds, selection, images) in FINAL.items():
        directory = rate_dir(run_dir(train, DATASET, method, seed), lr)
        directory.mkdir(parents=True)
        metrics = {"test_acc": test, "val_acc": val, "train_seconds": seconds, "selection_seconds": selection,
                   "images_backprop": images, "lr": lr, "seed": seed}
        (directory / "metrics.json").write_text(json.dumps(metrics))
        write_dvclive(directory, method, seed)
    method, lr, seed = DIVERGED_RUN
    record_divergence(rate_dir(run_dir(train, DATASET, method, seed), lr), lr, "loss is nan")
    paths = {"train": train, "best_lr": base / "results" / "lr" / DATASET / "best.json",
             "probe": base / "results" / "features" / DATASET / "probe.json",
             "reference": base / "results" / "reference" / DATASET / "metrics.json",
             "out": base / "results" / "summary" / f"{DATASET}.json",
             "plots": base / "results" / "plots", "params": base / "params.yaml"}
    for key in ("best_lr", "probe", "reference"):
        paths[key].parent.mkdir(parents=True)
    paths["best_lr"].write_text(json.dumps(choose_best(DATASET, METHODS, SEEDS, LRS, train)))
    paths["probe"].write_text(json.dumps({"probe_test_acc": 0.9, "extract_seconds": EXTRACT_SECONDS}))
    paths["reference"].write_text(json.dumps({"train_seconds": REFERENCE_TRAIN,
                                              "scoring_seconds": REFERENCE_SCORING}))
    params = {"train": {"methods": {"baselines": ["standard"], "spectral": ["saln"]}, "seeds": SEEDS,
                        "lrs": LRS, "budget_fractions": [1.0]}}
    paths["params"].write_text(yaml.safe_dump(params))
    return paths


@pytest.fixture
def tree(tmp_path):
    return make_tree(tmp_path)


def run_stage(paths: dict[str, Path]) -> subprocess.CompletedProcess:
    args = [f"--{k}={v}" for k, v in paths.items()]
    return subprocess.run([sys.executable, "stages/summary.py", f"--dataset={DATASET}", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def summary_of(paths: dict[str, Path]) -> dict:
    best = json.loads(paths["best_lr"].read_text())
    return summarise(DATASET, METHODS, SEEDS, LRS, best, paths["train"],
                     read_one_offs(paths["probe"], paths["reference"]), [1.0])


# ---------------------------------------------------------------------------------------------
# saln.costs


def test_one_offs_are_read_from_the_stage_files(tree):
    one_off = read_one_offs(tree["probe"], tree["reference"])
    assert one_off.features == EXTRACT_SECONDS
    assert one_off.reference == REFERENCE_TRAIN + REFERENCE_SCORING  # training and scoring once


def test_a_missing_file_leaves_its_cost_unknown(tmp_path):
    one_off = read_one_offs(tmp_path / "no_probe.json", tmp_path / "no_metrics.json")
    assert one_off.features is None and one_off.reference is None
    assert one_off_of("standard", one_off) == 0  # a method needing neither runs without them
    with pytest.raises(SalnError, match="no_probe.json"):
        one_off_of("saln", one_off)


def test_each_family_needs_its_own_one_offs():
    assert needs("standard") == () and needs("random") == ()
    assert needs("saln") == ("features",) and needs("infodensity") == ("features",)
    assert needs("maxent") == ()
    assert needs("jest") == ("reference",) and needs("jest_joint") == ("reference",)
    assert needs("prune_easy") == ("features",)  # stage prune ranks examples on the features


def test_sharing_runs_counts_methods_seeds_rates_and_budget_fractions():
    sharing = sharing_runs(["standard", "saln", "saln_knn", "jest"], seeds=[0, 1, 2], lrs=[0.01, 0.1],
                           fractions=[1.0])
    assert sharing == {"features": 2 * 3 * 2, "reference": 1 * 3 * 2}
    # each budget fraction is a run of its own that shares the one-off work
    assert sharing_runs(["saln", "jest"], [0, 1, 2], [0.01, 0.1], [0.1875, 0.5, 1.0]) == {"features": 18,
                                                                                         "reference": 18}


def test_cost_breakdown_on_hand_made_numbers():
    one_off = OneOff(features=8.0, reference=6.0)
    sharing = {"features": 4, "reference": 3}
    saln = cost_breakdown({"train_seconds": 20.0, "selection_seconds": 4.0}, "saln", one_off, sharing)
    assert saln == {"steps_seconds": 16.0, "scoring_seconds": 4.0, "train_seconds": 20.0,
                    "one_off_seconds": 8.0, "all_in_amortised": 20.0 + 8.0 / 4, "all_in_dataset": 28.0}
    jest = cost_breakdown({"train_seconds": 10.0, "selection_seconds": 2.5}, "jest", one_off, sharing)
    assert jest["all_in_amortised"] == 10.0 + 6.0 / 3 and jest["all_in_dataset"] == 16.0
    standard = cost_breakdown({"train_seconds": 10.0, "selection_seconds": 0.0}, "standard", one_off, sharing)
    assert standard["all_in_amortised"] == standard["all_in_dataset"] == 10.0


def test_a_needed_cost_that_was_not_measured_names_its_file():
    one_off = OneOff(features=None, reference=6.0, features_file="results/features/toy/probe.json")
    with pytest.raises(SalnError, match="results/features/toy/probe.json"):
        cost_breakdown({"train_seconds": 1.0, "selection_seconds": 0.1}, "saln", one_off, {"features": 1})


def test_noisy_timings():
    assert not noisy([10.0, 11.0, 10.5])  # cv about 0.05
    assert noisy([10.0, 20.0])  # std 7.07 / mean 15 = 0.47
    assert not noisy([10.0, 20.0], limit=0.5)
    assert not noisy([10.0])  # one seed: no spread to judge


# ---------------------------------------------------------------------------------------------
# Summary


def test_best_rates_come_from_best_lr(tree):
    summary = summary_of(tree)
    assert summary["standard"]["best_lr"] == 0.1  # mean val 0.80 beats 0.60
    assert summary["saln"]["best_lr"] == 0.01  # its 0.1 diverged


def test_means_stds_and_counts_over_seeds(tree):
    rate = summary_of(tree)["standard"]["lr0.01"]
    assert rate["test_acc"]["mean"] == pytest.approx(0.70)
    assert rate["test_acc"]["std"] == pytest.approx(math.sqrt(0.02))  # (0.6, 0.8): sample std
    assert rate["test_acc"]["n"] == 2
    assert rate["val_acc"]["mean"] == pytest.approx(0.60)
    assert rate["train_seconds"]["mean"] == pytest.approx(12.0)
    assert rate["train_seconds"]["std"] == pytest.approx(math.sqrt(8.0))  # (10, 14)
    assert rate["images_backprop"] == {"mean": 640, "std": 0.0, "n": 2}


def test_all_in_seconds_in_the_summary(tree):
    summary = summary_of(tree)
    # features shared by saln's runs only: 1 method x 2 seeds x 2 rates = 4 runs
    saln = summary["saln"]["lr0.01"]
    assert saln["all_in_amortised"]["mean"] == pytest.approx(22.0 + EXTRACT_SECONDS / 4)  # (20, 24)
    assert saln["all_in_dataset"]["mean"] == pytest.approx(22.0 + EXTRACT_SECONDS)
    assert summary["saln"]["one_off_seconds"] == EXTRACT_SECONDS
    standard = summary["standard"]["lr0.1"]
    assert standard["all_in_amortised"] == standard["train_seconds"]  # needs no one-off work
    assert summary["standard"]["one_off_seconds"] == 0.0


def test_the_best_block_repeats_the_best_rate(tree):
    summary = summary_of(tree)
    assert summary["standard"]["best"] == summary["standard"]["lr0.1"]
    assert summary["standard"]["best"]["test_acc"]["mean"] == pytest.approx(0.80)
    assert summary["saln"]["best"]["test_acc"]["mean"] == pytest.approx(0.60)


def test_a_diverged_rate_has_no_numbers(tree):
    # saln at 0.1: seed 0 finished (test 0.40) but seed 1 diverged
    assert summary_of(tree)["saln"]["lr0.1"] == DIVERGED


def test_rate_keys_are_the_run_folder_names():
    for lr in (0.01, 0.003, 1e-05, 0.1):
        assert rate_key(lr) == rate_dir("run", lr).name
        assert rate_key(lr, 0.1875) == rate_dir("run", lr, 0.1875).name == f"lr{lr:g}-f0.1875"


def test_each_budget_fraction_has_its_own_key_and_the_best_block_is_the_full_budget(tree):
    """A budget fraction's runs (lr<rate>-f<share>/) get their own key; one-off costs are shared by them too."""
    for (method, lr, seed) in FINAL:
        full = rate_dir(run_dir(tree["train"], DATASET, method, seed), lr)
        part = rate_dir(run_dir(tree["train"], DATASET, method, seed), lr, 0.5)
        shutil.copytree(full, part)
        metrics = json.loads((part / "metrics.json").read_text())
        (part / "metrics.json").write_text(json.dumps({**metrics, "images_backprop": metrics["images_backprop"] // 2}))
    method, lr, seed = DIVERGED_RUN
    record_divergence(rate_dir(run_dir(tree["train"], DATASET, method, seed), lr, 0.5), lr, "loss is nan")
    best = json.loads(tree["best_lr"].read_text())
    one_off = read_one_offs(tree["probe"], tree["reference"])
    summary = summarise(DATASET, METHODS, SEEDS, LRS, best, tree["train"], one_off, [0.5, 1.0])
    plain = summarise(DATASET, METHODS, SEEDS, LRS, best, tree["train"], one_off, [1.0])
    for m in METHODS:
        for lr in LRS:
            half, whole = summary[m][rate_key(lr, 0.5)], summary[m][rate_key(lr)]
            if whole == DIVERGED:
                assert half == DIVERGED
                continue
            assert half["images_backprop"]["mean"] == pytest.approx(whole["images_backprop"]["mean"] // 2, abs=1)
        assert summary[m]["best"]["test_acc"] == plain[m]["best"]["test_acc"]
    # saln's one-off features are shared by twice the runs: half the amortised seconds per run
    saln = next(lr for lr in LRS if summary["saln"][rate_key(lr)] != DIVERGED)
    extra = {k: s["saln"][rate_key(saln)]["all_in_amortised"]["mean"] - s["saln"][rate_key(saln)]["train_seconds"]["mean"]
             for k, s in (("two", summary), ("one", plain))}
    assert extra["two"] == pytest.approx(extra["one"] / 2)
    shutil.rmtree(rate_dir(run_dir(tree["train"], DATASET, "standard", 1), 0.01, 0.5))
    with pytest.raises(SalnError, match=r"standard/seed1/lr0\.01-f0\.5"):
        summarise(DATASET, METHODS, SEEDS, LRS, best, tree["train"], one_off, [0.5, 1.0])


def test_a_missing_run_stops_with_its_folder(tree):
    shutil.rmtree(rate_dir(run_dir(tree["train"], DATASET, "standard", 1), 0.01))
    with pytest.raises(SalnError, match=r"standard/seed1/lr0\.01"):
        summary_of(tree)


def test_a_stale_best_file_is_refused(tree):
    best = json.loads(tree["best_lr"].read_text())
    best["lrs"] = [0.01]
    with pytest.raises(SalnError, match="rerun stage best_lr"):
        summarise(DATASET, METHODS, SEEDS, LRS, best, tree["train"], read_one_offs(tree["probe"], tree["reference"]),
                  [1.0])


# ---------------------------------------------------------------------------------------------
# Curves


def histories(tree, method, lr):
    return [read_history(rate_dir(run_dir(tree["train"], DATASET, method, s), lr)) for s in SEEDS]


def test_epoch_curve_uses_epoch_ends_only(tree):
    curve = epoch_curve(histories(tree, "standard", 0.1))
    assert [e for e, _ in curve] == [0, 1]
    assert [acc for _, acc in curve] == pytest.approx([0.15, 0.55])


def test_budget_curve_keeps_the_image_counts_of_every_seed(tree):
    curve = budget_curve(histories(tree, "standard", 0.1))
    assert [images for images, _, _ in curve] == [0, 32, 64]  # 16 is seed 1's alone
    assert [seconds for _, seconds, _ in curve] == pytest.approx([0.0, 2.0, 3.0])  # mean seconds
    assert [acc for _, _, acc in curve] == pytest.approx([0.15, 0.35, 0.55])


def test_the_stage_writes_the_summary_and_one_line_per_method(tree):
    done = run_stage(tree)
    assert done.returncode == 0, done.stderr
    assert json.loads(tree["out"].read_text()) == summary_of(tree)
    for axis in PLOT_FOLDERS:
        with plot_file(tree["plots"], axis, DATASET).open() as fh:
            rows = list(csv.DictReader(fh))
        assert list(rows[0]) == ["method", axis, "val_acc"]
        assert {r["method"] for r in rows} == set(METHODS)
    images, acc = saln_column(tree, "images_backprop")
    assert images == [0, 32, 64] and acc == pytest.approx([0.25, 0.45, 0.65])  # its best rate: val + 0.1
    seconds, acc = saln_column(tree, "train_seconds")
    assert seconds == pytest.approx([0.0, 4.0, 6.0]) and acc == pytest.approx([0.25, 0.45, 0.65])  # seconds x2
    epochs, acc = saln_column(tree, "epoch")
    assert epochs == [0, 1] and acc == pytest.approx([0.25, 0.65])


def saln_column(tree, axis: str) -> tuple[list[float], list[float]]:
    """(x, val_acc) of saln's line in the stage's CSV for ``axis``."""
    with plot_file(tree["plots"], axis, DATASET).open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["method"] == "saln"]
    return [float(r[axis]) for r in rows], [float(r["val_acc"]) for r in rows]


def test_the_stage_fails_with_one_line_without_best_lr(tree):
    tree["best_lr"].unlink()
    done = run_stage(tree)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: {tree['best_lr']} not found: run stage best_lr first"]
    assert not tree["out"].exists() and not tree["plots"].exists()


def top_level_plots() -> list:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text()).get("plots", [])


def test_dvc_draws_one_plot_per_dataset_and_axis_with_one_line_per_method(tree, tmp_path):
    """`dvc plots show --json` with the project's own top-level plots: and template, on the curves of
    two datasets written as stage summary writes them."""
    best = {"standard": 0.1, "saln": 0.01}
    curves = {m: method_curves(tree["train"], DATASET, m, SEEDS, lr) for m, lr in best.items()}
    repo, dvc = tmp_path / "repo", Path(sys.executable).with_name("dvc")
    for dataset in (DATASET, "other"):
        write_curves(repo / "results" / "plots", dataset, curves)
    env = os.environ | {"DVC_NO_ANALYTICS": "1"}
    subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=repo, env=env, check=True, timeout=60)
    (repo / ".dvc" / "plots").mkdir()
    shutil.copy(ROOT / ".dvc" / "plots" / f"{TEMPLATE_NAME}.json", repo / ".dvc" / "plots")
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"plots": top_level_plots()}))
    shown = subprocess.run([dvc, "plots", "show", "--json"], cwd=repo, env=env, capture_output=True,
                           text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr + shown.stdout
    data = json.loads(shown.stdout)["data"]
    assert sorted(data) == sorted(f"results/plots/{PLOT_FOLDERS[axis]}/{dataset}.csv"
                                  for axis in PLOT_FOLDERS for dataset in (DATASET, "other"))
    for path, (plot,) in data.items():
        content = plot["content"]
        axis = next(a for a, folder in PLOT_FOLDERS.items() if f"/{folder}/" in path)
        assert content["encoding"]["x"]["field"] == axis
        assert content["encoding"]["color"]["field"] == "method"  # one line per method ...
        assert {p["method"] for p in content["data"]["values"]} == set(METHODS)  # ... both drawn


def test_dvc_yaml_plots_the_folders_the_summary_stage_writes():
    declared = {path: props for entry in top_level_plots() for path, props in entry.items()}
    assert declared.keys() == {f"results/plots/{folder}" for folder in PLOT_FOLDERS.values()}
    for axis, folder in PLOT_FOLDERS.items():
        props = declared[f"results/plots/{folder}"]
        assert (props["x"], props["y"], props["template"]) == (axis, "val_acc", TEMPLATE_NAME)
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["summary"]
    outs = {path: props for entry in stage["outs"] for path, props in entry.items()}
    assert outs == {f"results/plots/{folder}/${{item.dataset}}.csv": {"cache": False}
                    for folder in PLOT_FOLDERS.values()}
    assert "--plots results/plots" in stage["cmd"] and "plots" not in stage  # drawn once, by the top level
    template = ROOT / ".dvc" / "plots" / f"{TEMPLATE_NAME}.json"
    assert json.loads(template.read_text()) == PLOT_TEMPLATE
