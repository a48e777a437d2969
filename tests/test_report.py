"""Report stage: the paper's tables, verdicts at equal budgets, best learning rates and figures, built from
hand-made run outputs (offline, CPU, fast)."""

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
from saln.report import beyond
from saln.report.budget import at_budget, value_at
from saln.report.build import Roots, build_report, classifier_weight, dataset_section
from saln.report.claims import claim_rows, data_notes, group_runs, overall
from saln.report.compare import LOSS, TIE, WIN, compare, two_se
from saln.report.figures import method_styles
from saln.report.headline import NOT_SUPPORTED, SUPPORTED, headline_claims
from saln.report.history import read_history
from saln.report.lr import lr_section
from saln.report.markdown import markdown_table
from saln.report.paper import NOT_IN_PAPER, PAPER_FILE, load_paper, report_datasets
from saln.report.regime import Regime, ours_header, regime_from_params
from saln.report.runs import collect_runs
from saln.report.tables import DATASET_NOT_RUN, NOT_RUN, build_tables, table_markdown, write_csv

ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
START_ACC = 0.1   # the initial model's accuracy in the epoch-0 row


@pytest.fixture(scope="module")
def paper():
    """The project's own copy of the paper's numbers (saln/report/paper.yaml)."""
    return load_paper()


def make_regime(datasets=("digits",), methods=("standard", "saln"), seeds=(0, 1), **changes) -> Regime:
    values = dict(datasets=list(datasets), methods=list(methods), seeds=list(seeds), epochs=3, lr=0.01,
                  filter_ratio=0.8, log_batches=[0], arch="resnet18", weights="none", backbone="resnet50",
                  feature_weights="none", image_sizes={d: 16 for d in datasets}, keep_fraction=None)
    return Regime(**{**values, **changes})


def make_roots(tmp_path) -> Roots:
    return Roots(train=tmp_path / "train", prepared=tmp_path / "prepared", prune=tmp_path / "prune",
                 active=tmp_path / "active", lr=tmp_path / "lr", out=tmp_path / "reports", base=tmp_path)


def _tsv(folder: Path, name: str, values) -> None:
    rows = "".join(f"{step}\t{v}\n" for step, v in enumerate(values))
    (folder / f"{name}.tsv").write_text(f"step\t{name}\n{rows}")


def write_run(root, dataset, method, seed, acc=(0.3, 0.4, 0.5), seconds=(1.0, 2.0, 3.0), images=(64, 128, 192),
              start=True, keep=12, **metrics):
    """A finished run as the train stage writes it: metrics.json (final values = the curves' last) and
    dvclive TSVs, one value per epoch. ``start``: the current format (epoch-0 row, ``epoch`` and
    ``test_acc`` series); else the old one (step k = epoch k + 1, no test_acc per epoch)."""
    d = Path(root) / dataset / method / f"seed{seed}"
    folder = d / "dvclive" / "plots" / "metrics"
    folder.mkdir(parents=True)
    epochs = len(acc)
    base = {"test_acc": acc[-1], "test_loss": 1.0, "train_acc": acc[-1], "train_loss": 1.0, "val_acc": acc[-1],
            "val_loss": 1.0, "train_seconds": seconds[-1], "selection_seconds": 0.0, "images_backprop": images[-1],
            "images_scored": 0, "epochs": epochs, "batch_size": 64, "keep_per_batch": keep, "seed": seed}
    (d / "metrics.json").write_text(json.dumps({**base, **metrics}))
    lead = (lambda first, values: [first, *values]) if start else (lambda first, values: list(values))
    series = {"val_acc": lead(START_ACC, acc), "train_seconds": lead(0.0, seconds),
              "images_backprop": lead(0, images), "train_acc": lead(START_ACC, acc),
              "val_loss": lead(3.0, [1.0] * epochs), "train_loss": lead(3.0, [1.0] * epochs)}
    if start:
        series |= {"epoch": list(range(epochs + 1)), "test_acc": lead(START_ACC, acc)}
    for name, values in series.items():
        _tsv(folder, name, values)
    kept = np.zeros((1, 64), dtype=bool)
    kept[0, :keep] = True
    np.savez(d / "selections.npz", batch=np.array([0]), indices=np.arange(64)[None], kept=kept)
    return d


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
    write_run(tmp_path, "pets", "standard", 0, acc=(0.5, 0.7, 0.80), seconds=(40.0, 80.0, 120.0))
    write_run(tmp_path, "pets", "standard", 1, acc=(0.5, 0.7, 0.90), seconds=(80.0, 160.0, 240.0))
    write_run(tmp_path, "pets", "saln", 0, acc=(0.5, 0.6, 0.70), seconds=(15.0, 30.0, 45.0))
    write_run(tmp_path, "pets", "random", 0, acc=(0.5, 0.55, 0.60))
    methods = ["standard", "saln", "random"]
    runs = collect_runs(["pets"], methods, [0, 1], tmp_path)
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
    assert f"| random | {NOT_IN_PAPER} | 60.00 ± 0.00 (n=1) | — |" in text
    assert "| jest | 87.55 | not run | not run |" in text
    assert f"test: {ours}, mean ± std (n)" in text and "not available" not in text

    # Training time: our seconds and the ratio to standard beside the paper's minutes and ratio.
    time = table_markdown(tables["training_time"])
    assert "Table 4" in tables["training_time"].title and "Table 8" in tables["training_time"].title
    assert f"| saln | 6.31 | {6.31 / 24.48:.3f} | 45.00 ± 0.00 (n=1) | {45 / 180:.3f} | " \
           f"{45 / 180 - 6.31 / 24.48:+.3f} |" in time
    write_csv(tables["training_time"], tmp_path / "t.csv")
    rows = {r["method"]: r for r in csv.DictReader((tmp_path / "t.csv").open())}
    assert float(rows["saln"]["ours_ratio_to_standard"]) == pytest.approx(0.25)
    assert float(rows["saln"]["paper"]) == 6.31 and rows["saln"]["difference"] == ""


def test_a_dataset_without_paper_values_shows_ours_alone(tmp_path, paper):
    write_run(tmp_path, "digits", "standard", 0)
    runs = collect_runs(["digits"], ["standard"], [0], tmp_path)
    digits = build_tables(runs, paper, "digits", ["standard"], "ours (digits, 16 px)")[2]
    assert not digits.with_paper and [m for m, _ in digits.rows] == ["standard"]
    assert table_markdown(digits).splitlines()[0] == "| method | test: ours (digits, 16 px), mean ± std (n) |"
    assert report_datasets(paper, ["digits", "cifar10_subset"]) == ["digits", "cifar10_subset", "pets"]
    cifar = build_tables(runs, paper, "cifar10", ["standard"], "ours (not run)", dataset_ran=False)[0]
    assert by_method(cifar)["standard"][0].ours_note == DATASET_NOT_RUN
    assert by_method(cifar)["standard"][0].paper == 85.54


def test_regime_from_params_and_the_ours_header(paper):
    params = {"data": {"names": ["cifar10_subset"], "sources": {"cifar10_subset": {"kind": "npz", "image_size": 32}}},
              "train": {"methods": {"baselines": ["standard"], "spectral": ["saln"]}, "seeds": [0, 1], "epochs": 3, "lr": 0.01,
                        "filter_ratio": 0.8, "log_batches": [0]},
              "model": {"arch": "efficientnet_lite0", "weights": "none"},
              "features": {"backbone": "efficientnet_lite0", "weights": "imagenet"}, "prune": {"keep_fraction": 0.5}}
    regime = regime_from_params(params)
    assert regime.image_sizes == {"cifar10_subset": 32} and regime.keep_fraction == 0.5
    header = ours_header(regime, "cifar10_subset", paper.setting, paper.dataset_name("cifar10_subset"))
    assert header == "ours (CIFAR-10 subset, 32 px, 3 epochs, EfficientNet-Lite0 from scratch)"
    paper_like = regime_from_params({**params, "train": {**params["train"], "epochs": 25},
                                     "model": {"arch": "resnet18", "weights": "imagenet"}})
    assert ours_header(paper_like, "cifar10_subset", paper.setting, "CIFAR-10") == "ours (CIFAR-10 subset, 32 px)"
    with pytest.raises(SalnError, match="model.weights is missing"):
        regime_from_params({**params, "model": {"arch": "resnet18"}})


def test_markdown_table_is_the_one_writer():
    assert markdown_table(["a", "b"], [[1, "x|y"]]) == "| a | b |\n|---|---|\n| 1 | x\\|y |"
    with pytest.raises(ValueError, match="row has 1 cells"):
        markdown_table(["a", "b"], [["only one"]])
    # No module of the report builds a table row by hand.
    for path in (ROOT / "saln" / "report").glob("*.py"):
        if path.name != "markdown.py":
            assert '"|---' not in path.read_text() and "'|---" not in path.read_text(), path.name


# --- Curves and verdicts at equal budgets ---------------------------------------------------------


def test_history_reads_current_and_old_logs(tmp_path):
    new = read_history(write_run(tmp_path, "d", "m", 0, start=True))
    assert new.has_start and list(new.epoch) == [0, 1, 2, 3]
    x, y = new.series("images_backprop", "test_acc")
    assert list(x) == [0, 64, 128, 192] and list(y) == [START_ACC, 0.3, 0.4, 0.5]
    old = read_history(write_run(tmp_path, "d", "m", 1, start=False))
    assert not old.has_start and list(old.epoch) == [1, 2, 3]
    assert not len(old.series("epoch", "test_acc")[0]) and list(old.series("epoch", "val_acc")[1]) == [0.3, 0.4, 0.5]


def test_budget_is_the_smaller_final_cost_and_curves_are_interpolated_per_seed(tmp_path):
    assert value_at(np.array([0.0, 10.0]), np.array([0.0, 1.0]), 2.5) == pytest.approx(0.25)
    assert value_at(np.array([5.0, 10.0]), np.array([0.0, 1.0]), 2.5) is None
    a = [read_history(write_run(tmp_path, "d", "a", s, acc=(0.5, 0.6, 0.7), seconds=(s + 1.0, 4.0, 6.0)))
         for s in (0, 1)]
    b = [read_history(write_run(tmp_path, "d", "b", 0, acc=(0.2, 0.4, 0.6), seconds=(2.0, 3.0, 5.0)))]
    r = at_budget(a, b, "train_seconds", "test_acc")
    assert r.budget == 5.0   # b's final seconds, below a's
    assert r.a.mean == pytest.approx(0.65) and r.a.n == 2 and r.b.mean == pytest.approx(0.6)


def _pair(tmp_path, standard, saln, seeds=(0, 1, 2), **common):
    """Write standard and saln runs: ``standard`` / ``saln`` map run keyword -> one value per seed."""
    for method, spec in (("standard", standard), ("saln", saln)):
        for i, seed in enumerate(seeds):
            write_run(tmp_path, "digits", method, seed, **{k: v[i] for k, v in spec.items()}, **common)
    runs = collect_runs(["digits"], ["standard", "saln", "random", "jest"], list(seeds), tmp_path)
    return runs, group_runs(runs)


def test_a_difference_inside_the_spread_is_a_tie(tmp_path):
    assert two_se(1.0, 0.4) == WIN and two_se(-1.0, 0.4) == LOSS and two_se(1.0, 0.6) == TIE
    same = {"seconds": [(1.0, 2.0, 3.0)] * 3, "images": [(64, 128, 192)] * 3}
    runs, groups = _pair(tmp_path, {"acc": [(0.3, 0.4, 0.50), (0.3, 0.5, 0.60), (0.3, 0.6, 0.70)], **same},
                         {"acc": [(0.3, 0.5, 0.55), (0.3, 0.6, 0.65), (0.3, 0.4, 0.52)], **same})
    accuracy = claim_rows(groups)[0]
    assert (accuracy.spec.number, accuracy.baseline) == (1, "standard")
    assert [c.outcome for c in accuracy.cells] == [TIE, TIE, TIE]
    assert accuracy.verdict == "tie (within 2 SE)"
    assert "-2.67 ± " in accuracy.cells[0].text and "(n=3 vs 3)" in accuracy.cells[0].text
    c = compare(runs, "digits", "saln", "standard")
    assert c.acc_gain == pytest.approx(-8 / 3) and abs(c.acc_gain) < 2 * c.acc_gain_se


def test_a_win_at_equal_epochs_that_is_a_loss_at_equal_seconds_reads_mixed(tmp_path):
    # SALN ends more accurate after the same epochs but spends three times the seconds on them.
    noise = (0.0, 0.01, -0.01)
    standard = {"acc": [(0.5 + e, 0.6 + e, 0.7 + e) for e in noise], "seconds": [(1.0, 2.0, 3.0)] * 3,
                "images": [(64, 128, 192)] * 3}
    saln = {"acc": [(0.6 + e, 0.7 + e, 0.8 + e) for e in noise], "seconds": [(3.0, 6.0, 9.0)] * 3,
            "images": [(13, 26, 39)] * 3}
    _, groups = _pair(tmp_path, standard, saln)
    rows = {(r.spec.number, r.baseline): r for r in claim_rows(groups)}
    accuracy = rows[1, "standard"]
    assert [c.outcome for c in accuracy.cells] == [WIN, WIN, LOSS]
    assert accuracy.verdict == "mixed: win at equal epochs; win at equal images; loss at equal seconds"
    assert "+10.00 ± " in accuracy.cells[0].text
    # At 39 images standard is read between its epoch-0 row and epoch 1; at 3 s it has finished.
    assert f"{100 * (0.8 - (START_ACC + (0.5 - START_ACC) * 39 / 64)):+.2f}" in accuracy.cells[1].text
    assert "-10.00 ± " in accuracy.cells[2].text and "at 3 training seconds" in accuracy.cells[2].text
    speed = rows[2, "standard"]
    assert [c.outcome for c in speed.cells] == [LOSS, LOSS, LOSS] and speed.verdict == "contradicted"
    # Methods that did not run are not tested, and say how to run them.
    assert rows[1, "random"].verdict == "not tested" and "add it to train.methods" in rows[3, "jest"].cells[0].text


def test_old_runs_without_the_epoch_0_row_skip_budgets_below_their_first_point(tmp_path):
    _, groups = _pair(tmp_path, {"images": [(64, 128, 192)] * 2}, {"images": [(13, 26, 39)] * 2}, seeds=(0, 1),
                      start=False)
    accuracy = claim_rows(groups)[0]
    assert accuracy.cells[1].outcome is None and "no seed of the baseline" in accuracy.cells[1].text
    assert accuracy.cells[0].outcome is not None and "not measured at equal images" in accuracy.verdict
    notes = " ".join(data_notes(groups))
    assert "validation accuracy" in notes and "epoch-0 row" in notes
    assert overall(accuracy.cells[:0]) == "not tested"
    runs = [r for g in groups.values() for r in g.runs]
    notes = dataset_section(runs, load_paper(), make_regime(epochs=5), "digits", groups).notes
    assert any("trained 3 epochs but params say train.epochs = 5" in note for note in notes)


def test_headline_claims_use_the_paper_tables_and_the_back_prop_bound(tmp_path, paper):
    runs, _ = _pair(tmp_path, {"acc": [(0.5, 0.6, 0.70), (0.5, 0.6, 0.72)], "seconds": [(30, 60, 100.0)] * 2},
                    {"acc": [(0.5, 0.7, 0.80), (0.5, 0.7, 0.82)], "seconds": [(10, 20, 25.0)] * 2}, seeds=(0, 1),
                    keep=16)
    speed, gain = headline_claims(runs, paper, ["digits"], filter_ratio=0.75)
    assert speed.paper_shows == "3.88× (Oxford-IIIT Pet, Table 4)" and speed.verdict == NOT_SUPPORTED
    assert "filter_ratio ≥ 0.875" in speed.note   # 8x is beyond the 4x back-prop bound
    assert gain.paper_shows == "4.78 pp (Oxford-IIIT Pet, Table 3)" and gain.verdict == SUPPORTED


# --- Each method at its own best learning rate ----------------------------------------------------


def write_best(tmp_path, dataset="digits"):
    """best.json as the sweep stage writes it, with its runs (absolute dirs) and one diverged lr."""
    runs = {}
    for method, best_acc, common_acc in (("standard", 0.60, 0.50), ("saln", 0.70, 0.40), ("random", 0.55, 0.45)):
        entry = {}
        for lr, acc in (("0.03", best_acc), ("0.01", common_acc)):
            root = tmp_path / "sweep" / f"lr{lr}"
            entry[lr] = [str(write_run(root, dataset, method, s, acc=(0.3, 0.4, acc + 0.01 * s)))
                         for s in (0, 1)]
        diverged = tmp_path / "sweep" / "lr0.1" / dataset / method / "seed0"
        diverged.mkdir(parents=True)
        (diverged / "diverged.json").write_text("{}")
        entry["0.1"] = [str(diverged)]
        runs[method] = {"best_lr": 0.03, "val_acc": {"0.01": 0.5, "0.03": 0.6, "0.1": None},
                        "diverged": ["0.1"], "runs": entry}
    best = {"dataset": dataset, "common_lr": 0.01, "lrs": [0.01, 0.03, 0.1], "methods": runs}
    path = tmp_path / "lr" / dataset / "best.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(best))


def test_best_lr_section_when_the_sweep_is_off_and_on(tmp_path):
    (tmp_path / "tables").mkdir()
    lines, csv_files = lr_section(["digits"], 0.01, tmp_path / "tables", tmp_path / "lr")
    assert csv_files == [] and any("sweep is off" in line and "sweep.lrs=[0.003,0.03]" in line for line in lines)

    write_best(tmp_path)
    lines, csv_files = lr_section(["digits"], 0.01, tmp_path / "tables", tmp_path / "lr", tmp_path)
    text = "\n".join(lines)
    assert "| saln | 0.03 | 70.50 ± 0.71 (n=2) | 40.50 ± 0.71 (n=2) | 0.1 |" in text
    assert "sweep is off" not in text
    claims = text[text.index("Claims with every method at its own best lr"):]
    assert "| 1. SALN reaches higher accuracy than standard training | saln vs standard | +10.00 ± 0.71 pp" in claims
    assert "saln vs random (control)" in claims and "`jest` has no finished run" in claims
    rows = {r["method"]: r for r in csv.DictReader((tmp_path / "tables" / csv_files[0]).open())}
    assert float(rows["standard"]["test_acc_best_mean"]) == pytest.approx(0.605) and rows["saln"]["n_best"] == "2"


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


def test_build_report_writes_markdown_csv_and_pngs(tmp_path, paper):
    roots = make_roots(tmp_path)
    for method, keep in [("standard", 64), ("random", 12), ("saln", 12)]:
        for seed in (0, 1):
            d = write_run(roots.train, "digits", method, seed, keep=keep, acc=(0.3, 0.4, 0.5 + 0.01 * seed))
            torch.save({"conv_head.weight": torch.zeros(8, 4, 1, 1), "classifier.weight": torch.randn(10, 32),
                        "classifier.bias": torch.zeros(10)}, d / "model.pt")
    (roots.prepared / "digits").mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.save(roots.prepared / "digits" / "images.npy", rng.integers(0, 255, (100, 16, 16, 3), dtype=np.uint8))
    (roots.prepared / "digits" / "meta.json").write_text(json.dumps({"classes": [str(i) for i in range(10)]}))

    regime = make_regime(methods=["standard", "random", "saln"], log_batches=[0, 3], arch="efficientnet_lite0")
    build_report(regime, roots, paper)

    report = (roots.out / "report.md").read_text()
    for number in range(1, 17):
        assert f"Table {number} (" in report
    assert "not available" not in report and "arXiv:2412.17069" in report
    assert "Table 7 prints JEST's Pet test accuracy (87.55%) above SALN's" in report
    assert "| standard | 82.02 | dataset not run | dataset not run |" in report      # Pet, Table 3
    assert "`digits` has no paper values: ours are shown alone" in report
    assert "(a) equal epochs (final epoch)" in report and "saln vs random (control)" in report
    assert "learner EfficientNet-Lite0 from scratch; SALN features ResNet-50" in report
    assert "ours (digits, 16 px, 3 epochs, EfficientNet-Lite0 from scratch)" in report
    assert "The learning-rate sweep is off" in report
    assert "classifier layer (`classifier.weight`)" in report and "fc-layer" not in report
    names = {p.name for p in (roots.out / "figures").glob("*.png")}
    assert {"digits_curves_saln.png", "digits_time_to_accuracy.png", "digits_batch0.png",
            "digits_classifier_heatmap.png", "digits_classifier_histogram.png"} <= names
    for name in names:
        png = roots.out / "figures" / name
        assert png.read_bytes()[:8] == PNG_SIGNATURE and png.stat().st_size > 1000
        assert f"figures/{name}" in report
    assert "batch 3 was not logged" in report
    for name in ("digits_test_accuracy.csv", "digits_claims.csv", "pets_pairings.csv", "cifar10_training_time.csv"):
        assert (roots.out / "tables" / name).is_file() and f"tables/{name}" in report
    assert "| saln |" in (roots.out / "metrics.md").read_text()


def test_build_report_without_any_runs(tmp_path, paper):
    roots = make_roots(tmp_path)
    build_report(make_regime(), roots, paper)
    report = (roots.out / "report.md").read_text()
    assert "No finished run on digits" in report and "**not tested**" in report
    assert "## Beyond the paper: uncertainty, pruning and active learning" in report
    assert "stage `train` has not run" in report
    assert "stage `active` has not run for this dataset" in report
    assert "stage `prune` has not run for this dataset" in report


def test_stage_takes_the_output_folder(tmp_path):
    params = {"data": {"names": ["digits"], "sources": {"digits": {"kind": "digits", "image_size": 16}}},
              "train": {"methods": {"baselines": ["standard"], "spectral": ["saln"]}, "seeds": [0], "epochs": 3, "lr": 0.01, "filter_ratio": 0.8,
                        "log_batches": [0]}, "model": {"arch": "resnet18", "weights": "none"},
              "features": {"backbone": "resnet50", "weights": "none"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    done = subprocess.run([sys.executable, str(ROOT / "stages" / "report.py"), "--out", "reports/digits_only"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = (tmp_path / "reports" / "digits_only" / "report.md").read_text()
    assert "`python stages/report.py --out reports/digits_only`" in report
    assert (tmp_path / "reports" / "digits_only" / "metrics.md").is_file()


def _project_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("saln"):
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("saln")}
    return found


def test_the_report_imports_only_the_config_helpers_and_itself():
    """The report stage must not depend on code being refactored (selection, train, backbones)."""
    allowed = {"saln.config.load_params", "saln.config.require", "saln.config.number", "saln.config.seeds",
               "saln.config.dataset_names", "saln.config.listed_methods", "saln.config.batch_numbers",
               "saln.errors.SalnError", "saln.errors.one_line_errors"}
    paths = [ROOT / "stages" / "report.py", *(ROOT / "saln" / "report").glob("*.py")]
    for path in paths:
        outside = {name for name in _project_imports(path) if not name.startswith("saln.report")} - allowed
        assert not outside, f"{path.name} imports {outside}"


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
    assert "| paper method | standard | nothing (every image) | 85.00 ± 7.07 (n=2) | 15.0 ± 7.1 (n=2) | " \
           "400 ± 0 (n=2) |" in text
    assert "| beyond the paper | prune_easy | a subset, once | 50.00 ± 0.00 (n=1) |" in text

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
    roots = make_roots(tmp_path)
    train, out = roots.train, roots.out
    for method in ["standard", "saln", "maxent", "prune_easy", "prune_hard"]:
        for seed in (0, 1):
            write_run(train, "digits", method, seed, test_acc=0.5 + 0.1 * seed,
                      train_images=50 if method.startswith("prune_") else 100)
    write_active(tmp_path / "active")
    write_prune(tmp_path / "prune", keep_fraction=0.4)  # stale: params say 0.5

    build_report(make_regime(methods=BEYOND_METHODS, keep_fraction=0.5), roots, paper)

    report = (out / "report.md").read_text()
    section = report[report.index("## Beyond the paper"):report.index("## Tables as CSV")]
    for name in ("digits_active_learning.png", "digits_pruning_curve.png"):
        png = out / "figures" / name
        assert png.read_bytes()[:8] == PNG_SIGNATURE and png.stat().st_size > 1000
        assert f"](figures/{name})" in section
    for name in ("digits_beyond_methods.csv", "digits_active_learning.csv", "digits_pruning_curve.csv"):
        assert (out / "tables" / name).is_file() and f"tables/{name}" in report
    assert "| beyond the paper | prune_hard | a subset, once | 55.00 ± 7.07 (n=2) |" in section
    assert "#### Every method of the train matrix (ResNet-18 from scratch)" in section
    assert "Not run on digits: random, jest." in section
    assert "stale" in section and "No prune_easy / prune_hard" not in section


def test_build_report_survives_malformed_stage_outputs(tmp_path, paper):
    for stage, name in [("active", "curves.json"), ("prune", "summary.json")]:
        (tmp_path / stage / "digits").mkdir(parents=True)
        (tmp_path / stage / "digits" / name).write_text(json.dumps({"strategies": {"x": {"labels": [1]}}}))
    build_report(make_regime(methods=["standard"], seeds=[0]), make_roots(tmp_path), paper)
    report = (tmp_path / "reports" / "report.md").read_text()
    assert "No active-learning results" in report and "curves.json` is malformed" in report
    assert "No pruning curve" in report and "summary.json` is malformed" in report
    assert not list((tmp_path / "reports" / "figures").glob("*.png"))


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
