"""Datasets: a registry of loaders, deterministic splits, and prepared uint8 arrays on disk.

Every dataset is prepared once into ``images.npy`` (uint8, N x S x S x 3 at the stored
resolution), ``labels.npy`` and ``splits.npz`` (train / val / test / reference index arrays), so
later stages never decode an image again.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from saln.config import check_seed, number, require
from saln.errors import SalnError
from saln.layout import DOWNLOADS_DIR, SOURCES_DIR, SUBSET_DIR

SPLITS = ("train", "val", "test", "reference")
# The CIFAR-10 subset's official indices and array hashes, committed (written by write_subset_manifest).
SUBSET_ARRAYS = ("x_train", "y_train", "train_index", "x_test", "y_test", "test_index", "class_names")


@dataclass(frozen=True)
class SourceConfig:
    name: str
    kind: str
    image_size: int
    root: str = DOWNLOADS_DIR
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
    return SourceConfig(name=name, kind=kind, image_size=size, root=raw.get("root", DOWNLOADS_DIR),
                        path=path)


def split_config(params: dict) -> SplitConfig:
    data = require(params, "data", "params")
    val = number(data, "val_fraction", "data", lo=0, hi=1, lo_open=True, hi_open=True)
    test = number(data, "test_fraction", "data", lo=0, hi=1, lo_open=True, hi_open=True)
    ref = number(data, "reference_fraction", "data", lo=0, hi=1, hi_open=True)
    if val + ref >= 1:
        raise SalnError("data.val_fraction + data.reference_fraction must leave training data (< 1)")
    seed = check_seed(data, "split_seed", "data")
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


def first_line(err: Exception) -> str:
    """An exception's message cut to one line (its type's name when it has none)."""
    return str(err).splitlines()[0] if str(err).strip() else type(err).__name__


def _download_error(name: str, root: str, err: Exception) -> SalnError:
    reason = first_line(err)
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
    import sys

    found = read_cifar10_batches(root, train)
    if found is not None:
        print(f"note: {Path(root) / 'cifar-10-batches-py'} does not match torchvision's CIFAR-10 "
              f"checksums; reading its {'training' if train else 'test'} batches as they are",
              file=sys.stderr)
    return found


def read_cifar10_batches(root: str, train: bool) -> ExtractedSplit | None:
    """The training (data_batch_1..5, in order) or test batches of torchvision's extracted CIFAR-10
    under ``root`` as N x 32 x 32 x 3 RGB images; None when a file is missing or unreadable."""
    import pickle

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
    check_labels(y, len(classes) if classes else None, f"{cfg.path}: y")  # before y.max(): a str has none
    classes = classes or [str(c) for c in range(int(y.max()) + 1)]
    return RawDataset(resize_images(x, cfg.image_size), y, classes, is_test)


def open_npz(path: str):
    """np.load of an npz, refusing anything else: np.load would read a .npy as one array and try any
    other bytes as a pickle, reporting them as 'pickled data' instead of as a broken file."""
    import zipfile

    if not zipfile.is_zipfile(path):
        raise SalnError(f"{path} is not a readable npz file (not the zip archive np.savez writes): "
                        "re-create or re-copy it")
    return np.load(path, allow_pickle=False)


def read_npz_arrays(path: str):
    """(x, y, is_test or None, class names or None) from an npz; one line for any unreadable file."""
    import zipfile

    try:
        with open_npz(path) as z:
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
        raise SalnError(f"{path} is not a readable npz file ({first_line(err)}): re-create or re-copy "
                        "it") from None
    return x, y, is_test, classes


def check_lengths(x: np.ndarray, y: np.ndarray, where: str) -> None:
    if len(x) != len(y):
        raise SalnError(f"{where} differ in length: {len(x)} images, {len(y)} labels")
    if len(x) == 0:
        raise SalnError(f"{where} are empty")


def check_images(x: np.ndarray, where: str) -> None:
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise SalnError(f"{where} must be uint8 N x H x W x 3 (or x 1), got {x.dtype} {x.shape}")


def check_labels(y: np.ndarray, num_classes: int | None, where: str) -> np.ndarray:
    """Integer labels in [0, num_classes) (>= 0 when the class count is not known yet)."""
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise SalnError(f"{where} must be a 1-D array of integer labels, got {y.dtype} {y.shape}")
    if y.min() < 0 or (num_classes is not None and y.max() >= num_classes):
        bound = f"[0, {num_classes})" if num_classes is not None else ">= 0"
        raise SalnError(f"{where} must lie in {bound}, got labels from {y.min()} to {y.max()}")
    return y


@register("imagefolder", needs_path=True, description="a torchvision ImageFolder (one folder per class)")
def load_imagefolder(cfg: SourceConfig) -> RawDataset:
    from torchvision.datasets import ImageFolder

    layout = "one sub-folder of images (.jpg, .png, ...) per class"
    if not Path(cfg.path).is_dir():
        raise SalnError(f"{cfg.path} is not a folder: an imagefolder source is a folder with {layout}")
    try:
        folder = ImageFolder(cfg.path)
    except FileNotFoundError as err:  # torchvision: no class folder, or a class folder with no image
        raise SalnError(f"{cfg.path} is not a usable image folder ({first_line(err)}): it needs "
                        f"{layout}") from None
    images = [_folder_image(folder.loader, p, cfg.image_size) for p, _ in folder.samples]
    return RawDataset(np.stack(images), np.asarray(folder.targets, dtype=np.int64), list(folder.classes))


def _folder_image(loader: Callable, path: str, size: int) -> np.ndarray:
    """One image of an ImageFolder, size x size RGB; one line naming the file when it cannot be read."""
    from PIL import UnidentifiedImageError

    try:
        return np.asarray(loader(path).convert("RGB").resize((size, size)))
    except UnidentifiedImageError:  # its message repeats the path
        raise SalnError(f"{path} is not a readable image (not a format PIL recognises): replace or "
                        "delete it") from None
    except OSError as err:  # a truncated or damaged file
        raise SalnError(f"{path} is not a readable image ({first_line(err)}): replace or delete it") from None


@register("cifar10_subset",
          description="the 5,000/870-image CIFAR-10 subset: path's npz if present, else built from "
                      "CIFAR-10 under root; every array checked against its committed sha256")
def load_cifar10_subset(cfg: SourceConfig, manifest: Path | None = None) -> RawDataset:
    manifest = manifest or SUBSET_DIR  # read at call time, so a test can point it elsewhere
    digests = _read_manifest(manifest, "sha256.json", SUBSET_ARRAYS)
    if cfg.path and Path(cfg.path).exists():
        arrays, where = read_subset_npz(cfg.path), cfg.path
        remedy = "re-copy it, or remove it to rebuild the subset from CIFAR-10"
    else:
        arrays, where = build_cifar10_subset(cfg, manifest), f"CIFAR-10 under {cfg.root}"
        remedy = f"re-download CIFAR-10 into {cfg.root} ({CIFAR10_DOWNLOAD.format(root=cfg.root)})"
    verify_arrays(arrays, digests, where, remedy)
    x = np.concatenate([arrays["x_train"], arrays["x_test"]])
    y = np.concatenate([arrays["y_train"], arrays["y_test"]])
    is_test = np.repeat([False, True], [len(arrays["y_train"]), len(arrays["y_test"])])
    return RawDataset(resize_images(x, cfg.image_size), y, [str(c) for c in arrays["class_names"]], is_test)


CIFAR10_DOWNLOAD = 'python -c "import torchvision; torchvision.datasets.CIFAR10(\'{root}\', download=True)"'


def array_digest(a: np.ndarray) -> dict:
    """dtype, shape and sha256 of an array's values, whatever its memory layout or byte order.

    A str array is hashed as its items in UTF-8 joined by newlines, so the width numpy gives it
    (<U10 from np.array of the names, another from a file) does not change the hash.
    """
    if a.dtype.kind == "U":
        dtype, data = "str", "\n".join(a.ravel().tolist()).encode("utf-8")
    else:
        a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
        dtype, data = a.dtype.str, a.tobytes()
    return {"dtype": dtype, "shape": list(a.shape), "sha256": hashlib.sha256(data).hexdigest()}


def write_subset_manifest(npz_path: str | Path, out_dir: str | Path = SUBSET_DIR) -> None:
    """Write ``indices.json`` (the subset's positions in CIFAR-10's official training order and in
    test_batch) and ``sha256.json`` (array_digest of every array) from the subset's npz."""
    with np.load(npz_path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in SUBSET_ARRAYS}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    indices = {k: arrays[k].tolist() for k in ("train_index", "test_index")}
    (out / "indices.json").write_text(_json_lines(indices))
    (out / "sha256.json").write_text(_json_lines({k: array_digest(arrays[k]) for k in SUBSET_ARRAYS}))


def _json_lines(entries: dict) -> str:
    """A JSON object with one key per line, so a diff shows which entry changed."""
    return "{\n" + ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in entries.items()) + "\n}\n"


def _read_manifest(manifest: Path, name: str, keys: tuple[str, ...]) -> dict:
    """A committed file of SUBSET_DIR, which must hold every one of ``keys``."""
    path = Path(manifest) / name
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise SalnError(f"{path} is missing or unreadable ({first_line(err)}): restore it from the "
                        "repository") from None
    missing = [k for k in keys if not isinstance(found, dict) or k not in found]
    if missing:
        raise SalnError(f"{path} lacks {', '.join(missing)}: restore it from the repository")
    return found


def read_subset_npz(path: str) -> dict:
    """The subset's arrays from its npz (every key of SUBSET_ARRAYS)."""
    import zipfile

    try:
        with open_npz(path) as z:
            missing = [k for k in SUBSET_ARRAYS if k not in z.files]
            if missing:
                raise SalnError(f"{path} lacks the CIFAR-10 subset's array(s) {', '.join(missing)}: "
                                "re-copy it, or remove it to rebuild the subset from CIFAR-10")
            return {k: z[k] for k in SUBSET_ARRAYS}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
        raise SalnError(f"{path} is not a readable npz file ({first_line(err)}): re-create or re-copy "
                        "it") from None


def build_cifar10_subset(cfg: SourceConfig, manifest: Path) -> dict:
    """The subset's arrays cut from torchvision's extracted CIFAR-10 under ``cfg.root`` at the
    committed official indices, laid out as in the npz (x HWC RGB uint8, y int64)."""
    indices = _read_manifest(manifest, "indices.json", ("train_index", "test_index"))
    parts = {split: read_cifar10_batches(cfg.root, split == "train") for split in ("train", "test")}
    if None in parts.values():
        folder = f"CIFAR-10 under {cfg.root}/cifar-10-batches-py"
        npz = f"its npz {cfg.path} nor {folder}" if cfg.path else folder
        link = f"link the subset's npz to {cfg.path} or, " if cfg.path else ""
        raise SalnError(f"dataset {cfg.name} finds neither {npz}: {link}with a network, download CIFAR-10 "
                        f"once: {CIFAR10_DOWNLOAD.format(root=cfg.root)}")
    arrays = {"class_names": np.asarray(parts["train"].classes)}
    for split, part in parts.items():
        index = np.asarray(indices[f"{split}_index"], dtype=np.int64)
        if len(index) and (index.min() < 0 or index.max() >= len(part)):
            raise SalnError(f"CIFAR-10 under {cfg.root} has {len(part)} {split} images, but the subset "
                            f"needs positions up to {index.max()}: re-download it "
                            f"({CIFAR10_DOWNLOAD.format(root=cfg.root)})")
        arrays[f"x_{split}"] = part.data[index]
        arrays[f"y_{split}"] = np.asarray(part.targets, dtype=np.int64)[index]
        arrays[f"{split}_index"] = index
    return arrays


def verify_arrays(arrays: dict, digests: dict, where: str, remedy: str) -> None:
    """One line naming the first array whose dtype, shape or sha256 differs from its recorded digest."""
    for key in SUBSET_ARRAYS:
        got, want = array_digest(arrays[key]), digests[key]
        if got != want:
            raise SalnError(f"{where}: array {key} differs from the CIFAR-10 subset's (got {got['dtype']} "
                            f"{tuple(got['shape'])} sha256 {got['sha256'][:12]}..., expected {want['dtype']} "
                            f"{tuple(want['shape'])} sha256 {want['sha256'][:12]}...): {remedy}")


def held_out(n: int, fraction: float) -> int:
    """Images ``_stratified_split`` holds out of ``n`` (scikit-learn's rounding: ceil)."""
    return min(math.ceil(fraction * n), n) if fraction > 0 else 0


def split_sizes(images: int, official_test: int | None, cfg: SplitConfig) -> dict[str, int]:
    """The split sizes ``make_splits`` gives a dataset of ``images`` images (of which
    ``official_test`` form its official test split, if it has one), computed without the labels."""
    test = official_test if official_test is not None else held_out(images, cfg.test_fraction)
    pool = images - test
    val = held_out(pool, cfg.val_fraction)
    reference = held_out(pool - val, cfg.reference_fraction / (1 - cfg.val_fraction))
    return {"train": pool - val - reference, "val": val, "test": test, "reference": reference}


def _stratified_split(indices: np.ndarray, labels: np.ndarray, fraction: float, seed: int):
    """(rest, held_out) with ``fraction`` of ``indices`` held out, per class where possible."""
    from sklearn.model_selection import train_test_split

    held = held_out(len(indices), fraction)
    if held == 0 or held >= len(indices):  # one side stays empty; prepare says which split is too small
        return indices[held:], indices[:held]
    counts = np.unique(labels[indices], return_counts=True)[1]
    # Stratifying needs 2 images per class and room for every class on both sides; else draw at random.
    can_stratify = counts.min() >= 2 and min(held, len(indices) - held) >= len(counts)
    stratify = labels[indices] if can_stratify else None
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


def check_two_classes(raw: RawDataset, what: str) -> None:
    """A single class would train and test a classifier that is always right."""
    present = np.unique(raw.labels)
    if len(present) < 2:
        named = f"class {raw.classes[present[0]]!r}" if len(present) else "no class"
        raise SalnError(f"{what} has one class ({named} for all {len(raw.labels)} images): a classifier "
                        "needs at least 2 classes")


def check_split_classes(splits: dict, labels: np.ndarray, cfg: SplitConfig, what: str) -> None:
    """Every split used (train, val, test, reference unless its fraction is 0) holds 2 classes or more."""
    used = [s for s in SPLITS if s != "reference" or cfg.reference_fraction > 0]
    for name in used:
        found = len(np.unique(labels[splits[name]]))
        if found < 2:
            raise SalnError(f"{what} is too small to split: its {name} split gets {len(splits[name])} of "
                            f"{len(labels)} images, {found} class(es), and each of {', '.join(used)} "
                            "needs at least 2 classes; use more images per class or other "
                            "data.*_fraction values")


def check_disjoint(splits: dict, n: int) -> None:
    joined = np.concatenate([splits[s] for s in SPLITS])
    if len(np.unique(joined)) != len(joined) or len(joined) != n:
        raise AssertionError("splits overlap or miss examples")


def prepare(source: SourceConfig, split_cfg: SplitConfig, out_dir: str | Path) -> dict:
    """Load, resize, split and write one dataset; returns its summary (also meta.json)."""
    raw = DATASETS[source.kind].load(source)
    raw.labels = raw.labels.astype(np.int64)
    what = f"dataset {source.name}" + (f" ({source.path})" if source.path else "")
    check_two_classes(raw, what)
    splits = make_splits(raw.labels, raw.is_official_test, split_cfg)
    check_split_classes(splits, raw.labels, split_cfg, what)
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
