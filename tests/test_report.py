"""Report stage: tables, pairings, claims and figures built from hand-made run outputs (offline, fast)."""

import csv
import json
import math

import numpy as np
import pytest
import torch
import yaml

from saln.report import beyond
from saln.report.build import build_report
from saln.report.claims import NOT_SUPPORTED, NOT_TESTED, SUPPORTED, evaluate_claims
from saln.report.compare import compare
from saln.report.paper import NO_PAPER_VALUE, NOT_AVAILABLE, load_paper, report_datasets
from saln.report.runs import collect_runs
from saln.report.tables import DATASET_NOT_RUN, NOT_RUN, build_tables, table_markdown, write_csv

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NULLS = {"train_acc": None, "val_acc": None, "train_loss": None, "val_loss": None, "test_acc": None,
         "train_minutes": None}


@pytest.fixture
def paper(tmp_path):
    """A paper with values for Pet's standard run only; everything else null."""
    results = {"pet": {"standard": {**NULLS, "train_acc": 90.0, "val_acc": 80.0, "train_loss": 0.5,
                                    "val_loss": 0.7, "test_acc": 80.0, "train_minutes": 3.0},
                       "saln": dict(NULLS), "jest": dict(NULLS)},
               "cifar10": {m: dict(NULLS) for m in ("standard", "saln", "jest")}}
    raw = {"source": "test paper", "values_note": "", "datasets": {"pet": "Oxford-IIIT Pet", "cifar10": "CIFAR-10"},
           "dataset_keys": {"pets": "pet", "cifar10": "cifar10", "cifar10_subset": "cifar10"},
           "methods": ["standard", "saln", "jest"], "pairings": [["saln", "standard"], ["saln", "jest"]],
           "results": results, "claims": {"max_speedup_vs_standard": 8, "max_acc_gain_vs_standard": 5}}
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_paper(path)


def write_run(root, dataset, method, seed, epochs=3, keep=12, **metrics):
    """metrics.json plus dvclive TSVs and selections.npz, as the train stage writes them."""
    d = root / dataset / method / f"seed{seed}"
    (d / "dvclive" / "plots" / "metrics").mkdir(parents=True)
    base = {"test_acc": 0.5, "test_loss": 1.0, "train_acc": 0.5, "train_loss": 1.0, "val_acc": 0.5,
            "val_loss": 1.0, "best_val_acc": 0.5, "train_seconds": 60.0, "selection_seconds": 0.0,
            "eval_seconds": 1.0, "images_backprop": 64 * epochs, "images_scored": 0,
            "images_forwarded": 64 * epochs, "epochs": epochs, "batch_size": 64, "keep_per_batch": keep,
            "seed": seed}
    m = {**base, **metrics}
    (d / "metrics.json").write_text(json.dumps(m))
    for name, last in [("train_acc", m["train_acc"]), ("val_acc", m["val_acc"]), ("train_loss", m["train_loss"]),
                       ("val_loss", m["val_loss"]), ("train_seconds", m["train_seconds"]),
                       ("images_backprop", m["images_backprop"])]:
        rows = "".join(f"{s}\t{last * (s + 1) / epochs}\n" for s in range(epochs))
        (d / "dvclive" / "plots" / "metrics" / f"{name}.tsv").write_text(f"step\t{name}\n{rows}")
    kept = np.zeros((1, 64), dtype=bool)
    kept[0, :keep] = True
    np.savez(d / "selections.npz", batch=np.array([0]), indices=np.arange(64)[None], kept=kept)
    return d


def by_method(table):
    return dict(table.rows)


def test_tables_have_paper_ours_and_difference(tmp_path, paper):
    write_run(tmp_path, "pets", "standard", 0, test_acc=0.80, train_acc=0.90, train_seconds=120.0)
    write_run(tmp_path, "pets", "standard", 1, test_acc=0.90, train_acc=0.94, train_seconds=240.0)
    write_run(tmp_path, "pets", "saln", 0, test_acc=0.70)
    write_run(tmp_path, "pets", "random", 0, test_acc=0.60)
    runs = collect_runs(["pets"], ["standard", "saln", "random"], [0, 1], tmp_path)
    tables = {t.name: t for t in build_tables(runs, paper, "pets", ["standard", "saln", "random"])}

    test = by_method(tables["test_accuracy"])["standard"][0]
    assert test.paper == 80.0 and test.ours.n == 2
    assert test.ours.mean == pytest.approx(85.0)
    assert test.ours.std == pytest.approx(math.sqrt(50.0))  # sample std of 80 and 90
    assert test.diff == pytest.approx(5.0)

    train = by_method(tables["accuracy"])["standard"][0]
    assert (train.ours.mean, train.diff) == (pytest.approx(92.0), pytest.approx(2.0))
    minutes = by_method(tables["training_time"])["standard"][0]
    assert (minutes.ours.mean, minutes.diff) == (pytest.approx(3.0), pytest.approx(0.0))

    saln = by_method(tables["test_accuracy"])["saln"][0]
    assert saln.paper is None and saln.paper_note == NOT_AVAILABLE and saln.diff is None
    assert by_method(tables["test_accuracy"])["random"][0].paper_note == NO_PAPER_VALUE
    assert by_method(tables["test_accuracy"])["jest"][0].ours_note == NOT_RUN
    # The paper's methods come first, then every other method that ran.
    assert [m for m, _ in tables["test_accuracy"].rows] == ["standard", "saln", "jest", "random"]

    text = table_markdown(tables["test_accuracy"])
    assert "| standard | 80.00 | 85.00 ± 7.07 (n=2) | +5.00 |" in text
    assert "| jest | paper value not available | not run | paper value not available |" in text
    assert "test: paper" in text and "test: ours (mean ± std, n)" in text and "test: difference" in text

    write_csv(tables["test_accuracy"], tmp_path / "t.csv")
    rows = {r["method"]: r for r in csv.DictReader((tmp_path / "t.csv").open())}
    assert float(rows["standard"]["ours_mean"]) == pytest.approx(85.0)
    assert float(rows["standard"]["difference"]) == pytest.approx(5.0)
    assert rows["standard"]["n"] == "2" and rows["jest"]["ours_note"] == NOT_RUN


def test_dataset_without_paper_values_and_dataset_not_run(tmp_path, paper):
    write_run(tmp_path, "digits", "standard", 0)
    runs = collect_runs(["digits"], ["standard"], [0], tmp_path)
    digits = build_tables(runs, paper, "digits", ["standard"])[0]
    assert all(c.paper_note == NO_PAPER_VALUE for _, cells in digits.rows for c in cells)
    assert report_datasets(paper, ["digits", "cifar10_subset"]) == ["digits", "cifar10_subset", "pets"]
    cifar = build_tables(runs, paper, "cifar10", ["standard"], dataset_ran=False)[0]
    assert by_method(cifar)["standard"][0].ours_note == DATASET_NOT_RUN


def test_pairing_speedups_and_claims(tmp_path, paper):
    for seed, (acc_std, acc_saln) in enumerate([(0.80, 0.90), (0.82, 0.92)]):
        write_run(tmp_path, "digits", "standard", seed, keep=64, test_acc=acc_std, train_seconds=100.0 + seed,
                  images_backprop=6400)
        write_run(tmp_path, "digits", "saln", seed, keep=16, test_acc=acc_saln, train_seconds=25.0 + seed,
                  images_backprop=1600)
    runs = collect_runs(["digits"], ["standard", "saln"], [0, 1], tmp_path)
    c = compare(runs, "digits", "saln", "standard")
    assert c.acc_gain == pytest.approx(10.0) and c.n == (2, 2)
    assert c.time_speedup == pytest.approx(100.5 / 25.5)
    assert c.image_speedup == pytest.approx(4.0) and c.bound == pytest.approx(4.0)
    assert compare(runs, "digits", "saln", "jest") is None

    claims = evaluate_claims(runs, paper, ["digits"], filter_ratio=0.75)
    verdicts = [cl.verdict for cl in claims]
    assert verdicts == [SUPPORTED, SUPPORTED, NOT_TESTED, NOT_SUPPORTED, SUPPORTED]
    assert "add jest to train.methods" in claims[2].note
    assert "filter_ratio ≥ 0.875" in claims[3].note  # 8x is beyond the 4x back-prop bound


def test_build_report_writes_markdown_csv_and_pngs(tmp_path, paper):
    train, prepared, out = tmp_path / "train", tmp_path / "prepared", tmp_path / "reports"
    for method, keep in [("standard", 64), ("random", 12), ("saln", 12)]:
        d = write_run(train, "digits", method, 0, keep=keep)
        torch.save({"fc.weight": torch.randn(10, 512) * 0.05, "fc.bias": torch.zeros(10)}, d / "model.pt")
    (prepared / "digits").mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.save(prepared / "digits" / "images.npy", rng.integers(0, 255, (100, 16, 16, 3), dtype=np.uint8))
    (prepared / "digits" / "meta.json").write_text(json.dumps({"classes": [str(i) for i in range(10)]}))

    build_report(["digits"], ["standard", "random", "saln"], [0, 1], 0.8, [0, 3], train, prepared, out, paper,
                 prune_root=tmp_path / "none", active_root=tmp_path / "none")

    report = (out / "report.md").read_text()
    assert "## Claims" in report and report.count("**not tested by this run**") >= 1
    pngs = sorted((out / "figures").glob("*.png"))
    names = {p.name for p in pngs}
    assert {"digits_curves_saln.png", "digits_time_to_accuracy.png", "digits_batch0.png",
            "digits_fc_heatmap.png", "digits_fc_histogram.png"} <= names
    for png in pngs:
        assert png.read_bytes()[:8] == PNG_SIGNATURE and png.stat().st_size > 1000
        assert f"figures/{png.name}" in report
    assert "batch 3 was not logged" in report
    assert (out / "tables" / "digits_test_accuracy.csv").is_file()
    assert (out / "tables" / "pets_pairings.csv").is_file()  # paper datasets appear even when not run


def test_build_report_without_any_runs(tmp_path, paper):
    build_report(["digits"], ["standard", "saln"], [0], 0.8, [0], tmp_path / "none", tmp_path / "none",
                 tmp_path / "reports", paper, prune_root=tmp_path / "none", active_root=tmp_path / "none")
    report = (tmp_path / "reports" / "report.md").read_text()
    assert "No finished run on digits" in report and NOT_TESTED in report
    # The beyond-paper section says which stage has not run instead of failing.
    assert "## Beyond the paper: uncertainty, pruning and active learning" in report
    assert "stage `train` has not run" in report
    assert "stage `active` has not run for this dataset" in report
    assert "stage `prune` has not run for this dataset" in report


# --- Beyond the paper: uncertainty selectors, pruning, active learning -----------------------------

BEYOND_METHODS = ["standard", "random", "saln", "jest", "maxent", "prune_easy", "prune_hard"]


def write_active(root, dataset="digits"):
    """curves.json as stage active writes it: two strategies, 6 measurements (5 rounds)."""
    labels = [10, 20, 30, 40, 50, 60]
    strategies = {
        "maxent_seals": {"score": "maxent", "pool": "seals", "labels": labels,
                         "test_acc": [0.2, 0.4, 0.5, 0.6, 0.7, 0.8],
                         "selection_seconds": [0.01, 0.02, 0.03, 0.04, 0.05], "candidates": [10, 20, 30, 40, 50],
                         "index_seconds": 0.5, "labeled_indices": list(range(60))},
        "random": {"score": "random", "pool": "full", "labels": labels,
                   "test_acc": [0.2, 0.3, 0.35, 0.4, 0.45, 0.5],
                   "selection_seconds": [0.001] * 5, "candidates": [90, 80, 70, 60, 50],
                   "index_seconds": 1e-6, "labeled_indices": list(range(60))},
    }
    path = root / dataset / "curves.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"dataset": dataset, "model": "linear probe", "strategies": strategies}))
    return path


def write_prune(root, dataset="digits", keep_fraction=0.5):
    """summary.json as stage prune writes it (only the keys the report reads, plus a few)."""
    curve = {"fractions": [0.25, 0.5, 1.0], "kept": [25, 50, 100], "auto_mode": ["easy", "hard", "hard"],
             "linear_probe_test_acc": {"easy": [0.6, 0.7, 0.9], "hard": [0.5, 0.8, 0.9],
                                       "random": [0.55, 0.75, 0.9]}}
    path = root / dataset / "summary.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"dataset": dataset, "train_images": 100, "curve": curve,
                                "kept_for_training": {"fraction": keep_fraction, "easy": 50, "hard": 50}}))
    return path


def test_beyond_methods_table_groups_methods_and_aggregates_seeds(tmp_path):
    write_run(tmp_path, "digits", "standard", 0, test_acc=0.80, train_seconds=10.0, images_backprop=400,
              train_images=100)
    write_run(tmp_path, "digits", "standard", 1, test_acc=0.90, train_seconds=20.0, images_backprop=400,
              train_images=100)
    write_run(tmp_path, "digits", "saln", 0, test_acc=0.70, images_backprop=80, train_images=100)
    write_run(tmp_path, "digits", "random", 0, test_acc=0.60, train_images=100)
    write_run(tmp_path, "digits", "maxent", 0, test_acc=0.65, images_scored=400, train_images=100)
    write_run(tmp_path, "digits", "prune_easy", 0, test_acc=0.50, images_backprop=200, train_images=50)
    runs = collect_runs(["digits"], BEYOND_METHODS, [0, 1], tmp_path)

    rows = beyond.method_rows(runs, "digits", BEYOND_METHODS, ["standard", "saln", "jest"])
    assert [(r.group, r.method) for r in rows] == [
        (beyond.PAPER_GROUP, "standard"), (beyond.PAPER_GROUP, "saln"), (beyond.CONTROL_GROUP, "random"),
        (beyond.BEYOND_GROUP, "maxent"), (beyond.BEYOND_GROUP, "prune_easy")]  # jest, prune_hard: not run
    standard = rows[0].stats
    assert standard["test_acc"].mean == pytest.approx(0.85) and standard["test_acc"].n == 2
    assert standard["test_acc"].std == pytest.approx(math.sqrt(0.005))
    assert standard["train_seconds"].mean == pytest.approx(15.0)
    assert rows[3].stats["images_scored"].mean == 400 and rows[4].stats["train_images"].mean == 50

    text = beyond.methods_markdown(rows)
    assert "| paper method | standard | 85.00 ± 7.07 (n=2) | 15.0 ± 7.1 (n=2) | 400 ± 0 (n=2) |" in text
    assert "| beyond the paper | prune_easy | 50.00 ± 0.00 (n=1) |" in text

    beyond.write_methods_csv("digits", rows, tmp_path / "m.csv")
    lines = list(csv.DictReader((tmp_path / "m.csv").open()))
    got = {(r["method"], r["metric"]): r for r in lines}
    assert len(lines) == 5 * len(beyond.COLUMNS)
    assert float(got["standard", "test_acc"]["mean"]) == pytest.approx(0.85)
    assert got["standard", "test_acc"]["n"] == "2" and got["maxent", "test_acc"]["group"] == beyond.BEYOND_GROUP
    assert float(got["prune_easy", "train_images"]["mean"]) == 50


def test_active_learning_table_reads_budgets_and_selection_seconds(tmp_path):
    data, why = beyond.load_result(write_active(tmp_path), "active")
    assert why == ""
    strategies = beyond.strategy_curves(data)
    budgets = beyond.label_budgets(strategies)
    assert budgets == [10, 30, 60]  # first, middle, last measurement
    rows = {r.strategy: r for r in beyond.active_rows(strategies, budgets)}
    assert rows["maxent_seals"].acc_at == [0.2, 0.5, 0.8]
    assert rows["maxent_seals"].selection_seconds == pytest.approx(0.03)
    assert rows["maxent_seals"].candidates == pytest.approx(30.0)
    assert rows["maxent_seals"].index_seconds == pytest.approx(0.5)
    assert math.isnan(rows["random"].index_seconds)  # no neighbour index for a full pool
    assert rows["random"].acc_at == [0.2, 0.35, 0.5]

    text = beyond.active_markdown(list(rows.values()), budgets)
    assert "test acc (%) at 30 labels" in text
    assert "| maxent_seals | 20.00 | 50.00 | 80.00 | 30 | 30 | 500 |" in text
    assert "| random | 20.00 | 35.00 | 50.00 | 1 | 70 | — |" in text

    beyond.write_active_csv("digits", list(rows.values()), budgets, tmp_path / "a.csv")
    got = {r["strategy"]: r for r in csv.DictReader((tmp_path / "a.csv").open())}
    assert float(got["maxent_seals"]["test_acc_at_60_labels"]) == pytest.approx(0.8)
    assert float(got["random"]["mean_selection_seconds_per_round"]) == pytest.approx(0.001)


def test_pruning_table_and_resnet_points(tmp_path):
    summary, _ = beyond.load_result(write_prune(tmp_path / "prune"), "prune")
    curve = beyond.prune_curve(summary)
    assert curve.fractions == [0.25, 0.5, 1.0] and curve.kept == [25, 50, 100]
    assert curve.acc["hard"] == [0.5, 0.8, 0.9] and list(curve.acc) == ["easy", "hard", "random"]
    text = beyond.prune_markdown(curve)
    assert "| 0.5 | 50 | hard | 70.00 | 80.00 | 75.00 |" in text

    beyond.write_prune_csv("digits", curve, tmp_path / "p.csv")
    got = list(csv.DictReader((tmp_path / "p.csv").open()))
    assert float(got[1]["linear_probe_test_acc_easy"]) == pytest.approx(0.7) and got[0]["auto_mode"] == "easy"

    for seed, acc in enumerate([0.4, 0.6]):
        write_run(tmp_path / "train", "digits", "prune_hard", seed, test_acc=acc, train_images=50)
    write_run(tmp_path / "train", "digits", "saln", 0)
    runs = collect_runs(["digits"], BEYOND_METHODS, [0, 1], tmp_path / "train")
    points = beyond.resnet_points(runs, "digits", BEYOND_METHODS)
    assert list(points) == ["prune_hard"]
    assert points["prune_hard"][0].mean == pytest.approx(0.5) and points["prune_hard"][0].n == 2
    assert points["prune_hard"][1].mean == 50


def test_missing_or_broken_stage_outputs_are_reported_not_raised(tmp_path):
    data, why = beyond.load_result(tmp_path / "active" / "digits" / "curves.json", "active")
    assert data is None and "stage `active` has not run" in why
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    data, why = beyond.load_result(broken, "prune")
    assert data is None and "could not be read" in why


def test_build_report_writes_the_beyond_paper_section_and_figures(tmp_path, paper):
    train, out = tmp_path / "train", tmp_path / "reports"
    for method in ["standard", "saln", "maxent", "prune_easy", "prune_hard"]:
        for seed in (0, 1):
            write_run(train, "digits", method, seed, test_acc=0.5 + 0.1 * seed,
                      train_images=50 if method.startswith("prune_") else 100)
    write_active(tmp_path / "active")
    write_prune(tmp_path / "prune", keep_fraction=0.4)  # stale: params say 0.5

    build_report(["digits"], BEYOND_METHODS, [0, 1], 0.8, [0], train, tmp_path / "prepared", out, paper,
                 keep_fraction=0.5, prune_root=tmp_path / "prune", active_root=tmp_path / "active")

    report = (out / "report.md").read_text()
    section = report[report.index("## Beyond the paper"):report.index("## Tables as CSV")]
    for name in ("digits_active_learning.png", "digits_pruning_curve.png"):
        png = out / "figures" / name
        assert png.read_bytes()[:8] == PNG_SIGNATURE and png.stat().st_size > 1000
        assert f"](figures/{name})" in section
    for name in ("digits_beyond_methods.csv", "digits_active_learning.csv", "digits_pruning_curve.csv"):
        assert (out / "tables" / name).is_file() and f"tables/{name}" in report
    assert "| beyond the paper | prune_hard | 55.00 ± 7.07 (n=2) |" in section
    assert "Not run on digits: random, jest." in section
    assert "stale" in section and "No prune_easy / prune_hard" not in section


def test_build_report_survives_malformed_stage_outputs(tmp_path, paper):
    for stage, name in [("active", "curves.json"), ("prune", "summary.json")]:
        (tmp_path / stage / "digits").mkdir(parents=True)
        (tmp_path / stage / "digits" / name).write_text(json.dumps({"strategies": {"x": {"labels": [1]}}}))
    build_report(["digits"], ["standard"], [0], 0.8, [0], tmp_path / "none", tmp_path / "none",
                 tmp_path / "reports", paper, prune_root=tmp_path / "prune", active_root=tmp_path / "active")
    report = (tmp_path / "reports" / "report.md").read_text()
    assert "No active-learning results" in report and "curves.json` is malformed" in report
    assert "No pruning curve" in report and "summary.json` is malformed" in report
    assert not list((tmp_path / "reports" / "figures").glob("*.png"))
