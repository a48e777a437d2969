"""The CIFAR-10 subset: its npz checked against the committed hashes, or rebuilt from torchvision's
extracted CIFAR-10 at the committed official indices (here from a small fake in the same format)."""

import json
import pickle

import numpy as np
import pytest

import saln.data
from saln.data import (SUBSET_ARRAYS, SUBSET_DIR, SourceConfig, SplitConfig, array_digest,
                       build_cifar10_subset, load_cifar10_subset, prepare, write_subset_manifest)
from saln.errors import SalnError

CLASSES = ["plane", "car", "bird"]
BATCH = 6  # images per fake training batch; the real ones hold 10,000
TRAIN_INDEX = np.array([0, 7, 13, 20, 29, 25, 3, 14, 16])  # in every batch; not sorted, on purpose
TEST_INDEX = np.array([4, 1, 3])


def fake_images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def write_batch(path, images: np.ndarray, labels) -> None:
    """CIFAR-10's python format: rows of 1024 red, 1024 green, 1024 blue bytes, row-major."""
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)
    with open(path, "wb") as f:
        pickle.dump({"data": rows, "labels": list(map(int, labels))}, f)


@pytest.fixture
def cifar(tmp_path):
    """A fake extracted CIFAR-10 under tmp_path/root, and the subset npz and manifest cut from it."""
    folder = tmp_path / "root" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train, test = fake_images(5 * BATCH, 1), fake_images(5, 2)
    train_labels, test_labels = np.arange(5 * BATCH) % 3, np.arange(5) % 3
    for i in range(5):
        part = slice(i * BATCH, (i + 1) * BATCH)
        write_batch(folder / f"data_batch_{i + 1}", train[part], train_labels[part])
    write_batch(folder / "test_batch", test, test_labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CLASSES, "num_cases_per_batch": BATCH}, f)
    npz = tmp_path / "subset.npz"
    np.savez(npz, x_train=train[TRAIN_INDEX], y_train=train_labels[TRAIN_INDEX], train_index=TRAIN_INDEX,
             x_test=test[TEST_INDEX], y_test=test_labels[TEST_INDEX], test_index=TEST_INDEX,
             class_names=np.array(CLASSES))
    write_subset_manifest(npz, tmp_path / "manifest")
    return {"root": tmp_path / "root", "npz": npz, "manifest": tmp_path / "manifest", "train": train,
            "train_labels": train_labels, "test": test}


def source(cifar, path=None) -> SourceConfig:
    return SourceConfig("sub", "cifar10_subset", 32, root=str(cifar["root"]), path=str(path) if path else None)


def test_the_subset_is_cut_at_the_official_positions(cifar):
    arrays = build_cifar10_subset(source(cifar), cifar["manifest"])
    for i, position in enumerate(TRAIN_INDEX):  # HWC RGB, as in the npz
        np.testing.assert_array_equal(arrays["x_train"][i], cifar["train"][position])
        assert arrays["y_train"][i] == cifar["train_labels"][position]
    np.testing.assert_array_equal(arrays["x_test"], cifar["test"][TEST_INDEX])
    assert arrays["class_names"].tolist() == CLASSES


def test_built_and_npz_routes_give_the_same_dataset(cifar, tmp_path):
    built = load_cifar10_subset(source(cifar, tmp_path / "absent.npz"), cifar["manifest"])
    read = load_cifar10_subset(source(cifar, cifar["npz"]), cifar["manifest"])
    for raw in (built, read):
        np.testing.assert_array_equal(raw.images[:9], cifar["train"][TRAIN_INDEX])
        assert raw.is_official_test.tolist() == [False] * 9 + [True] * 3 and raw.classes == CLASSES
    np.testing.assert_array_equal(built.images, read.images)
    np.testing.assert_array_equal(built.labels, read.labels)


def test_changed_cifar_files_are_refused_naming_the_array(cifar, tmp_path):
    images = cifar["train"][BATCH: 2 * BATCH].copy()
    images[7 - BATCH, 0, 0, 0] ^= 1  # one red value of training image 7, which the subset holds
    write_batch(cifar["root"] / "cifar-10-batches-py" / "data_batch_2", images, np.arange(BATCH) % 3)
    with pytest.raises(SalnError) as err:
        load_cifar10_subset(source(cifar, tmp_path / "absent.npz"), cifar["manifest"])
    message = str(err.value)
    assert message.startswith(f"CIFAR-10 under {cifar['root']}: array x_train differs from the CIFAR-10 "
                              "subset's (got |u1 (9, 32, 32, 3) sha256 ")
    assert "\n" not in message and "download=True" in message


def test_the_npz_is_verified_when_present(cifar, tmp_path):
    with np.load(cifar["npz"]) as z:
        arrays = {k: z[k] for k in SUBSET_ARRAYS}
    arrays["y_test"] = (arrays["y_test"] + 1) % 3
    np.savez(tmp_path / "changed.npz", **arrays)
    with pytest.raises(SalnError) as err:
        load_cifar10_subset(source(cifar, tmp_path / "changed.npz"), cifar["manifest"])
    assert str(err.value).startswith(f"{tmp_path / 'changed.npz'}: array y_test differs")


def test_missing_files_say_how_to_get_them(cifar, tmp_path, monkeypatch):
    monkeypatch.setattr(saln.data, "SUBSET_DIR", cifar["manifest"])
    cfg = SourceConfig("sub", "cifar10_subset", 32, root=str(tmp_path / "dl"),
                       path=str(tmp_path / "sub.npz"))
    with pytest.raises(SalnError) as err:
        prepare(cfg, SplitConfig(0.1, 0.2, 0.1, 0), tmp_path / "out")
    assert str(err.value) == (
        f"dataset sub finds neither its npz {tmp_path / 'sub.npz'} nor CIFAR-10 under {tmp_path / 'dl'}"
        f"/cifar-10-batches-py: link the subset's npz to {tmp_path / 'sub.npz'} or, with a network, "
        f"download CIFAR-10 once: python -c \"import torchvision; "
        f"torchvision.datasets.CIFAR10('{tmp_path / 'dl'}', download=True)\"")
    assert not (tmp_path / "out").exists()


def test_prepare_builds_the_subset(cifar, tmp_path, monkeypatch):
    monkeypatch.setattr(saln.data, "SUBSET_DIR", cifar["manifest"])
    meta = prepare(source(cifar), SplitConfig(0.4, 0.2, 0.0, 0), tmp_path / "out")
    assert meta["kind"] == "cifar10_subset" and meta["sizes"]["test"] == 3 and meta["classes"] == CLASSES


def test_digests_ignore_str_width_and_byte_order():
    names = ["airplane", "automobile"]
    assert array_digest(np.array(names)) == array_digest(np.array(names, dtype="<U40"))
    values = np.arange(5, dtype="<i8")
    assert array_digest(values) == array_digest(values.astype(">i8"))
    assert array_digest(values) != array_digest(values.astype("<i4"))


def test_committed_indices_match_their_recorded_hashes():
    """Holds in a clone without the npz: the committed indices are the ones the hashes describe."""
    digests = json.loads((SUBSET_DIR / "sha256.json").read_text())
    indices = json.loads((SUBSET_DIR / "indices.json").read_text())
    assert set(digests) == set(SUBSET_ARRAYS)
    for key in ("train_index", "test_index"):
        assert array_digest(np.asarray(indices[key], dtype=np.int64)) == digests[key]
    assert digests["train_index"]["shape"] == [5000] and digests["test_index"]["shape"] == [870]


def test_committed_manifest_matches_the_real_subset(cifar_subset_path):
    digests = json.loads((SUBSET_DIR / "sha256.json").read_text())
    indices = json.loads((SUBSET_DIR / "indices.json").read_text())
    with np.load(cifar_subset_path) as z:
        assert {k: array_digest(z[k]) for k in SUBSET_ARRAYS} == digests
        for key in ("train_index", "test_index"):
            assert indices[key] == z[key].tolist()


def test_official_files_rebuild_the_real_subset(cifar_subset_path, tmp_path):
    """Batches in the official format holding the subset's images at their official positions (and
    zeros elsewhere) rebuild every array of the real npz, checked against the committed hashes."""
    with np.load(cifar_subset_path) as z:
        real = {k: z[k] for k in SUBSET_ARRAYS}
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name, split, size in [(f"data_batch_{i}", "train", 10_000) for i in range(1, 6)] + [
            ("test_batch", "test", 10_000)]:
        start = 0 if split == "test" else (int(name[-1]) - 1) * size
        images, labels = np.zeros((size, 32, 32, 3), np.uint8), np.zeros(size, np.int64)
        inside = (real[f"{split}_index"] >= start) & (real[f"{split}_index"] < start + size)
        images[real[f"{split}_index"][inside] - start] = real[f"x_{split}"][inside]
        labels[real[f"{split}_index"][inside] - start] = real[f"y_{split}"][inside]
        write_batch(folder / name, images, labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": real["class_names"].tolist()}, f)
    raw = load_cifar10_subset(SourceConfig("c", "cifar10_subset", 32, root=str(tmp_path)))
    assert len(raw.labels) == 5870 and raw.classes[0] == "airplane"
