"""Why SALN keeps what it keeps: diagnostics of every selector's saved first-epoch selections.

The train stage saves, for the batches of epoch 1 listed in ``train.log_batches``, each batch's dataset
indices and which of them the method kept (selections.npz). Runs with the same seed see the same batches,
so every method can be measured on the same candidates:

* the batch graph: the participation ratio (sum v^2)^2 / sum v^4 of the Fiedler vector v (1: localised
  on one image; B: spread evenly over the batch) and the eigengap ratio lambda_2 / lambda_3 (small: the
  graph has one clear cut). They depend only on the batch and the graph, so they are computed once per
  batch and graph, with the spectral selector's own code, and reported for the spectral methods;
* the mean degree rank of the kept images in the batch's dense cosine graph (rank 0 = highest degree,
  i.e. the most typical image; a uniform random subset averages (B - 1) / 2);
* the class balance of the kept set: entropy of its label histogram / entropy of the batch's;
* the mean reference-loss percentile of the kept images within their batch (0 = easiest, 100 = hardest
  for the reference model; a uniform random subset averages 50);
* the Jaccard overlap of each pair of methods' kept sets on the same batches (same seed and batch).

The metric functions are pure functions of numpy arrays; ``diagnose`` puts them together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from saln.errors import SalnError
from saln.layout import SELECTIONS_FILE, rate_dir, run_dir
from saln.selection.all import REGISTRY
from saln.selection.base import SelectionBatch
from saln.selection.spectral import PAPER, Spectral, SpectralOptions, similarity_matrix, spectrum

PER_BATCH, WHOLE_BATCH, SUBSET, NOT_RUN = "per_batch", "whole_batch", "subset", "not_run"
ATLAS_BATCHES = 2


# ---------------------------------------------------------------------------------------------
# The batch graph


def participation_ratio(vector: np.ndarray) -> float:
    """(sum v^2)^2 / sum v^4: how many entries carry the vector (1 = one entry, n = all equally)."""
    v2 = np.asarray(vector, dtype=np.float64) ** 2
    return float(v2.sum() ** 2 / (v2 ** 2).sum())


def eigengap_ratio(eigenvalues: np.ndarray) -> float | None:
    """lambda_2 / lambda_3 of ascending eigenvalues (None: fewer than 3, or lambda_3 = 0)."""
    values = np.asarray(eigenvalues, dtype=np.float64)
    if len(values) < 3 or values[2] == 0:
        return None
    return float(values[1] / values[2])


def batch_graph(features: np.ndarray, options: SpectralOptions = PAPER) -> dict:
    """Participation ratio, eigengap ratio and lambda_2, lambda_3 of a batch's graph (spectral's code)."""
    values, vectors = spectrum(torch.from_numpy(np.asarray(features, dtype=np.float64)), options)
    values, fiedler = values.numpy(), vectors[:, 1].numpy()
    return {"participation_ratio": participation_ratio(fiedler), "eigengap_ratio": eigengap_ratio(values),
            "lambda_2": float(values[1]), "lambda_3": float(values[2]) if len(values) > 2 else None}


# ---------------------------------------------------------------------------------------------
# What the kept images are


def degree_ranks(features: np.ndarray) -> np.ndarray:
    """Each image's rank by degree in the batch's dense cosine graph: 0 = highest, equal degrees to the
    lower position."""
    degree = similarity_matrix(torch.from_numpy(np.asarray(features, dtype=np.float64))).sum(dim=1).numpy()
    ranks = np.empty(len(degree), dtype=np.int64)
    ranks[np.argsort(-degree, kind="stable")] = np.arange(len(degree))
    return ranks


def mean_of_kept(values: np.ndarray, kept: np.ndarray) -> float:
    return float(np.asarray(values, dtype=np.float64)[np.asarray(kept, dtype=bool)].mean())


def label_entropy(labels: np.ndarray) -> float:
    """Shannon entropy (nats) of the label histogram."""
    counts = np.unique(np.asarray(labels), return_counts=True)[1]
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def class_balance(labels: np.ndarray, kept: np.ndarray) -> float | None:
    """Entropy of the kept labels / entropy of the batch's (None: the batch has one class, or none kept)."""
    whole, kept = label_entropy(labels), np.asarray(kept, dtype=bool)
    return None if whole == 0 or not kept.any() else label_entropy(np.asarray(labels)[kept]) / whole


def within_batch_percentiles(values: np.ndarray) -> np.ndarray:
    """100 x (ascending rank) / (n - 1), equal values sharing their mean rank: the batch averages 50."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n < 2:
        return np.full(n, 50.0)
    ranks = np.empty(n)
    ranks[np.argsort(values, kind="stable")] = np.arange(n)
    _, group = np.unique(values, return_inverse=True)
    mean_rank = np.bincount(group, weights=ranks) / np.bincount(group)
    return 100.0 * mean_rank[group] / (n - 1)


def loss_percentile(losses: np.ndarray, kept: np.ndarray) -> float:
    """Mean within-batch percentile of the kept images' reference losses (uniform random: 50)."""
    return mean_of_kept(within_batch_percentiles(losses), kept)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """|A and B| / |A or B| of two boolean masks (1 for two empty sets)."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def chance_jaccard(size: int, keep: int) -> float:
    """Expected Jaccard overlap of two independent uniform ``keep``-subsets of ``size`` items (the
    intersection is hypergeometric)."""
    if not 0 < keep <= size:
        raise SalnError(f"cannot keep {keep} of {size} images")
    total = math.comb(size, keep)
    return sum(math.comb(keep, j) * math.comb(size - keep, keep - j) / total * j / (2 * keep - j)
               for j in range(max(0, 2 * keep - size), keep + 1))


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Rows of ``x`` on its first two principal components (numpy SVD), and their shares of variance.

    Each component's sign is fixed (its largest-|.| loading positive), so the picture is reproducible.
    """
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(axis=0, keepdims=True)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    components = vt[:2]
    signs = np.sign(components[np.arange(len(components)), np.abs(components).argmax(axis=1)])
    components = components * np.where(signs == 0, 1.0, signs)[:, None]
    coords = centred @ components.T
    if coords.shape[1] < 2:
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    share = (s ** 2) / max(float((s ** 2).sum()), np.finfo(float).tiny)
    return coords, [float(v) for v in np.pad(share[:2], (0, max(0, 2 - len(share))))]


def summary(values) -> dict:
    """{mean, std (sample, 0 for one value), n} of the values that are not None (mean None when n = 0)."""
    kept = [float(v) for v in values if v is not None]
    n = len(kept)
    if n == 0:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(np.mean(kept)), "std": float(np.std(kept, ddof=1)) if n > 1 else 0.0, "n": n}


# ---------------------------------------------------------------------------------------------
# Runs and methods


@dataclass(frozen=True)
class Saved:
    """One saved first-epoch batch of one run."""

    indices: np.ndarray  # B dataset indices
    kept: np.ndarray     # B booleans


Selections = dict[str, dict[int, dict[int, Saved]]]  # method -> seed -> batch number -> Saved


def load_selections(models_root: str | Path, dataset: str, rates: dict[str, float | None],
                    seeds: list[int]) -> Selections:
    """The selections.npz of every method's runs at its rate (``rates``: method -> rate, its best on
    validation); a run not trained yet, or a method without a rate, is simply absent."""
    out: Selections = {}
    for method, lr in rates.items():
        for seed in seeds:
            if lr is None:
                continue
            path = rate_dir(run_dir(models_root, dataset, method, seed), lr) / SELECTIONS_FILE
            if not path.is_file():
                continue
            with np.load(path) as data:
                out.setdefault(method, {})[seed] = {
                    int(b): Saved(np.asarray(i, dtype=np.int64), np.asarray(k, dtype=bool))
                    for b, i, k in zip(data["batch"], data["indices"], data["kept"])}
    return out


def spectral_methods(params: dict, methods: list[str]) -> dict[str, Spectral]:
    """The spectral selectors of ``methods`` (saln and its variants), built with their params options."""
    return {m: REGISTRY[m](**REGISTRY[m].options_from_params(params)) for m in methods
            if issubclass(REGISTRY[m], Spectral)}


def method_kind(method: str, saved: dict[int, dict[int, Saved]] | None) -> str:
    if REGISTRY[method].train_subset:
        return SUBSET
    if not saved or not any(saved.values()):
        return NOT_RUN
    whole = all(s.kept.all() for batches in saved.values() for s in batches.values())
    return WHOLE_BATCH if whole else PER_BATCH


def reproduces(selector: Spectral, features: np.ndarray, kept: np.ndarray) -> bool:
    """Whether the selector, run again here on the batch's features, keeps the saved set."""
    n = len(kept)
    batch = SelectionBatch(indices=torch.arange(n), labels=torch.zeros(n, dtype=torch.long),
                           keep=int(kept.sum()), generator=torch.Generator(),
                           feature_table=torch.from_numpy(np.asarray(features, dtype=np.float32)))
    again = np.zeros(n, dtype=bool)
    again[selector.select(batch).numpy()] = True
    return bool(np.array_equal(again, kept))


# ---------------------------------------------------------------------------------------------
# Putting it together


@dataclass
class Data:
    features: np.ndarray              # N x D, row = dataset index
    labels: np.ndarray                # N
    losses: np.ndarray | None = None  # N reference losses; None: loss percentile skipped


def diagnose(dataset: str, methods: list[str], selections: Selections, data: Data,
             spectral: dict[str, Spectral]) -> dict:
    """The diagnostics.json of one dataset (strict JSON: no NaN; None where undefined)."""
    notes = [] if data.losses is not None else [
        "no reference losses (stage reference has not run): the loss percentile is skipped"]
    graphs: dict[tuple, dict] = {}  # (seed, batch, graph options) -> batch_graph: once per batch and graph
    out_methods = {}
    for method in methods:
        saved = selections.get(method)
        kind = method_kind(method, saved)
        entry = {"kind": kind, "seeds": sorted(saved) if saved else []}
        if method in spectral:
            entry["options"] = spectral[method].spec.as_dict()
        if kind in (PER_BATCH, WHOLE_BATCH):
            entry.update(_method_numbers(method, saved, data, spectral.get(method), graphs, notes))
        out_methods[method] = entry
    selecting = [m for m in methods if out_methods[m]["kind"] == PER_BATCH]
    size, keep = _batch_shape(selections, selecting)
    return {
        "dataset": dataset,
        "batch_size": size, "keep": keep,
        "chance": {"degree_rank": None if size is None else (size - 1) / 2, "loss_percentile": 50.0,
                   "jaccard": None if size is None or not keep else chance_jaccard(size, keep)},
        "degree_graph": "dense cosine graph of the batch's features (the paper's S), degree = row sum",
        "methods": out_methods,
        "jaccard": _jaccard_matrix(selecting, selections),
        "atlas": _atlas(selecting, selections, data),
        "notes": notes,
    }


def _graph_key(options: SpectralOptions) -> tuple:
    """The options that shape the graph (the ranking does not)."""
    return options.laplacian, options.graph, options.knn_k, options.center


def _method_numbers(method: str, saved: dict[int, dict[int, Saved]], data: Data, selector: Spectral | None,
                    graphs: dict, notes: list[str]) -> dict:
    rows, matched = [], 0
    for seed in sorted(saved):
        for number, s in sorted(saved[seed].items()):
            feats = data.features[s.indices]
            row = {"seed": seed, "batch": number, "kept": int(s.kept.sum()),
                   "degree_rank": mean_of_kept(degree_ranks(feats), s.kept),
                   "class_balance": class_balance(data.labels[s.indices], s.kept),
                   "loss_percentile": None if data.losses is None else loss_percentile(data.losses[s.indices],
                                                                                         s.kept)}
            if selector is not None:
                key = (seed, number) + _graph_key(selector.spec)
                if key not in graphs:
                    graphs[key] = batch_graph(feats, selector.spec)
                row.update(graphs[key])
                matched += reproduces(selector, feats, s.kept)
            rows.append(row)
    metrics = ["degree_rank", "class_balance", "loss_percentile"]
    if selector is not None:
        metrics += ["participation_ratio", "eigengap_ratio"]
    out = {"batches": len(rows), **{name: summary(r.get(name) for r in rows) for name in metrics},
           "per_batch": rows}
    if selector is not None:
        out["reproduced"] = {"matching": matched, "batches": len(rows)}
        if matched < len(rows):
            notes.append(f"{method}: re-running the selector here keeps another set than the run saved on "
                         f"{len(rows) - matched} of {len(rows)} batches (a stale run, the saln block changed "
                         "since training, or eigenvector round-off on another device)")
    return out


def _batch_shape(selections: Selections, methods: list[str]) -> tuple[int | None, int | None]:
    """Batch size and kept count of the selecting methods' saved batches (the most common kept count)."""
    shapes = [(len(s.kept), int(s.kept.sum())) for m in methods for batches in selections[m].values()
              for s in batches.values()]
    if not shapes:
        return None, None
    size, keep = max(set(shapes), key=shapes.count)
    return size, keep


def _shared(selections: Selections, a: str, b: str) -> list[tuple[Saved, Saved]]:
    """Saved batches of ``a`` and ``b`` with the same seed, batch number and candidates."""
    pairs = []
    for seed in sorted(set(selections[a]) & set(selections[b])):
        for number in sorted(set(selections[a][seed]) & set(selections[b][seed])):
            x, y = selections[a][seed][number], selections[b][seed][number]
            if np.array_equal(x.indices, y.indices):
                pairs.append((x, y))
    return pairs


def _jaccard_matrix(methods: list[str], selections: Selections) -> dict:
    mean, count = [], []
    for a in methods:
        pairs = [[jaccard(x.kept, y.kept) for x, y in _shared(selections, a, b)] for b in methods]
        mean.append([summary(p)["mean"] for p in pairs])
        count.append([len(p) for p in pairs])
    return {"methods": methods, "mean": mean, "n": count}


def _atlas(methods: list[str], selections: Selections, data: Data) -> dict | None:
    """2-D PCA coordinates of the first ATLAS_BATCHES saved batches of the first seed, and what each
    selecting method kept of them (positions within the batch)."""
    seed = next((s for s in sorted({s for m in methods for s in selections[m]})), None)
    if seed is None:
        return None
    first = next(m for m in methods if seed in selections[m])
    numbers = sorted(selections[first][seed])[:ATLAS_BATCHES]
    batches = [selections[first][seed][n] for n in numbers]
    unit = data.features[np.concatenate([b.indices for b in batches])].astype(np.float64)
    unit /= np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), np.finfo(float).tiny)
    coords, share = pca_2d(unit)
    out = {"seed": seed, "projection": "PCA of the L2-normalised features of these batches (the cosine "
                                       "graph's geometry)", "explained_variance": share, "batches": []}
    for i, (number, base) in enumerate(zip(numbers, batches)):
        xy = coords[i * len(base.indices):(i + 1) * len(base.indices)]
        kept = {m: np.flatnonzero(s.kept).tolist() for m in methods
                if (s := selections[m].get(seed, {}).get(number)) is not None
                and np.array_equal(s.indices, base.indices)}
        out["batches"].append({"batch": number, "xy": np.round(xy, 6).tolist(),
                               "labels": data.labels[base.indices].tolist(), "kept": kept})
    return out
