"""Bad data and weights files are refused with one line naming the file and the problem, before any
output is written; a real bug inside a stage still shows its traceback."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from saln.data import SourceConfig, SplitConfig, prepare
from saln.errors import SalnError
from tests.conftest import ROOT

SPLIT = SplitConfig(val_fraction=0.1, test_fraction=0.2, reference_fraction=0.1, seed=0)


def refused(kind: str, path, tmp_path) -> str:
    """prepare's one-line message for a bad source; nothing written."""
    out = tmp_path / "out"
    with pytest.raises(SalnError) as err:
        prepare(SourceConfig("mine", kind, 12, path=str(path)), SPLIT, out)
    message = str(err.value)
    assert "\n" not in message
    assert not out.exists()
    return message


def images(n: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 12, 12, 3), dtype=np.uint8)


def save_png(path, colour=(200, 10, 10)):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (10, 8), colour).save(path)


def image_folder(root, classes=("cat", "dog"), per_class=6):
    for label in classes:
        for i in range(per_class):
            save_png(root / label / f"{i}.png")
    return root


def test_string_labels(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=images(6), y=np.array(list("abcabc")))
    assert refused("npz", path, tmp_path) == f"{path}: y must be a 1-D array of integer labels, got <U1 (6,)"


def test_too_few_images_to_split(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=images(5), y=np.array([0, 1, 0, 1, 0]))
    message = refused("npz", path, tmp_path)
    assert message.startswith(f"dataset mine ({path}) is too small to split: its val split gets 1 of 5 images")
    assert "needs at least 2 classes" in message


def test_classes_too_small_to_stratify_are_split_at_random():
    """3 classes but a held-out share of 2 images: no stratified split exists, a random one does."""
    from saln.data import make_splits

    labels = np.repeat([0, 1, 2], 3)
    splits = make_splits(labels, None, SplitConfig(0.2, 0.2, 0.0, 0))
    assert len(splits["test"]) == 2 and sum(len(s) for s in splits.values()) == 9


def test_a_single_class(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=images(40), y=np.zeros(40, dtype=np.int64))
    assert refused("npz", path, tmp_path) == (f"dataset mine ({path}) has one class (class '0' for all 40 "
                                               "images): a classifier needs at least 2 classes")


def test_random_bytes_npz_is_not_called_pickled(tmp_path):
    path = tmp_path / "d.npz"
    path.write_bytes(np.random.default_rng(0).bytes(2000))
    message = refused("npz", path, tmp_path)
    assert message.startswith(f"{path} is not a readable npz file") and "pickle" not in message


def test_empty_image_folder(tmp_path):
    (tmp_path / "pics").mkdir()
    message = refused("imagefolder", tmp_path / "pics", tmp_path)
    assert message.startswith(f"{tmp_path / 'pics'} is not a usable image folder (Couldn't find any class")


def test_class_folder_without_images(tmp_path):
    (tmp_path / "pics" / "cat").mkdir(parents=True)
    (tmp_path / "pics" / "cat" / "notes.txt").write_text("no image here\n")
    message = refused("imagefolder", tmp_path / "pics", tmp_path)
    assert message.startswith(f"{tmp_path / 'pics'} is not a usable image folder")
    assert "no valid file for the classes cat" in message


@pytest.mark.parametrize("content", ["random", "truncated"])
def test_one_corrupt_jpeg_is_named(tmp_path, content):
    from PIL import Image

    root = image_folder(tmp_path / "pics")
    bad = root / "dog" / "9.jpg"
    if content == "random":
        bad.write_bytes(np.random.default_rng(0).bytes(500))
    else:
        Image.new("RGB", (64, 64), (5, 90, 9)).save(tmp_path / "whole.jpg")
        data = (tmp_path / "whole.jpg").read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    message = refused("imagefolder", root, tmp_path)
    assert message.startswith(f"{bad} is not a readable image")


def test_image_folder_that_is_a_file(tmp_path):
    save_png(tmp_path / "one.png")
    message = refused("imagefolder", tmp_path / "one.png", tmp_path)
    assert message.startswith(f"{tmp_path / 'one.png'} is not a folder")


def test_image_folder_of_one_class(tmp_path):
    root = image_folder(tmp_path / "pics", classes=("cat",))
    assert "has one class (class 'cat' for all 6 images)" in refused("imagefolder", root, tmp_path)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 not really a zip", None])
def test_unreadable_weights_file(tmp_path, content):
    from saln.backbones import build_model

    path = tmp_path / "w.pth"
    path.write_bytes(np.random.default_rng(0).bytes(4096) if content is None else content)
    with pytest.raises(SalnError) as err:
        build_model("resnet18", str(path), 10)
    message = str(err.value)
    assert message.startswith(f"cannot read weights file {path}: not a readable PyTorch state dict (")
    assert "\n" not in message and "weights_only" not in message


def test_a_real_state_dict_still_loads(tmp_path):
    import torch

    from saln.backbones import build_model

    model = build_model("resnet18", "none", 10)
    torch.save(model.state_dict(), tmp_path / "w.pth")
    again = build_model("resnet18", str(tmp_path / "w.pth"), 10)
    assert torch.equal(again.fc.weight, model.fc.weight)


STAGE = textwrap.dedent("""
    import sys

    from saln.data import SourceConfig, SplitConfig, prepare
    from saln.errors import one_line_errors


    @one_line_errors
    def main():
        kind, path, out = sys.argv[1:]
        if kind == "bug":
            {}["a real bug"]
        prepare(SourceConfig("mine", kind, 12, path=path), SplitConfig(0.1, 0.2, 0.1, 0), out)


    main()
""")


def run_stage(tmp_path, *args) -> subprocess.CompletedProcess:
    script = tmp_path / "stage.py"
    script.write_text(STAGE)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(script), *map(str, args)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def test_a_stage_prints_one_line_and_writes_nothing(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=images(6), y=np.array(list("abcabc")))
    done = run_stage(tmp_path, "npz", path, tmp_path / "out")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"error: {path}: y must be a 1-D array of integer labels, got <U1 (6,)"]
    assert not (tmp_path / "out").exists()


def test_a_bug_in_a_stage_still_shows_its_traceback(tmp_path):
    done = run_stage(tmp_path, "bug", "-", tmp_path / "out")
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr and "KeyError: 'a real bug'" in done.stderr
