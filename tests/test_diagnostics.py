"""Why SALN keeps what it keeps: the diagnostics on constructed graphs and hand-made sets, the stage, the
report section."""

import itertools
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from saln.diagnostics import (NOT_RUN, PER_BATCH, SUBSET, WHOLE_BATCH, Data, batch_graph, chance_jaccard,
                              class_balance, degree_ranks, diagnose, eigengap_ratio, jaccard, label_entropy,
                              load_selections, loss_percentile, mean_of_kept, participation_ratio, pca_2d,
                              spectral_methods, summary, within_batch_percentiles)
from saln.files import write_json
from saln.report.beyond_section import Dirs
from saln.report.diagnostics_section import diagnostics_section
from saln.selection import SelectionBatch, build
from saln.selection.base import top_k
from saln.selection.spectral import PAPER, SpectralOptions, laplacian_matrix, similarity_matrix
from tests.conftest import ROOT, stage_argv

PAPER_BLOCK = {"laplacian": "unnormalized", "graph": "dense", "knn_k": 3, "center": False,
               "ranking": "magnitude"}


def spectrum_of(similarity: np.ndarray, kind: str = "unnormalized") -> tuple[np.ndarray, np.ndarray]:
    values, vectors = torch.linalg.eigh(laplacian_matrix(torch.from_numpy(similarity), kind))
    return values.numpy(), vectors.numpy()


def two_cliques(size: int = 5, bridge: float = 0.01) -> np.ndarray:
    """Two complete graphs of ``size`` nodes (weight 1), joined by one edge of weight ``bridge``."""
    s = np.zeros((2 * size, 2 * size))
    s[:size, :size] = s[size:, size:] = 1.0
    np.fill_diagonal(s, 0.0)
    s[size - 1, size] = s[size, size - 1] = bridge
    return s


# ---------------------------------------------------------------------------------------------
# Constructed graphs


@pytest.mark.parametrize("kind", ["unnormalized", "normalized"])
def test_two_clusters_joined_by_one_weak_edge_split_on_the_fiedler_sign(kind):
    values, vectors = spectrum_of(two_cliques(), kind)
    signs = np.sign(vectors[:, 1])
    assert len(set(signs[:5])) == 1 and len(set(signs[5:])) == 1 and signs[0] != signs[5]
    assert eigengap_ratio(values) < 0.01  # one clear cut: lambda_2 tiny next to lambda_3
    assert 5 <= participation_ratio(vectors[:, 1]) <= 10  # spread over both clusters, not localised


def test_an_outlier_weakly_attached_to_a_dense_cluster_carries_the_fiedler_vector():
    s = np.zeros((10, 10))
    s[:9, :9] = 1.0
    np.fill_diagonal(s, 0.0)
    s[0, 9] = s[9, 0] = 0.01
    values, vectors = spectrum_of(s)
    fiedler = vectors[:, 1]
    assert np.argmax(np.abs(fiedler)) == 9
    assert participation_ratio(fiedler) < 1.3  # (1 + 1/9)^2 / (1 + 1/729) = 1.23: localised on the outlier
    assert eigengap_ratio(values) < 0.01
    assert top_k(torch.from_numpy(np.abs(fiedler)), 1).tolist() == [9]  # SALN's ranking keeps it first


def test_outlier_features_through_the_selector_and_batch_graph():
    """The same picture from features: nine near-identical images and one nearly orthogonal to them."""
    rng = np.random.default_rng(0)
    features = np.vstack([np.array([1.0, 0.0, 0.0]) + 0.01 * rng.random((9, 3)), [[0.02, 1.0, 0.0]]])
    graph = batch_graph(features)
    assert graph["participation_ratio"] < 1.5
    batch = SelectionBatch(indices=torch.arange(10), labels=torch.zeros(10, dtype=torch.long), keep=1,
                           generator=torch.Generator(), feature_table=torch.from_numpy(features).float())
    assert build("saln").select(batch).tolist() == [9]
    assert build("saln_inverse").select(batch).tolist() != [9]
    assert degree_ranks(features)[9] == 9  # the outlier has the lowest degree


def test_participation_ratio_bounds():
    assert participation_ratio(np.array([0.0, 0.0, 3.0])) == pytest.approx(1.0)
    assert participation_ratio(np.ones(8)) == pytest.approx(8.0)
    assert participation_ratio(-np.ones(8)) == pytest.approx(8.0)


def test_eigengap_ratio_is_undefined_without_a_third_positive_eigenvalue():
    assert eigengap_ratio(np.array([0.0, 1.0])) is None
    assert eigengap_ratio(np.array([0.0, 0.0, 0.0, 2.0])) is None
    assert eigengap_ratio(np.array([0.0, 1.0, 4.0])) == pytest.approx(0.25)


def test_knn_graph_of_separated_blobs_has_one_component_per_blob():
    rng = np.random.default_rng(1)
    centres = np.eye(3) * 10
    features = np.vstack([c + rng.random((6, 3)) for c in centres])  # non-negative, like pooled features
    s = similarity_matrix(torch.from_numpy(features), graph="knn", knn_k=3).numpy()
    blob = np.repeat(np.arange(3), 6)
    assert np.allclose(s, s.T) and np.all(np.diag(s) == 0) and np.all(s >= 0)
    assert np.all(s[blob[:, None] != blob[None, :]] == 0)  # no edge between blobs
    assert np.all((s > 0).sum(axis=1) >= 3)  # every image keeps at least its 3 neighbours
    values, _ = spectrum_of(s)
    assert np.allclose(values[:3], 0, atol=1e-10) and values[3] > 0.1  # three components
    # The dense graph of the same features is connected: one zero eigenvalue.
    dense_values = batch_graph(features)
    assert dense_values["lambda_2"] > 1e-6


def test_knn_graph_with_k_past_the_batch_is_the_complete_clamped_graph():
    features = torch.rand(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    dense = similarity_matrix(features).clamp_min(0).fill_diagonal_(0)
    assert torch.allclose(similarity_matrix(features, graph="knn", knn_k=50), dense)


def test_batch_graph_uses_the_options_it_is_given():
    features = np.random.default_rng(2).random((12, 5))
    dense, knn = batch_graph(features), batch_graph(features, SpectralOptions(graph="knn", knn_k=3))
    assert dense != knn
    assert batch_graph(features, PAPER) == dense


# ---------------------------------------------------------------------------------------------
# Hand-made sets


def test_degree_rank_on_a_hand_made_batch():
    features = np.array([[2.0, 0.0], [1.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    ranks = degree_ranks(features)
    # Degrees 3, 3, 1, 3 (cosine: the scale does not count): equal degrees rank by position.
    assert ranks.tolist() == [0, 1, 3, 2]
    assert mean_of_kept(ranks, np.array([False, False, True, True])) == 2.5
    assert mean_of_kept(ranks, np.ones(4, bool)) == (4 - 1) / 2  # the whole batch: (B - 1) / 2


def test_jaccard_on_hand_made_sets():
    a, b = np.array([1, 1, 0, 0], bool), np.array([0, 1, 1, 0], bool)
    assert jaccard(a, b) == pytest.approx(1 / 3)
    assert jaccard(a, a) == 1.0 and jaccard(a, ~a) == 0.0
    assert jaccard(np.zeros(3, bool), np.zeros(3, bool)) == 1.0


def test_chance_jaccard_is_exact_on_a_small_batch():
    size, keep = 6, 2
    subsets = [np.isin(np.arange(size), c) for c in itertools.combinations(range(size), keep)]
    exhaustive = np.mean([jaccard(a, b) for a in subsets for b in subsets])
    assert chance_jaccard(size, keep) == pytest.approx(exhaustive)
    assert chance_jaccard(5, 5) == 1.0


def test_within_batch_percentiles_share_ties_and_average_fifty():
    p = within_batch_percentiles(np.array([3.0, 1.0, 2.0, 2.0]))
    assert p.tolist() == [100.0, 0.0, 50.0, 50.0]
    assert within_batch_percentiles(np.array([5.0])).tolist() == [50.0]
    assert loss_percentile(np.array([3.0, 1.0, 2.0, 2.0]), np.array([1, 1, 0, 0], bool)) == 50.0
    assert np.mean(within_batch_percentiles(np.random.default_rng(0).random(64))) == pytest.approx(50.0)


def test_class_balance_of_hand_made_sets():
    labels = np.array([0, 0, 1, 1])
    assert class_balance(labels, np.array([1, 1, 0, 0], bool)) == 0.0
    assert class_balance(labels, np.array([1, 0, 1, 0], bool)) == pytest.approx(1.0)
    assert class_balance(np.zeros(4, int), np.ones(4, bool)) is None
    assert label_entropy(np.array([0, 1, 2, 3])) == pytest.approx(np.log(4))


def test_pca_2d_is_deterministic_and_finds_the_line():
    t = np.linspace(-1, 1, 20)
    x = np.stack([t, 2 * t, np.zeros_like(t)], axis=1) + 1e-3 * np.random.default_rng(0).random((20, 3))
    coords, share = pca_2d(x)
    assert coords.shape == (20, 2) and share[0] > 0.99
    flipped, _ = pca_2d(x[::-1])
    assert np.allclose(coords[::-1], flipped)


def test_summary_skips_undefined_values():
    assert summary([1.0, None, 3.0]) == {"mean": 2.0, "std": pytest.approx(np.sqrt(2)), "n": 2}
    assert summary([None]) == {"mean": None, "std": None, "n": 0}
    assert summary([4.0])["std"] == 0.0


# ---------------------------------------------------------------------------------------------
# The whole: saved runs -> diagnostics.json -> report section


# Each method's best rate on validation (what stage best_lr writes); runs are saved per rate.
RATES = {"standard": 0.01, "random": 0.003, "saln": 0.003, "saln_knn": 0.03}
DECOY_RATE = 0.01  # saln's runs at a rate that is not its best: never read


def rates_of(methods):
    """Method -> best rate, None for a method without one (not trained)."""
    return {m: RATES.get(m) for m in methods}


def _save_run(root, method, seed, batches, lr):
    d = root / "toy" / method / f"seed{seed}" / f"lr{lr:g}"  # saln.layout: run_dir, then rate_dir
    d.mkdir(parents=True)
    np.savez(d / "selections.npz", batch=np.array([b for b, _, _ in batches]),
             indices=np.stack([i for _, i, _ in batches]), kept=np.stack([k for _, _, k in batches]))


def _select(method, features, keep, **options):
    n = len(features)
    batch = SelectionBatch(indices=torch.arange(n), labels=torch.zeros(n, dtype=torch.long), keep=keep,
                           generator=torch.Generator().manual_seed(0),
                           feature_table=torch.from_numpy(features.astype(np.float32)))
    mask = np.zeros(n, bool)
    mask[build(method, **options).select(batch).numpy()] = True
    return mask


@pytest.fixture
def toy(tmp_path):
    """Saved selections (results/models layout) of saln, saln_knn, random and standard at their best
    rates on 2 seeds x 2 batches of 16 of 64 images, and saln's at another rate: the first 4 kept."""
    rng = np.random.default_rng(0)
    features = rng.random((64, 8)).astype(np.float16)
    labels, losses = np.arange(64) % 4, rng.random(64)
    models = tmp_path / "models"
    for seed in (0, 1):
        order = np.random.default_rng(seed).permutation(64)
        batches = [order[:16], order[16:32]]
        for method in ("saln", "saln_knn", "random", "standard"):
            saved = []
            for number, idx in enumerate(batches):
                feats = features[idx].astype(np.float64)
                if method == "standard":
                    kept = np.ones(16, bool)
                elif method == "random":
                    kept = np.isin(np.arange(16), rng.choice(16, 4, replace=False))
                else:
                    kept = _select(method, feats, 4, **PAPER_BLOCK)
                saved.append((number, idx, kept))
            _save_run(models, method, seed, saved, RATES[method])
        decoy = [(number, idx, np.arange(16) < 4) for number, idx in enumerate(batches)]
        _save_run(models, "saln", seed, decoy, DECOY_RATE)
    return models, Data(features, labels, losses)


def test_diagnose_measures_every_kind_of_method(toy):
    models, data = toy
    methods = ["standard", "random", "saln", "saln_knn", "prune_easy", "jest"]
    params = {"saln": PAPER_BLOCK}
    selections = load_selections(models, "toy", rates_of(methods), [0, 1, 2])
    out = diagnose("toy", methods, selections, data, spectral_methods(params, methods))
    json.dumps(out, allow_nan=False)  # strict JSON
    kinds = {m: e["kind"] for m, e in out["methods"].items()}
    assert kinds == {"standard": WHOLE_BATCH, "random": PER_BATCH, "saln": PER_BATCH, "saln_knn": PER_BATCH,
                     "prune_easy": SUBSET, "jest": NOT_RUN}
    saln, std = out["methods"]["saln"], out["methods"]["standard"]
    assert saln["batches"] == 4 and saln["seeds"] == [0, 1]
    assert saln["reproduced"] == {"matching": 4, "batches": 4} and not out["notes"]  # not the decoy rate
    assert saln["participation_ratio"]["n"] == 4 and 1 <= saln["participation_ratio"]["mean"] <= 16
    assert out["methods"]["saln_knn"]["options"]["graph"] == "knn"
    assert out["methods"]["saln_knn"]["participation_ratio"] != saln["participation_ratio"]
    assert std["degree_rank"]["mean"] == 7.5 and std["class_balance"]["mean"] == pytest.approx(1.0)
    assert std["loss_percentile"]["mean"] == pytest.approx(50.0) and "participation_ratio" not in std
    assert out["batch_size"] == 16 and out["keep"] == 4 and out["chance"]["degree_rank"] == 7.5
    j = out["jaccard"]
    assert j["methods"] == ["random", "saln", "saln_knn"]
    assert [j["mean"][i][i] for i in range(3)] == [1.0, 1.0, 1.0] and j["n"][0][1] == 4
    assert j["mean"][1][2] == j["mean"][2][1]
    atlas = out["atlas"]
    assert atlas["seed"] == 0 and [b["batch"] for b in atlas["batches"]] == [0, 1]
    assert set(atlas["batches"][0]["kept"]) == {"random", "saln", "saln_knn"}
    assert len(atlas["batches"][0]["xy"]) == 16 and len(atlas["batches"][0]["kept"]["saln"]) == 4


def test_selections_are_read_at_each_methods_rate_only(toy):
    models, _ = toy
    best = load_selections(models, "toy", {"saln": RATES["saln"]}, [0, 1])
    decoy = load_selections(models, "toy", {"saln": DECOY_RATE}, [0, 1])
    assert sorted(best["saln"]) == sorted(decoy["saln"]) == [0, 1]
    assert all(decoy["saln"][s][b].kept.tolist() == [True] * 4 + [False] * 12 for s in (0, 1) for b in (0, 1))
    assert any(best["saln"][s][b].kept.tolist() != decoy["saln"][s][b].kept.tolist()
               for s in (0, 1) for b in (0, 1))
    # A rate never trained, or a method without a best rate (every rate diverged): simply absent.
    assert load_selections(models, "toy", {"saln": 0.1, "random": None}, [0, 1]) == {}


def test_diagnose_notes_missing_losses_and_stale_selections(toy):
    models, data = toy
    selections = load_selections(models, "toy", {"saln": RATES["saln"]}, [0])
    changed = {"saln": {**PAPER_BLOCK, "ranking": "inverse"}}  # the block changed since training
    out = diagnose("toy", ["saln"], selections, Data(data.features, data.labels), spectral_methods(changed, ["saln"]))
    assert out["methods"]["saln"]["loss_percentile"]["n"] == 0
    assert any("reference losses" in n for n in out["notes"])
    assert any("keeps another set" in n for n in out["notes"])


def test_report_section_tables_csvs_and_atlas(toy, tmp_path):
    models, data = toy
    methods = ["standard", "random", "saln", "saln_knn"]
    out = diagnose("toy", methods, load_selections(models, "toy", rates_of(methods), [0, 1]), data,
                   spectral_methods({"saln": PAPER_BLOCK}, methods))
    root = tmp_path / "diagnostics"
    write_json(root / "toy" / "diagnostics.json", out)
    dirs = Dirs(tmp_path / "reports" / "tables", tmp_path / "reports" / "figures", tmp_path / "reports")
    dirs.tables.mkdir(parents=True)
    dirs.figures.mkdir(parents=True)
    runs = [{"dataset": "toy", "method": "saln", "seed": s, "test_acc": a} for s, a in ((0, 0.5), (1, 0.7))]
    written = diagnostics_section(runs, ["toy", "other"], methods, dirs, root)
    text = "\n".join(written.lines)
    assert "| saln | per batch | 4 |" in text and "60.00 ± 14.14 (n=2)" in text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[1].startswith("| saln |") and rows[3].startswith("| random |")  # the control beside
    assert "chance (uniform random subset)" in text and "(chance 7.5)" in text
    assert "figures/toy_selection_atlas.png" in text and (dirs.figures / "toy_selection_atlas.png").is_file()
    assert written.csv_files == ["toy_diagnostics.csv", "toy_jaccard.csv"]
    assert all((dirs.tables / name).is_file() for name in written.csv_files)
    assert "`other`" not in text  # no diagnostics.json: no subsection
    assert diagnostics_section(runs, ["other"], methods, dirs, root).lines == []


def test_stage_writes_diagnostics_json_and_fails_in_one_line(toy, tmp_path):
    """Run with dvc.yaml's arguments, in a folder laid out as the pipeline leaves it."""
    models, data = toy
    work = tmp_path / "work"
    (work / "results").mkdir(parents=True)
    models.rename(work / "results" / "models")
    for folder, name, array in (("features", "features.npy", data.features), ("prepared", "labels.npy", data.labels)):
        (work / "data" / folder / "toy").mkdir(parents=True)
        np.save(work / "data" / folder / "toy" / name, array)
    (work / "results" / "lr" / "toy").mkdir(parents=True)
    best = {"dataset": "toy", "methods": {m: {"best_lr": lr} for m, lr in RATES.items()}}
    (work / "results" / "lr" / "toy" / "best.json").write_text(json.dumps(best))
    params = {"train": {"methods": {"baselines": ["standard", "random"], "spectral": ["saln", "saln_knn"]},
                        "seeds": [0, 1]},
              "saln": PAPER_BLOCK}
    (work / "params.yaml").write_text(json.dumps(params))
    script, *args = stage_argv("diagnostics", dataset="toy")
    cmd = [sys.executable, str(ROOT / script), *args]
    done = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    out = json.loads((work / "results" / "diagnostics" / "toy" / "diagnostics.json").read_text())
    assert out["methods"]["saln"]["batches"] == 4 and "no reference losses" in done.stdout
    assert out["methods"]["saln"]["reproduced"] == {"matching": 4, "batches": 4}  # its best rate's runs
    params["saln"] = {**PAPER_BLOCK, "graph": "sparse"}
    (work / "params.yaml").write_text(json.dumps(params))
    done = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: saln.graph must be one of dense, knn, got 'sparse'"
