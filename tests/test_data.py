"""Dataset registry, deterministic disjoint splits, prepared arrays on disk."""

import numpy as np
import pytest

from saln.data import SourceConfig, SplitConfig
from saln.data import DATASETS, load_prepared, make_splits, prepare
from saln.errors import SalnError
from tests.conftest import write_npz

SPLIT = SplitConfig(val_fraction=0.1, test_fraction=0.2, reference_fraction=0.1, seed=0)


def test_registry_lists_every_kind():
    assert {"digits", "cifar10", "pets", "npz", "imagefolder", "cifar10_subset"} <= set(DATASETS)


def test_splits_are_disjoint_stratified_and_deterministic():
    labels = np.repeat(np.arange(5), 40)
    a, b = make_splits(labels, None, SPLIT), make_splits(labels, None, SPLIT)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    union = np.concatenate(list(a.values()))
    assert len(np.unique(union)) == len(union) == len(labels)
    assert len(a["test"]) == 40 and len(a["val"]) == 16 and len(a["reference"]) == 16
    for part in ("test", "val", "reference"):  # stratified: class counts differ by at most one
        counts = np.bincount(labels[a[part]], minlength=5)
        assert counts.max() - counts.min() <= 1


def test_official_test_split_is_kept():
    labels = np.repeat(np.arange(4), 25)
    is_test = np.arange(100) >= 80
    splits = make_splits(labels, is_test, SPLIT)
    np.testing.assert_array_equal(splits["test"], np.arange(80, 100))


def test_prepare_digits_writes_uint8_arrays(tmp_path):
    meta = prepare(SourceConfig("digits", "digits", 16), SPLIT, tmp_path)
    prepared = load_prepared(tmp_path)
    assert prepared.images.dtype == np.uint8 and prepared.images.shape == (1797, 16, 16, 3)
    assert meta["num_classes"] == 10 and sum(meta["sizes"].values()) == 1797


@pytest.mark.parametrize("official_test", [False, True])
def test_npz_source_resizes_and_splits(tmp_path, official_test):
    path = write_npz(tmp_path / "d.npz", official_test=official_test)
    meta = prepare(SourceConfig("mine", "npz", 20, path=str(path)),
                   SplitConfig(0.25, 0.25, 0.0, 1), tmp_path / "out")
    prepared = load_prepared(tmp_path / "out")
    assert prepared.images.shape == (40, 20, 20, 3)
    assert meta["sizes"]["test"] == (20 if official_test else 10)


def test_npz_with_wrong_arrays_is_one_line_error(tmp_path):
    np.savez(tmp_path / "bad.npz", images=np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(SalnError, match="must hold arrays x and y"):
        prepare(SourceConfig("bad", "npz", 8, path=str(tmp_path / "bad.npz")), SPLIT, tmp_path / "o")


def test_download_failure_is_one_line_with_remedy(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise RuntimeError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(SalnError) as err:
        prepare(SourceConfig("cifar10", "cifar10", 32, root=str(tmp_path)), SPLIT, tmp_path / "o")
    message = str(err.value)
    assert "\n" not in message and "could not download CIFAR-10" in message and "npz" in message
    assert not (tmp_path / "o").exists()


def test_real_cifar_subset_prepares(cifar_subset_path, tmp_path):
    meta = prepare(SourceConfig("c", "npz", 32, path=str(cifar_subset_path)), SPLIT, tmp_path)
    assert meta["sizes"]["test"] == 870 and meta["classes"][0] == "airplane"


def test_imagefolder_source_reads_one_folder_per_class(tmp_path):
    from PIL import Image

    for label, colour in (("cat", (200, 10, 10)), ("dog", (10, 10, 200))):
        (tmp_path / "root" / label).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (20 + i, 14), colour).save(tmp_path / "root" / label / f"{i}.png")
    meta = prepare(SourceConfig("pics", "imagefolder", 12, path=str(tmp_path / "root")),
                   SplitConfig(0.25, 0.25, 0.0, 0), tmp_path / "out")
    prepared = load_prepared(tmp_path / "out")
    assert meta["classes"] == ["cat", "dog"] and prepared.images.shape == (12, 12, 12, 3)
    red = prepared.images[prepared.labels == 0][:, 6, 6]
    assert (red[:, 0] > 150).all() and (red[:, 2] < 60).all()  # pixels kept with their class
