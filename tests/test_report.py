"""Report stage: the paper's tables, the pairings beside the paper's, figures, the beyond-the-paper and
diagnostics sections, built from hand-made run outputs laid out as the train and best_lr stages write
them (offline, CPU, fast). The verdicts' statistics and measurements are tested in test_verdicts.py."""

import ast
import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from saln.errors import SalnError
from saln.layout import HEAD_FILE, METRICS_FILE, SELECTIONS_FILE, rate_dir, run_dir
from saln.rates import choose_best
from saln.report import beyond
from saln.report.build import Roots, build_report, classifier_weight
from saln.report.compare import compare, pair_rows, pairs_markdown
from saln.report.figures import method_styles
from saln.report.headline import NOT_SUPPORTED, SUPPORTED, headline_claims
from saln.report.history import epoch_ends, read_history
from saln.report.markdown import markdown_table
from saln.report.paper import NOT_IN_PAPER, PAPER_FILE, load_paper, report_datasets
from saln.report.regime import Regime, budget_line, ours_header, regime_from_params
from saln.report.runs import collect_runs
from saln.report.tables import DATASET_NOT_RUN, NOT_RUN, build_tables, table_markdown, write_csv

ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
START_ACC = 0.1   # the initial model's accuracy in the epoch-0 row
LR = 0.01
CLASSES = 10


@pytest.fixture(scope="module")
def paper():
    """The project's own copy of the paper's numbers (saln/report/paper.yaml)."""
    return load_paper()


def make_regime(datasets=("digits",), methods=("standard", "saln"), seeds=(0, 1), **changes) -> Regime:
    values = dict(datasets=list(datasets), methods=list(methods), seeds=list(seeds), epochs=3, lrs=[LR],
                  filter_ratio=0.8, log_batches=[0], arch="resnet18", weights="none", backbone="resnet50",
                  feature_weights="none", image_sizes={d: 16 for d in datasets}, keep_fraction=None)
    return Regime(**{**values, **changes})


def make_roots(tmp_path) -> Roots:
    return Roots(train=tmp_path / "train", models=tmp_path / "models", reference=tmp_path / "reference",
                 prepared=tmp_path / "prepared", prune=tmp_path / "prune", active=tmp_path / "active",
                 lr=tmp_path / "lr", features=tmp_path / "features", out=tmp_path / "reports",
                 diagnostics=tmp_path / "diagnostics")


# --- Run outputs as the stages write them ---------------------------------------------------------


def write_curves(run: Path, rows: list[dict]) -> None:
    """DVCLive's files: one TSV per metric under dvclive/plots/metrics, a line at every step that logged it
    (the trainer logs one row per step: the epoch-0 row, budget points inside an epoch, epoch ends)."""
    folder = run / "dvclive" / "plots" / "metrics"
    folder.mkdir(parents=True, exist_ok=True)
    for name in dict.fromkeys(k for row in rows for k in row):
        lines = "".join(f"{step}\t{row[name]}\n" for step, row in enumerate(rows) if name in row)
        (folder / f"{name}.tsv").write_text(f"step\t{name}\n{lines}")


def epoch_rows(acc, seconds, images, val=None, val_loss=1.0) -> list[dict]:
    """The rows of a run with no budget point inside an epoch: the epoch-0 row (the model before training,
    nothing spent), then one row per epoch end (``acc``: test accuracy; ``val``: validation, default the same)."""
    val = acc if val is None else val
    rows = [{"epoch": 0, "val_loss": 3.0, "val_acc": START_ACC, "test_loss": 3.0, "test_acc": START_ACC,
             "train_seconds": 0.0, "selection_seconds": 0.0, "images_backprop": 0, "images_scored": 0, "steps": 0}]
    for epoch, (a, v, s, i) in enumerate(zip(acc, val, seconds, images), start=1):
        rows.append({"epoch": epoch, "val_loss": val_loss, "val_acc": v, "test_loss": 1.0, "test_acc": a,
                     "train_seconds": s, "selection_seconds": 0.0, "images_backprop": i, "images_scored": 0,
                     "steps": epoch, "train_loss": 1.0, "train_acc": a})
    return rows


def write_run(train, dataset, method, seed, lr=LR, rows=None, acc=(0.3, 0.4, 0.5), seconds=(1.0, 2.0, 3.0),
              images=(64, 128, 192), val=None, keep=12, batch=64, fraction=1.0, **metrics) -> Path:
    """One rate's finished run: dvclive curves and metrics.json (final values = the last row's, as the
    trainer writes them; ``metrics`` overrides any key)."""
    rows = rows or epoch_rows(acc, seconds, images, val)
    d = rate_dir(run_dir(train, dataset, method, seed), lr, fraction)
    write_curves(d, rows)
    last = rows[-1]
    final = {k: last[k] for k in ("test_acc", "test_loss", "train_acc", "train_loss", "val_acc", "val_loss",
                                  "train_seconds", "selection_seconds", "images_backprop", "images_scored",
                                  "steps") if k in last}
    final |= {"best_val_acc": max(r["val_acc"] for r in rows[1:]), "epochs": round(last["epoch"]),
              "batch_size": batch, "keep_per_batch": keep, "lr": lr, "seed": seed, "train_images": 1149,
              "num_classes": CLASSES}
    (d / METRICS_FILE).write_text(json.dumps({**final, **metrics}))
    return d


def write_models(models, dataset, method, seed, lr=LR, keep=12, batch=64, dim=32, fraction=1.0) -> Path:
    """The classifier head and logged selections the train stage moves under results/models."""
    d = rate_dir(run_dir(models, dataset, method, seed), lr, fraction)
    d.mkdir(parents=True)
    torch.save({"classifier.weight": torch.randn(CLASSES, dim, generator=torch.Generator().manual_seed(seed)),
                "classifier.bias": torch.zeros(CLASSES)}, d / HEAD_FILE)
    kept = np.zeros((1, batch), dtype=bool)
    kept[0, :keep] = True
    np.savez(d / SELECTIONS_FILE, batch=np.array([0]), indices=np.arange(batch)[None], kept=kept)
    return d


def write_best(train, lr_root, dataset, methods, seeds, lrs=(LR,)) -> dict:
    """best.json as stage best_lr writes it (``choose_best`` on the runs written)."""
    summary = choose_best(dataset, list(methods), list(seeds), list(lrs), Path(train))
    path = Path(lr_root) / dataset / "best.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2))
    return summary


def write_prepared(prepared, dataset="digits", n=200, size=16) -> None:
    """data/prepared/<ds>: labels (balanced), splits, images and meta.json."""
    d = Path(prepared) / dataset
    d.mkdir(parents=True)
    labels = np.arange(n) % CLASSES
    np.save(d / "labels.npy", labels)
    order = np.random.default_rng(0).permutation(n)
    np.savez(d / "splits.npz", train=order[:n // 2], val=order[n // 2:n // 2 + n // 5],
             test=order[n // 2 + n // 5:n - n // 10], reference=order[n - n // 10:])
    np.save(d / "images.npy", np.random.default_rng(1).integers(0, 255, (n, size, size, 3), dtype=np.uint8))
    (d / "meta.json").write_text(json.dumps({"classes": [str(i) for i in range(CLASSES)]}))


def write_one_offs(roots: Roots, dataset="digits", extract=2.0, reference=(30.0, 1.0)) -> None:
    """Stage features' probe.json (feature extraction seconds) and stage reference's metrics.json."""
    (roots.features / dataset).mkdir(parents=True)
    (roots.features / dataset / "probe.json").write_text(json.dumps(
        {"backbone": "resnet50", "weights": "none", "chance": 0.1, "probe_test_acc": 0.5,
         "probe_test_acc_random_init": 0.1, "extract_seconds": extract}))
    (roots.reference / dataset).mkdir(parents=True)
    (roots.reference / dataset / "metrics.json").write_text(json.dumps(
        {"train_seconds": reference[0], "scoring_seconds": reference[1]}))


def by_method(table):
    return dict(table.rows)


# --- The paper's numbers --------------------------------------------------------------------------


def test_paper_yaml_holds_every_number_of_tables_1_to_16(paper, tmp_path):
    assert "arXiv:2412.17069" in paper.source
    assert [t.number for t in paper.tables] == list(range(1, 17))
    for key in ("pets", "cifar10"):
        for method in ("standard", "saln", "jest"):
            for metric in ("train_acc", "val_acc", "train_loss", "val_loss", "test_acc", "train_minutes"):
                assert isinstance(paper.value(key, method, metric), float)
    # The paper's own arithmetic, as its README states it: 4.78 pp (Table 3), 3.88x (Table 4),
    # and JEST above SALN on Pet test accuracy (Table 7).
    assert paper.value("pets", "saln", "test_acc") - paper.value("pets", "standard", "test_acc") == \
        pytest.approx(4.78)
    assert paper.value("pets", "standard", "train_minutes") / paper.value("pets", "saln", "train_minutes") == \
        pytest.approx(3.88, abs=0.005)
    assert paper.value("pets", "jest", "test_acc") > paper.value("pets", "saln", "test_acc")
    assert paper.value("cifar10_subset", "saln", "val_acc") == paper.value("cifar10", "saln", "val_acc")
    assert paper.value("digits", "saln", "test_acc") is None and paper.value("pets", "random", "test_acc") is None
    assert len(paper.inconsistencies) >= 4 and paper.setting["epochs"] == 25

    raw = yaml.safe_load(PAPER_FILE.read_text())
    raw["results"]["pet"]["saln"]["test_acc"] = None
    broken = tmp_path / "paper.yaml"
    broken.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="results.pet.saln lacks test_acc"):
        load_paper(broken)


def test_tables_show_the_paper_value_ours_and_the_difference(tmp_path, paper):
    for seed, (acc, sec) in enumerate([(0.80, 120.0), (0.90, 240.0)]):
        write_run(tmp_path, "pets", "standard", seed, acc=(0.5, 0.7, acc), seconds=(sec / 3, 2 * sec / 3, sec))
        # A second rate whose test accuracy is higher but whose validation accuracy is lower: never shown.
        write_run(tmp_path, "pets", "standard", seed, lr=0.1, acc=(0.5, 0.7, 0.99), val=(0.3, 0.3, 0.3))
        write_run(tmp_path, "pets", "saln", seed, acc=(0.5, 0.6, 0.70), seconds=(15.0, 30.0, 45.0))
        write_run(tmp_path, "pets", "random", seed, acc=(0.5, 0.55, 0.60))
    methods = ["standard", "saln", "random"]
    best = write_best(tmp_path, tmp_path / "lr", "pets", methods, [0, 1], [LR, 0.1])
    assert best["methods"]["standard"]["best_lr"] == LR and best["methods"]["saln"]["best_lr"] == LR
    runs = collect_runs(["pets"], methods, [0, 1], tmp_path, tmp_path / "lr")
    assert {(r["method"], r["lr"]) for r in runs} == {(m, LR) for m in methods} and len(runs) == 6
    ours = ours_header(make_regime(["pets"], methods), "pets", paper.setting, paper.dataset_name("pets"))
    assert ours == "ours (16 px, 3 epochs, ResNet-18 from scratch)"
    tables = {t.name: t for t in build_tables(runs, paper, "pets", methods, ours)}

    test = by_method(tables["test_accuracy"])["standard"][0]
    assert test.paper == 82.02 and test.ours.n == 2
    assert test.ours.mean == pytest.approx(85.0) and test.ours.std == pytest.approx(math.sqrt(50.0))
    assert test.diff == pytest.approx(85.0 - 82.02)
    assert by_method(tables["test_accuracy"])["random"][0].paper is None
    assert by_method(tables["test_accuracy"])["jest"][0].ours_note == NOT_RUN
    assert [m for m, _ in tables["test_accuracy"].rows] == ["standard", "saln", "jest", "random"]

    text = table_markdown(tables["test_accuracy"])
    assert "Table 3 (saln vs standard)" in tables["test_accuracy"].title and "Table 7" in tables["test_accuracy"].title
    assert "| standard | 82.02 | 85.00 ± 7.07 (n=2) | +2.98 |" in text
    assert f"| random | {NOT_IN_PAPER} | 60.00 ± 0.00 (n=2) | — |" in text
    assert "| jest | 87.55 | not run | not run |" in text
    assert f"test: {ours}, mean ± std (n)" in text and "not available" not in text

    # Training time: our seconds and the ratio to standard beside the paper's minutes and ratio.
    time = table_markdown(tables["training_time"])
    assert "Table 4" in tables["training_time"].title and "Table 8" in tables["training_time"].title
    assert f"| saln | 6.31 | {6.31 / 24.48:.3f} | 45.00 ± 0.00 (n=2) | {45 / 180:.3f} | " \
           f"{45 / 180 - 6.31 / 24.48:+.3f} |" in time
    write_csv(tables["training_time"], tmp_path / "t.csv")
    rows = {r["method"]: r for r in csv.DictReader((tmp_path / "t.csv").open())}
    assert float(rows["saln"]["ours_ratio_to_standard"]) == pytest.approx(0.25)
    assert float(rows["saln"]["paper"]) == 6.31 and rows["saln"]["difference"] == ""


def test_a_dataset_without_paper_values_shows_ours_alone(tmp_path, paper):
    write_run(tmp_path, "digits", "standard", 0)
    write_best(tmp_path, tmp_path / "lr", "digits", ["standard"], [0])
    runs = collect_runs(["digits"], ["standard"], [0], tmp_path, tmp_path / "lr")
    digits = build_tables(runs, paper, "digits", ["standard"], "ours (digits, 16 px)")[2]
    assert not digits.with_paper and [m for m, _ in digits.rows] == ["standard"]
    assert table_markdown(digits).splitlines()[0] == "| method | test: ours (digits, 16 px), mean ± std (n) |"
    assert report_datasets(paper, ["digits", "cifar10_subset"]) == ["digits", "cifar10_subset", "pets"]
    cifar = build_tables(runs, paper, "cifar10", ["standard"], "ours (not run)", dataset_ran=False)[0]
    assert by_method(cifar)["standard"][0].ours_note == DATASET_NOT_RUN
    assert by_method(cifar)["standard"][0].paper == 85.54


def test_runs_are_collected_at_each_methods_best_rate_only(tmp_path):
    """collect_runs reads best.json: a method best_lr has not judged (a seed missing at every rate) is left out."""
    for seed in (0, 1):
        write_run(tmp_path, "digits", "standard", seed, lr=0.01, acc=(0.3, 0.4, 0.5))
        write_run(tmp_path, "digits", "standard", seed, lr=0.03, acc=(0.3, 0.4, 0.6))
    write_run(tmp_path, "digits", "saln", 0, lr=0.01)   # seed 1 never finished
    summary = write_best(tmp_path, tmp_path / "lr", "digits", ["standard", "saln"], [0, 1], [0.01, 0.03])
    assert summary["methods"]["standard"]["best_lr"] == 0.03 and summary["methods"]["saln"]["best_lr"] is None
    runs = collect_runs(["digits"], ["standard", "saln"], [0, 1], tmp_path, tmp_path / "lr")
    assert sorted((r["method"], r["seed"], r["test_acc"]) for r in runs) == [("standard", 0, 0.6),
                                                                           ("standard", 1, 0.6)]
    assert all(Path(r["dir"]) == rate_dir(run_dir(tmp_path, "digits", "standard", r["seed"]), 0.03) for r in runs)
    assert collect_runs(["digits"], ["standard"], [0, 1], tmp_path, tmp_path / "no_lr") == []  # before best_lr


def test_regime_from_params_and_the_ours_header(paper):
    params = {"data": {"names": ["cifar10_subset"], "sources": {"cifar10_subset": {"kind": "npz", "image_size": 32}}},
              "train": {"methods": {"baselines": ["standard"], "spectral": ["saln"]}, "seeds": [0, 1], "epochs": 3,
                        "lrs": [0.003, 0.01], "filter_ratio": 0.8, "log_batches": [0], "budget": "images",
                        "schedule": "linear", "warmup": 0.1, "budget_fractions": [1.0, 0.1875]},
              "model": {"arch": "efficientnet_lite0", "weights": "none"},
              "features": {"backbone": "efficientnet_lite0", "weights": "imagenet"}, "prune": {"keep_fraction": 0.5}}
    regime = regime_from_params(params)
    assert regime.image_sizes == {"cifar10_subset": 32} and regime.keep_fraction == 0.5
    assert regime.lrs == [0.003, 0.01]
    assert (regime.budget, regime.schedule, regime.warmup, regime.fractions) == ("images", "linear", 0.1, [0.1875, 1.0])
    assert budget_line(regime) == ("budget (images): standard's images in 3 epochs for every method; schedule linear "
                                   "after a 10% warm-up, decaying to 0 at each run's own last step; budget fractions "
                                   "0.1875, 1 (one completed run each)")
    header = ours_header(regime, "cifar10_subset", paper.setting, paper.dataset_name("cifar10_subset"))
    assert header == "ours (CIFAR-10 subset, 32 px, 3 epochs, EfficientNet-Lite0 from scratch)"
    paper_like = regime_from_params({**params, "train": {**params["train"], "epochs": 25},
                                     "model": {"arch": "resnet18", "weights": "imagenet"}})
    assert ours_header(paper_like, "cifar10_subset", paper.setting, "CIFAR-10") == "ours (CIFAR-10 subset, 32 px)"
    with pytest.raises(SalnError, match="model.weights is missing"):
        regime_from_params({**params, "model": {"arch": "resnet18"}})
    with pytest.raises(SalnError, match="train.lrs"):
        regime_from_params({**params, "train": {**params["train"], "lrs": []}})


def test_markdown_table_is_the_one_writer():
    assert markdown_table(["a", "b"], [[1, "x|y"]]) == "| a | b |\n|---|---|\n| 1 | x\\|y |"
    with pytest.raises(ValueError, match="row has 1 cells"):
        markdown_table(["a", "b"], [["only one"]])
    # No module of the report builds a table row by hand.
    for path in (ROOT / "saln" / "report").glob("*.py"):
        if path.name != "markdown.py":
            assert '"|---' not in path.read_text() and "'|---" not in path.read_text(), path.name


# --- Curves ---------------------------------------------------------------------------------------


def test_history_reads_current_and_old_logs(tmp_path):
    rows = epoch_rows((0.3, 0.4, 0.5), (1.0, 2.0, 3.0), (64, 128, 192))
    # A budget point inside epoch 1 (half-way: 32 images), logged between the epoch-0 row and epoch 1's end.
    rows.insert(1, {"epoch": 0.5, "val_loss": 2.0, "val_acc": 0.2, "test_loss": 2.0, "test_acc": 0.25,
                    "train_seconds": 0.5, "selection_seconds": 0.0, "images_backprop": 32, "images_scored": 0,
                    "steps": 1})
    new = read_history(write_run(tmp_path, "d", "m", 0, rows=rows))
    assert new.has_start and list(new.epoch) == [0, 0.5, 1, 2, 3]
    x, y = new.series("images_backprop", "test_acc")
    assert list(x) == [0, 32, 64, 128, 192] and list(y) == [START_ACC, 0.25, 0.3, 0.4, 0.5]
    assert list(new.series("epoch", "train_acc")[0]) == [1, 2, 3]   # logged at epoch ends only
    ends = epoch_ends(new)
    assert list(ends.epoch) == [0, 1, 2, 3] and list(ends.series("epoch", "test_acc")[1]) == [START_ACC, 0.3, 0.4, 0.5]

    # An old run: no epoch-0 row, no ``epoch`` series, no test accuracy per epoch (step k is epoch k + 1).
    old_dir = tmp_path / "old"
    write_curves(old_dir, [{"val_acc": a, "images_backprop": i, "train_seconds": s}
                           for a, i, s in ((0.3, 64, 1.0), (0.4, 128, 2.0), (0.5, 192, 3.0))])
    old = read_history(old_dir)
    assert not old.has_start and list(old.epoch) == [1, 2, 3]
    assert not len(old.series("epoch", "test_acc")[0]) and list(old.series("epoch", "val_acc")[1]) == [0.3, 0.4, 0.5]


# --- The paper's pairings and the abstract's claims -----------------------------------------------


def _finals(tmp_path, dataset, spec, seeds=(0, 1, 2), lr_root=None):
    """Write runs whose final test accuracy, seconds and images are ``spec[method]`` = (accs, seconds,
    images, keep), one value per seed, plus best.json; returns the collected runs."""
    for method, (accs, seconds, images, keep) in spec.items():
        for seed, acc, sec, img in zip(seeds, accs, seconds, images):
            write_run(tmp_path, dataset, method, seed, acc=(0.3, 0.4, acc), seconds=(sec / 3, 2 * sec / 3, sec),
                      images=(img // 3, 2 * img // 3, img), keep=keep)
    lr_root = lr_root or tmp_path / "lr"
    write_best(tmp_path, lr_root, dataset, list(spec), seeds)
    return collect_runs([dataset], list(spec), list(seeds), tmp_path, lr_root)


def test_pairings_put_our_gain_and_speedup_beside_the_papers(tmp_path, paper):
    standard, saln = (0.50, 0.60, 0.70), (0.55, 0.65, 0.52)
    runs = _finals(tmp_path, "pets", {"standard": (standard, (3.0,) * 3, (192,) * 3, 64),
                                      "saln": (saln, (1.0,) * 3, (39,) * 3, 12)})
    c = compare(runs, "pets", "saln", "standard")
    gain = 100 * (np.mean(saln) - np.mean(standard))
    se = 100 * math.sqrt(np.var(saln, ddof=1) / 3 + np.var(standard, ddof=1) / 3)
    assert c.acc_gain == pytest.approx(gain) and c.acc_gain_se == pytest.approx(se)
    diffs = 100 * (np.array(saln) - np.array(standard))   # seed by seed: the verdict's interval
    assert c.gain.mean == pytest.approx(diffs.mean()) and c.gain.n == 3
    assert c.gain.low < 0 < c.gain.high   # the interval spans 0: no win
    assert c.time_speedup == pytest.approx(3.0) and c.image_speedup == pytest.approx(192 / 39)
    assert c.bound == pytest.approx(64 / 12) and c.n == (3, 3)

    rows = pair_rows(runs, paper, "pets")
    assert [(r.method, r.baseline) for r in rows] == [("saln", "standard"), ("saln", "jest")]
    assert rows[0].paper_gain == pytest.approx(86.80 - 82.02)
    assert rows[0].paper_speedup == pytest.approx(24.48 / 6.31)
    assert rows[1].ours is None and rows[1].ours_note == NOT_RUN
    text = pairs_markdown(rows, "ours", with_paper=True)
    assert (f"| saln vs standard | +4.78 | {gain:+.2f} ± {se:.2f} (n=3 vs 3) | {gain - 4.78:+.2f} | "
            f"{24.48 / 6.31:.2f} | 3.00 | {3.0 - 24.48 / 6.31:+.2f} | {192 / 39:.2f} | {64 / 12:.2f} |") in text
    assert f"| saln vs jest | {paper.value('pets', 'saln', 'test_acc') - 87.55:+.2f} | not run | not run |" in text
    alone = pairs_markdown(pair_rows(runs, paper, "digits", dataset_ran=False), "ours", with_paper=False)
    assert "paper" not in alone and "dataset not run" in alone


def test_headline_claims_use_the_paper_tables_and_the_back_prop_bound(tmp_path, paper):
    runs = _finals(tmp_path, "digits", {"standard": ((0.70, 0.72), (100.0, 100.0), (192, 192), 64),
                                        "saln": ((0.80, 0.82), (25.0, 25.0), (48, 48), 16)}, seeds=(0, 1))
    speed, gain = headline_claims(runs, paper, ["digits"], filter_ratio=0.75)
    assert speed.paper_shows == "3.88× (Oxford-IIIT Pet, Table 4)" and speed.verdict == NOT_SUPPORTED
    assert "filter_ratio ≥ 0.875" in speed.note   # 8x is beyond the 4x back-prop bound
    assert "4.00× by seconds" in speed.measured
    assert gain.paper_shows == "4.78 pp (Oxford-IIIT Pet, Table 3)" and gain.verdict == SUPPORTED
    assert "+10.00 pp [+10.00, +10.00] (n=2)" in gain.measured   # every seed gains 10 pp: above the 5 pp target


# --- Figures --------------------------------------------------------------------------------------


def test_classifier_layer_is_found_without_knowing_the_arch():
    resnet = {"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.ones(10, 512), "fc.bias": torch.zeros(10)}
    efficientnet = {"conv_head.weight": torch.zeros(1280, 320, 1, 1), "bn2.weight": torch.zeros(1280),
                    "classifier.weight": torch.ones(37, 1280), "classifier.bias": torch.zeros(37)}
    assert classifier_weight(resnet, 10)[0] == "fc.weight" and classifier_weight(resnet, None)[1].shape == (10, 512)
    assert classifier_weight(efficientnet, 37)[0] == "classifier.weight"
    assert classifier_weight(efficientnet, 10) is None   # no 2-D weight with one row per class


def test_every_method_keeps_one_colour_and_marker():
    methods = ["standard", "saln", "jest", "random", "jest_joint", "rholoss", "maxent", "infodensity",
               "prune_easy", "prune_hard", "prune_auto", "extra"]
    styles = method_styles(methods)
    assert len({(s["color"], s["marker"]) for s in styles.values()}) == len(methods)
    assert len({s["color"] for s in styles.values()}) == len(methods)
    assert method_styles(methods) == styles   # a fixed mapping: the same in every figure


# --- The whole report -----------------------------------------------------------------------------


def write_tree(roots: Roots, methods, seeds=(0, 1), lrs=(LR,), dataset="digits", acc=None, val=None):
    """A results tree for ``methods``: runs at every rate with their heads and selections, best.json,
    prepared data and the one-off costs. ``acc(method, seed, lr)`` gives the three epochs' test accuracy,
    ``val(method, seed, lr)`` the validation accuracy (None: the same as the test accuracy)."""
    acc = acc or (lambda method, seed, lr: (0.3, 0.4, 0.5 + 0.01 * seed))
    val = val or (lambda method, seed, lr: None)
    for method in methods:
        keep = 64 if method == "standard" else 12
        for seed in seeds:
            for lr in lrs:
                write_run(roots.train, dataset, method, seed, lr=lr, keep=keep, acc=acc(method, seed, lr),
                          val=val(method, seed, lr), images=tuple(e * 17 * keep for e in (1, 2, 3)))
                write_models(roots.models, dataset, method, seed, lr=lr, keep=keep)
    write_best(roots.train, roots.lr, dataset, methods, seeds, lrs)
    write_prepared(roots.prepared, dataset)
    write_one_offs(roots, dataset)


def test_build_report_writes_markdown_csv_and_pngs(tmp_path, paper):
    roots = make_roots(tmp_path)
    write_tree(roots, ["standard", "random", "saln"])
    regime = make_regime(methods=["standard", "random", "saln"], log_batches=[0, 3], arch="efficientnet_lite0")
    runs = build_report(regime, roots, paper)
    assert len(runs) == 6

    report = (roots.out / "report.md").read_text()
    for number in range(1, 17):
        assert f"Table {number} (" in report
    assert "not available" not in report and "arXiv:2412.17069" in report
    assert "Table 7 prints JEST's Pet test accuracy (87.55%) above SALN's" in report
    assert "| standard | 82.02 | dataset not run | dataset not run |" in report      # Pet, Table 3
    assert "`digits` has no paper values: ours are shown alone" in report
    assert "(a) equal images back-propagated: test acc (pp)" in report and "| saln vs random |" in report
    assert "`jest` has no finished run" in report   # not in train.methods: no verdict against it
    assert "learner EfficientNet-Lite0 from scratch; SALN features ResNet-50" in report
    assert "ours (digits, 16 px, 3 epochs, EfficientNet-Lite0 from scratch)" in report
    assert "#### Rates" in report and "#### Time to target" in report and "#### All-in cost" in report
    assert "classifier layer (`classifier.weight`)" in report and "fc-layer" not in report
    names = {p.name for p in (roots.out / "figures").glob("*.png")}
    assert {"digits_curves_saln.png", "digits_time_to_accuracy.png", "digits_batch0.png",
            "digits_classifier_heatmap.png", "digits_classifier_histogram.png"} <= names
    for name in names:
        png = roots.out / "figures" / name
        assert png.read_bytes()[:8] == PNG_SIGNATURE and png.stat().st_size > 1000
        assert f"figures/{name}" in report
    assert "batch 3 was not logged" in report
    # standard keeps every image, so only the selectors appear in the batch grid
    assert "the images each method selected (random, saln)" in report
    for name in ("digits_test_accuracy.csv", "digits_time_to_target.csv", "digits_all_in_cost.csv",
                 "pets_pairings.csv", "cifar10_training_time.csv"):
        assert (roots.out / "tables" / name).is_file() and f"tables/{name}" in report
    assert "| saln |" in (roots.out / "metrics.md").read_text()
    assert "## Why SALN keeps what it keeps" not in report   # stage diagnostics has not run


def test_build_report_without_any_runs(tmp_path, paper):
    roots = make_roots(tmp_path)
    write_prepared(roots.prepared)   # stage prepare runs before any training
    build_report(make_regime(), roots, paper)
    report = (roots.out / "report.md").read_text()
    assert "No finished run on digits" in report and "**not tested**" in report
    assert "`saln` has no finished run" in report and "No time-to-target table" in report
    assert "## Beyond the paper: uncertainty, pruning and active learning" in report
    assert "stage `train` has not run" in report
    assert "stage `active` has not run for this dataset" in report
    assert "stage `prune` has not run for this dataset" in report


def test_stage_takes_the_output_folder_and_every_root(tmp_path):
    params = {"data": {"names": ["digits"], "sources": {"digits": {"kind": "digits", "image_size": 16}}},
              "train": {"methods": {"baselines": ["standard"], "spectral": ["saln"]}, "seeds": [0], "epochs": 3,
                        "lrs": [0.01], "filter_ratio": 0.8, "log_batches": [0], "budget": "epochs",
                        "schedule": "constant", "warmup": 0.0, "budget_fractions": [1.0]},
              "model": {"arch": "resnet18", "weights": "none"}, "features": {"backbone": "resnet50", "weights": "none"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    write_prepared(tmp_path / "data" / "prepared")
    roots = {"train": "results/train", "models": "results/models", "lr": "results/lr",
             "diagnostics": "results/diagnostics", "features": "results/features", "reference": "results/reference",
             "prune": "results/prune", "active": "results/active", "prepared": "data/prepared"}
    args = [a for name, path in roots.items() for a in (f"--{name}", path)]
    done = subprocess.run([sys.executable, str(ROOT / "stages" / "report.py"), "--out", "reports/digits_only", *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = (tmp_path / "reports" / "digits_only" / "report.md").read_text()
    assert "`dvc repro report`" in report and "learning rates 0.01 (each method at its best" in report
    assert (tmp_path / "reports" / "digits_only" / "metrics.md").is_file()
    missing = subprocess.run([sys.executable, str(ROOT / "stages" / "report.py"), "--out", "reports/x"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0 and "--train" in missing.stderr


def _project_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("saln"):
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("saln")}
    return found


def test_the_report_imports_only_config_layout_rate_and_cost_helpers_and_itself():
    """The report reads results; it must not depend on the training code (train, data, backbones). Outside
    saln.report it uses the config helpers, the results layout, the readers of train.lrs, the budget settings
    and divergence, and the cost accounting (which asks the selector registry which one-off work a method
    needs)."""
    allowed = {"saln.config.load_params", "saln.config.require", "saln.config.number", "saln.config.seeds",
               "saln.config.dataset_names", "saln.config.listed_methods", "saln.config.batch_numbers",
               "saln.errors.SalnError", "saln.errors.one_line_errors", "saln.rates.learning_rates",
               "saln.rates.rate_diverged", "saln.rates.read_outcome", "saln.schedule.budget_fractions",
               "saln.schedule.schedule_settings"}
    allowed_modules = ("saln.layout.", "saln.costs.")
    paths = [ROOT / "stages" / "report.py", *(ROOT / "saln" / "report").glob("*.py")]
    for path in paths:
        outside = {name for name in _project_imports(path) if not name.startswith("saln.report")
                   and not name.startswith(allowed_modules)} - allowed
        assert not outside, f"{path.name} imports {outside}"
    loaded = subprocess.run([sys.executable, "-c", "import sys, saln.report.build; "
                             "print(' '.join(m for m in sys.modules if m.startswith('saln')))"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    modules = set(loaded.stdout.split())
    assert "saln.report.build" in modules and not {"saln.train", "saln.data", "saln.backbones"} & modules


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
    for seed, (acc, sec) in enumerate([(0.80, 10.0), (0.90, 20.0)]):
        write_run(tmp_path, "digits", "standard", seed, test_acc=acc, train_seconds=sec, images_backprop=400,
                  train_images=100)
        write_run(tmp_path, "digits", "saln", seed, test_acc=0.70, images_backprop=80, train_images=100)
        write_run(tmp_path, "digits", "random", seed, test_acc=0.60, train_images=100)
        write_run(tmp_path, "digits", "maxent", seed, test_acc=0.65, images_scored=400, train_images=100)
        write_run(tmp_path, "digits", "prune_easy", seed, test_acc=0.50, images_backprop=200, train_images=50)
    ran = ["standard", "saln", "random", "maxent", "prune_easy"]
    write_best(tmp_path, tmp_path / "lr", "digits", ran, [0, 1])
    runs = collect_runs(["digits"], BEYOND_METHODS, [0, 1], tmp_path, tmp_path / "lr")

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
    assert "| paper method | standard | nothing (every image) | 85.00 ± 7.07 (n=2) | 15.0 ± 7.1 (n=2) | " \
           "400 ± 0 (n=2) |" in text
    assert "| beyond the paper | prune_easy | a subset, once | 50.00 ± 0.00 (n=2) |" in text

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

    train = tmp_path / "train"
    for seed, acc in enumerate([0.4, 0.6]):
        write_run(train, "digits", "prune_hard", seed, test_acc=acc, train_images=50)
        write_run(train, "digits", "saln", seed)
    write_best(train, tmp_path / "lr", "digits", ["prune_hard", "saln"], [0, 1])
    runs = collect_runs(["digits"], BEYOND_METHODS, [0, 1], train, tmp_path / "lr")
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
    roots = make_roots(tmp_path)
    methods = ["standard", "saln", "maxent", "prune_easy", "prune_hard"]
    write_tree(roots, methods, acc=lambda method, seed, lr: (0.3, 0.4, 0.5 + 0.1 * seed))
    write_active(roots.active)
    write_prune(roots.prune, keep_fraction=0.4)  # stale: params say 0.5

    build_report(make_regime(methods=BEYOND_METHODS, keep_fraction=0.5), roots, paper)

    report = (roots.out / "report.md").read_text()
    section = report[report.index("## Beyond the paper"):report.index("## Tables as CSV")]
    for name in ("digits_active_learning.png", "digits_pruning_curve.png"):
        png = roots.out / "figures" / name
        assert png.read_bytes()[:8] == PNG_SIGNATURE and png.stat().st_size > 1000
        assert f"](figures/{name})" in section
    for name in ("digits_beyond_methods.csv", "digits_active_learning.csv", "digits_pruning_curve.csv"):
        assert (roots.out / "tables" / name).is_file() and f"tables/{name}" in report
    assert "| beyond the paper | prune_hard | a subset, once | 55.00 ± 7.07 (n=2) |" in section
    assert "#### Every method of the train matrix (ResNet-18 from scratch)" in section
    assert "Not run on digits: random, jest." in section
    assert "stale" in section and "No prune_easy / prune_hard" not in section


def test_build_report_survives_malformed_stage_outputs(tmp_path, paper):
    roots = make_roots(tmp_path)
    write_prepared(roots.prepared)
    for root, name in [(roots.active, "curves.json"), (roots.prune, "summary.json")]:
        (root / "digits").mkdir(parents=True)
        (root / "digits" / name).write_text(json.dumps({"strategies": {"x": {"labels": [1]}}}))
    build_report(make_regime(methods=["standard"], seeds=[0]), roots, paper)
    report = (roots.out / "report.md").read_text()
    assert "No active-learning results" in report and "curves.json` is malformed" in report
    assert "No pruning curve" in report and "summary.json` is malformed" in report
    assert not list((roots.out / "figures").glob("*.png"))


# --- Why SALN keeps what it keeps: the diagnostics section ---------------------------------------


def write_diagnostics(root, dataset="digits"):
    """diagnostics.json as stage diagnostics writes it, reduced to what the section reads: one spectral
    selector, the random control and standard (whole batches), no Jaccard matrix and no atlas."""
    summary = lambda mean, std: {"mean": mean, "std": std, "n": 2}  # noqa: E731
    methods = {
        "standard": {"kind": "whole_batch", "batches": 2, "degree_rank": summary(31.5, 0.0),
                     "class_balance": summary(1.0, 0.0), "loss_percentile": summary(50.0, 0.0)},
        "random": {"kind": "per_batch", "batches": 2, "degree_rank": summary(30.0, 2.0),
                   "class_balance": summary(0.9, 0.05), "loss_percentile": summary(49.0, 3.0)},
        "saln": {"kind": "per_batch", "batches": 2, "seeds": [0, 1], "reproduced": {"matching": 2, "batches": 2},
                 "options": {"laplacian": "normalized", "graph": "dense", "knn_k": 10, "center": True,
                             "ranking": "fiedler"},
                 "participation_ratio": summary(5.0, 1.0), "eigengap_ratio": summary(0.5, 0.1),
                 "degree_rank": summary(10.0, 1.0), "class_balance": summary(0.8, 0.1),
                 "loss_percentile": summary(40.0, 5.0)},
    }
    path = Path(root) / dataset / "diagnostics.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"dataset": dataset, "methods": methods, "batch_size": 64, "keep": 12,
                                "chance": {"degree_rank": 31.5, "loss_percentile": 50}, "notes": []}))


def test_build_report_writes_the_diagnostics_section_with_runs_at_their_best_rate(tmp_path, paper):
    """The section's accuracy column reads each method at its best rate, like every other table."""
    roots = make_roots(tmp_path)

    # Rate 0.1 has the higher test accuracy but the lower validation accuracy: best_lr picks 0.01.
    write_tree(roots, ["standard", "random", "saln"], lrs=(LR, 0.1),
               acc=lambda method, seed, lr: (0.3, 0.4, 0.9) if lr == 0.1 else (0.3, 0.4, 0.5 + 0.1 * seed),
               val=lambda method, seed, lr: (0.2, 0.2, 0.2) if lr == 0.1 else None)
    write_diagnostics(roots.diagnostics)
    build_report(make_regime(methods=["standard", "random", "saln"], lrs=[LR, 0.1]), roots, paper)

    report = (roots.out / "report.md").read_text()
    section = report[report.index("## Why SALN keeps what it keeps"):report.index("## Tables as CSV")]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    assert rows[1].startswith("| saln | per batch | 2 |") and rows[2].startswith("| random |")  # control beside
    saln = rows[1]
    assert "5.00 ± 1.00" in saln and saln.endswith("| 55.00 ± 7.07 (n=2) |")   # 0.5, 0.6 at lr 0.01, not 0.9
    assert "normalized Laplacian, dense cosine graph" in section
    assert "tables/digits_diagnostics.csv" in report and (roots.out / "tables" / "digits_diagnostics.csv").is_file()


def test_probe_evidence_shows_pretrained_beside_random_weights(tmp_path):
    from saln.report.evidence import probe_lines

    assert probe_lines(["digits"], tmp_path) == []  # no probe.json: no section
    (tmp_path / "digits").mkdir()
    (tmp_path / "digits" / "probe.json").write_text(json.dumps(
        {"backbone": "efficientnet_lite0", "weights": "imagenet", "chance": 0.1,
         "probe_test_acc": 0.61, "probe_test_acc_random_init": 0.1}))
    text = "\n".join(probe_lines(["digits", "other"], tmp_path))
    assert "| digits | efficientnet_lite0 | imagenet | 61.0% | 10.0% | 10.0% |" in text
    assert "other" not in text
