"""Datasets: a registry of loaders, deterministic splits, and prepared uint8 arrays on disk.

Every dataset is prepared once into ``images.npy`` (uint8, N x S x S x 3 at the stored
resolution), ``labels.npy`` and ``splits.npz`` (train / val / test / reference index arrays), so
later stages never decode an image again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from saln.config import number, require
from saln.errors import SalnError

SPLITS = ("train", "val", "test", "reference")
SOURCES_DIR = "data/sources"  # npz files and image folders live here: stage prepare's dep (dvc.yaml)


@dataclass(frozen=True)
class SourceConfig:
    name: str
    kind: str
    image_size: int
    root: str = "data/downloads"
    path: str | None = None


@dataclass(frozen=True)
class SplitConfig:
    val_fraction: float
    test_fraction: float
    reference_fraction: float
    seed: int


@dataclass
class RawDataset:
    images: np.ndarray  # uint8 N x H x W x 3
    labels: np.ndarray  # int64 N
    classes: list[str]
    is_official_test: np.ndarray | None = None  # bool N; None when the dataset has no test split


@dataclass(frozen=True)
class DatasetKind:
    load: Callable[[SourceConfig], RawDataset]
    needs_path: bool = False
    description: str = ""


DATASETS: dict[str, DatasetKind] = {}


def register(name: str, needs_path: bool = False, description: str = ""):
    def add(load):
        DATASETS[name] = DatasetKind(load=load, needs_path=needs_path, description=description)
        return load

    return add


def source_config(params: dict, name: str) -> SourceConfig:
    """``data.sources.<name>``, validated (a path source must exist)."""
    sources = require(params.get("data", {}), "sources", "data")
    if name not in sources:
        raise SalnError(f"dataset {name!r} is not in data.sources (known: {', '.join(sources)})")
    where = f"data.sources.{name}"
    raw = sources[name]
    kind = require(raw, "kind", where)
    if kind not in DATASETS:
        raise SalnError(f"{where}.kind must be one of {', '.join(DATASETS)}, got {kind!r}")
    size = number(raw, "image_size", where, lo=8, integer=True)
    path = raw.get("path")
    if DATASETS[kind].needs_path and (not path or not Path(path).exists()):
        raise SalnError(f"{where}.path must point to an existing {kind} dataset, got {path!r}: place or "
                        f"link it under {SOURCES_DIR}/ (see {SOURCES_DIR}/README.md)")
    return SourceConfig(name=name, kind=kind, image_size=size, root=raw.get("root", "data/downloads"),
                        path=path)


def split_config(params: dict) -> SplitConfig:
    data = require(params, "data", "params")
    val = number(data, "val_fraction", "data", lo=0, hi=1, lo_open=True, hi_open=True)
    test = number(data, "test_fraction", "data", lo=0, hi=1, lo_open=True, hi_open=True)
    ref = number(data, "reference_fraction", "data", lo=0, hi=1, hi_open=True)
    if val + ref >= 1:
        raise SalnError("data.val_fraction + data.reference_fraction must leave training data (< 1)")
    seed = number(data, "split_seed", "data", integer=True)
    return SplitConfig(val_fraction=val, test_fraction=test, reference_fraction=ref, seed=seed)


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Square-resize uint8 NHWC images with PIL's bilinear filter (antialiased)."""
    if images.shape[1:3] == (size, size):
        return np.ascontiguousarray(images)
    from PIL import Image

    out = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for i, img in enumerate(images):
        out[i] = np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR))
    return out


def _download_error(name: str, root: str, err: Exception) -> SalnError:
    reason = str(err).splitlines()[0] if str(err) else type(err).__name__
    return SalnError(f"could not download {name} into {root} ({reason}); connect to the internet once, "
                     f"or place torchvision's extracted {name} files under {root}, or use an npz or "
                     "imagefolder source")


def torchvision_split(dataset_class, name: str, root: str, read_extracted: Callable | None = None,
                      **kwargs):
    """A torchvision dataset from files already under ``root``, downloading only when they are missing.

    ``download=True`` re-verifies archive checksums and may reach for the network even when the
    extracted files are present, so it is tried only after a plain load fails. ``read_extracted``
    (optional) reads the same extracted files directly when torchvision refuses them (CIFAR-10's
    per-file md5 check) and returns None when they are absent or unreadable.
    """
    try:
        return dataset_class(root, download=False, **kwargs)
    except RuntimeError:  # torchvision's "Dataset not found or corrupted"
        pass
    if read_extracted is not None and (found := read_extracted()) is not None:
        return found
    try:
        return dataset_class(root, download=True, **kwargs)
    except Exception as err:  # torchvision raises URLError, RuntimeError or OSError
        raise _download_error(name, root, err) from None


@register("digits", description="scikit-learn's 1,797 real 8x8 handwritten digits, shipped offline")
def load_digits(cfg: SourceConfig) -> RawDataset:
    from sklearn.datasets import load_digits as sk_digits

    digits = sk_digits()
    gray = np.round(digits.images / 16.0 * 255).astype(np.uint8)
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    return RawDataset(resize_images(rgb, cfg.image_size), digits.target.astype(np.int64),
                      [str(c) for c in digits.target_names])


@register("cifar10", description="CIFAR-10 through torchvision (official train/test)")
def load_cifar10(cfg: SourceConfig) -> RawDataset:
    from torchvision.datasets import CIFAR10

    parts = [torchvision_split(CIFAR10, "CIFAR-10", cfg.root, train=flag,
                               read_extracted=lambda flag=flag: read_cifar10_files(cfg.root, flag))
             for flag in (True, False)]
    images = np.concatenate([p.data for p in parts])
    labels = np.concatenate([np.asarray(p.targets) for p in parts]).astype(np.int64)
    is_test = np.repeat([False, True], [len(parts[0]), len(parts[1])])
    return RawDataset(resize_images(images, cfg.image_size), labels, list(parts[0].classes), is_test)


CIFAR10_FILES = {True: [f"data_batch_{i}" for i in range(1, 6)], False: ["test_batch"]}


@dataclass
class ExtractedSplit:
    """What load_cifar10 reads of torchvision's CIFAR10: images (N x 32 x 32 x 3), labels, class names."""
    data: np.ndarray
    targets: list[int]
    classes: list[str]

    def __len__(self) -> int:
        return len(self.targets)


def read_cifar10_files(root: str, train: bool):
    """The extracted CIFAR-10 pickles under ``root``, read exactly as torchvision's CIFAR10 reads them
    but without its md5 comparison against the published files (which a re-pickled or otherwise
    modified copy fails); None when any file is missing or unreadable, so the caller downloads.
    Says on stderr that the files are used without a checksum match, so nothing is silent.
    """
    import pickle
    import sys

    folder = Path(root) / "cifar-10-batches-py"
    names = CIFAR10_FILES[train] + ["batches.meta"]
    if not all((folder / n).is_file() for n in names):
        return None
    try:
        entries = []
        for n in names:
            with open(folder / n, "rb") as f:
                entries.append(pickle.load(f, encoding="latin1"))
        *batches, meta = entries
        data = np.vstack([b["data"] for b in batches]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        targets = [int(t) for b in batches for t in b["labels"]]
        classes = list(meta["label_names"])
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError, AttributeError):
        return None
    if len(data) != len(targets) or data.dtype != np.uint8:
        return None
    print(f"note: {folder} does not match torchvision's CIFAR-10 checksums; reading its "
          f"{'training' if train else 'test'} batches as they are", file=sys.stderr)
    return ExtractedSplit(np.ascontiguousarray(data), targets, classes)


@register("pets", description="Oxford-IIIT Pet, 37 breeds, through torchvision (trainval/test)")
def load_pets(cfg: SourceConfig) -> RawDataset:
    from PIL import Image
    from torchvision.datasets import OxfordIIITPet

    parts = [torchvision_split(OxfordIIITPet, "Oxford-IIIT Pet", cfg.root, split=s)
             for s in ("trainval", "test")]
    size = cfg.image_size
    images, labels = [], []
    for part in parts:
        for path, label in zip(part._images, part._labels):
            with Image.open(path) as img:
                images.append(np.asarray(img.convert("RGB").resize((size, size), Image.BILINEAR)))
            labels.append(label)
    is_test = np.repeat([False, True], [len(parts[0]), len(parts[1])])
    return RawDataset(np.stack(images), np.asarray(labels, dtype=np.int64), list(parts[0].classes),
                      is_test)


@register("npz", needs_path=True,
          description="arrays x (uint8 NHWC) and y, or x_train/y_train/x_test/y_test")
def load_npz(cfg: SourceConfig) -> RawDataset:
    x, y, is_test, classes = read_npz_arrays(cfg.path)
    check_images(x, f"{cfg.path}: x")
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    classes = classes or [str(c) for c in range(int(y.max()) + 1)]
    check_labels(y, len(classes), f"{cfg.path}: y")
    return RawDataset(resize_images(x, cfg.image_size), y, classes, is_test)


def read_npz_arrays(path: str):
    """(x, y, is_test or None, class names or None) from an npz; one line for any unreadable file."""
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            if {"x_train", "y_train", "x_test", "y_test"} <= keys:
                parts = [(z["x_train"], z["y_train"]), (z["x_test"], z["y_test"])]
                for (x, y), name in zip(parts, ("train", "test")):
                    check_lengths(x, y, f"{path}: x_{name} and y_{name}")
                x = np.concatenate([parts[0][0], parts[1][0]])
                y = np.concatenate([parts[0][1], parts[1][1]])
                is_test = np.repeat([False, True], [len(parts[0][1]), len(parts[1][1])])
            elif {"x", "y"} <= keys:
                x, y, is_test = z["x"], z["y"], None
                check_lengths(x, y, f"{path}: x and y")
            else:
                raise SalnError(f"{path} must hold arrays x and y (or x_train, y_train, x_test, y_test), "
                                f"found {', '.join(sorted(keys)) or 'none'}")
            classes = [str(c) for c in z["class_names"]] if "class_names" in keys else None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise SalnError(f"{path} is not a readable npz file ({reason}): re-create or re-copy it") from None
    return x, y, is_test, classes


def check_lengths(x: np.ndarray, y: np.ndarray, where: str) -> None:
    if len(x) != len(y):
        raise SalnError(f"{where} differ in length: {len(x)} images, {len(y)} labels")
    if len(x) == 0:
        raise SalnError(f"{where} are empty")


def check_images(x: np.ndarray, where: str) -> None:
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise SalnError(f"{where} must be uint8 N x H x W x 3 (or x 1), got {x.dtype} {x.shape}")


def check_labels(y: np.ndarray, num_classes: int, where: str) -> np.ndarray:
    """Integer labels in [0, num_classes)."""
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise SalnError(f"{where} must be a 1-D array of integer labels, got {y.dtype} {y.shape}")
    if y.min() < 0 or y.max() >= num_classes:
        raise SalnError(f"{where} must lie in [0, {num_classes}), got labels from {y.min()} to {y.max()}")
    return y


@register("imagefolder", needs_path=True, description="a torchvision ImageFolder (one folder per class)")
def load_imagefolder(cfg: SourceConfig) -> RawDataset:
    from torchvision.datasets import ImageFolder

    folder = ImageFolder(cfg.path)
    size = cfg.image_size
    images = [np.asarray(folder.loader(p).convert("RGB").resize((size, size))) for p, _ in folder.samples]
    if not images:
        raise SalnError(f"{cfg.path} holds no images (expected one sub-folder per class)")
    return RawDataset(np.stack(images), np.asarray(folder.targets, dtype=np.int64), list(folder.classes))


def _stratified_split(indices: np.ndarray, labels: np.ndarray, fraction: float, seed: int):
    """(rest, held_out) with ``fraction`` of ``indices`` held out, per class where possible."""
    from sklearn.model_selection import train_test_split

    if fraction <= 0:
        return indices, indices[:0]
    counts = np.bincount(labels[indices])
    stratify = labels[indices] if counts[counts > 0].min() >= 2 else None
    rest, held = train_test_split(indices, test_size=fraction, random_state=seed, stratify=stratify)
    return np.sort(rest), np.sort(held)


def make_splits(labels: np.ndarray, is_official_test: np.ndarray | None, cfg: SplitConfig) -> dict:
    """Disjoint train / val / test / reference index arrays covering every example once.

    The official test split is used when the dataset has one; otherwise ``test_fraction`` is held
    out. Validation and the reference slice (for JEST's reference model) come out of the rest.
    """
    everything = np.arange(len(labels))
    if is_official_test is not None:
        pool, test = everything[~is_official_test], everything[is_official_test]
    else:
        pool, test = _stratified_split(everything, labels, cfg.test_fraction, cfg.seed)
    pool, val = _stratified_split(pool, labels, cfg.val_fraction, cfg.seed + 1)
    ref_share = cfg.reference_fraction / (1 - cfg.val_fraction)  # of the original training pool
    train, reference = _stratified_split(pool, labels, ref_share, cfg.seed + 2)
    splits = {"train": train, "val": val, "test": test, "reference": reference}
    check_disjoint(splits, len(labels))
    return splits


def check_disjoint(splits: dict, n: int) -> None:
    joined = np.concatenate([splits[s] for s in SPLITS])
    if len(np.unique(joined)) != len(joined) or len(joined) != n:
        raise AssertionError("splits overlap or miss examples")


def prepare(source: SourceConfig, split_cfg: SplitConfig, out_dir: str | Path) -> dict:
    """Load, resize, split and write one dataset; returns its summary (also meta.json)."""
    raw = DATASETS[source.kind].load(source)
    raw.labels = raw.labels.astype(np.int64)
    splits = make_splits(raw.labels, raw.is_official_test, split_cfg)
    empty = [s for s in ("train", "val", "test") if len(splits[s]) == 0]
    if empty:
        raise SalnError(f"dataset {source.name} leaves the {empty[0]} split empty "
                        f"({len(raw.labels)} examples): use more data or other data.*_fraction values")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "images.npy", raw.images)
    np.save(out / "labels.npy", raw.labels)
    np.savez(out / "splits.npz", **splits)
    meta = {"name": source.name, "kind": source.kind, "image_size": source.image_size,
            "classes": raw.classes, "num_classes": len(raw.classes),
            "sizes": {s: int(len(splits[s])) for s in SPLITS}}
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


@dataclass
class Prepared:
    images: np.ndarray
    labels: np.ndarray
    splits: dict[str, np.ndarray]
    meta: dict

    @property
    def num_classes(self) -> int:
        return self.meta["num_classes"]


def load_prepared(directory: str | Path) -> Prepared:
    d = Path(directory)
    if not (d / "meta.json").is_file():
        raise SalnError(f"{d} holds no prepared dataset: run `dvc repro` (stage prepare) first")
    with np.load(d / "splits.npz") as z:
        splits = {s: z[s] for s in SPLITS}
    return Prepared(np.load(d / "images.npy", mmap_mode="r"), np.load(d / "labels.npy"), splits,
                    json.loads((d / "meta.json").read_text()))
