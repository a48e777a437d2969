"""presets/paper.yaml runs as written on a machine that has the files, with no network.

A temporary copy of the repo gets tiny datasets in torchvision's own on-disk layouts under
``data/downloads`` (``cifar-10-batches-py/`` pickles, ``oxford-iiit-pet/`` JPEGs and split lists),
ResNet-18 / ResNet-50 state dicts under torchvision's file names in a temporary torch hub cache
(``$TORCH_HOME/hub/checkpoints/``, random weights of the right architectures), and the preset's
params, shrunk only in epochs, image sizes and image counts. ``dvc repro`` then runs every stage
through to the report, with every proxy pointed at a closed port so that any download fails.
"""

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import yaml

from saln.config import listed_methods
from saln.presets import flatten
from tests.conftest import ROOT
from tests.test_pipeline import copy_sources, run

pytestmark = pytest.mark.slow

PRESET = ROOT / "presets" / "paper.yaml"
# The only departures from the preset (and from params.yaml where the preset is silent): epochs,
# image sizes and, through the fixtures, the number of images. Everything else is the paper's.
SHRINK = {
    "train.epochs": 1,                    # paper: 25
    "reference.epochs": 1,                # params.yaml: 10
    "augment.resize": 16,                 # paper: 224
    "augment.test_resize": 18,            # paper: 256
    "augment.test_crop": 16,              # paper: 224
    "data.sources.cifar10.image_size": 16,  # params.yaml: 32 (stored size)
    "data.sources.pets.image_size": 20,   # params.yaml: 256 (stored size)
}
# IMAGENET1K_V1, the weights saln.backbones asks torchvision for (resnet50-11ad3fa6.pth is V2).
WEIGHT_FILES = {"resnet18": "resnet18-f37072fd.pth", "resnet50": "resnet50-0676ba61.pth"}

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR_PER_BATCH, CIFAR_TEST = 64, 40   # 320 training images: val and reference 32+ each, 10 classes
# Oxford-IIIT Pet's 37 breeds in its class-id order (capitalised: cats, species 1; the rest dogs, 2).
PET_BREEDS = [
    "Abyssinian", "american_bulldog", "american_pit_bull_terrier", "basset_hound", "beagle", "Bengal",
    "Birman", "Bombay", "boxer", "British_Shorthair", "chihuahua", "Egyptian_Mau",
    "english_cocker_spaniel", "english_setter", "german_shorthaired", "great_pyrenees", "havanese",
    "japanese_chin", "keeshond", "leonberger", "Maine_Coon", "miniature_pinscher", "newfoundland",
    "Persian", "pomeranian", "pug", "Ragdoll", "Russian_Blue", "saint_bernard", "samoyed",
    "scottish_terrier", "shiba_inu", "Siamese", "Sphynx", "staffordshire_bull_terrier",
    "wheaten_terrier", "yorkshire_terrier",
]
PET_TRAINVAL, PET_TEST = 10, 1  # per breed: the fewest that let a stratified 10% validation hold every breed


def set_dotted(tree: dict, key: str, value) -> None:
    *parents, last = key.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[last] = value


def get_dotted(tree: dict, key: str):
    for part in key.split("."):
        tree = tree[part]
    return tree


def tinted(rng, label: int, n_classes: int, shape: tuple) -> np.ndarray:
    """Noise around a class-dependent colour, so the classes are learnable at all."""
    hue = np.array([np.sin(label), np.cos(label * 1.7), np.sin(label * 2.3 + 1)]) * 90 + 128
    return np.clip(rng.normal(hue, 40, shape), 0, 255).astype(np.uint8)


def write_cifar10(root: Path) -> None:
    """cifar-10-batches-py as the release unpacks it: pickled dicts, data N x 3072 uint8 (R, G, B planes)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = CIFAR_TEST if name == "test_batch" else CIFAR_PER_BATCH
        labels = [int(v) for v in rng.permutation(np.arange(n) % 10)]
        images = np.stack([tinted(rng, y, 10, (32, 32, 3)) for y in labels])
        entry = {"batch_label": f"{name} (fixture)", "labels": labels,
                 "data": images.transpose(0, 3, 1, 2).reshape(n, 3072),
                 "filenames": [f"{name}_{i}.png" for i in range(n)]}
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f, protocol=2)
    meta = {"num_cases_per_batch": CIFAR_PER_BATCH, "label_names": CIFAR_CLASSES, "num_vis": 3072}
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(meta, f, protocol=2)


def write_pets(root: Path) -> None:
    """oxford-iiit-pet/images/<Breed>_<n>.jpg and annotations/{trainval,test}.txt ("id class species breed")."""
    from PIL import Image

    images, annotations = root / "oxford-iiit-pet" / "images", root / "oxford-iiit-pet" / "annotations"
    images.mkdir(parents=True)
    annotations.mkdir()
    rng = np.random.default_rng(1)
    lines = {"trainval": [], "test": []}
    for class_id, breed in enumerate(PET_BREEDS, start=1):
        species = 1 if breed[0].isupper() else 2
        for n in range(1, PET_TRAINVAL + PET_TEST + 1):
            image_id = f"{breed}_{n}"
            size = (int(rng.integers(40, 64)), int(rng.integers(40, 64)))  # not square, as the real photos
            Image.fromarray(tinted(rng, class_id, 37, size + (3,))).save(images / f"{image_id}.jpg", quality=90)
            split = "trainval" if n <= PET_TRAINVAL else "test"
            lines[split].append(f"{image_id} {class_id} {species} {n}")
    for split, rows in lines.items():
        (annotations / f"{split}.txt").write_text("\n".join(rows) + "\n")


def write_weights(torch_home: Path) -> None:
    """State dicts of torchvision's resnet18 / resnet50 (random init) under its ImageNet file names."""
    import torch
    import torchvision

    from saln.backbones import imagenet_weights

    checkpoints = torch_home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    for arch, filename in WEIGHT_FILES.items():
        assert Path(imagenet_weights(arch).url).name == filename
        torch.manual_seed(0)
        torch.save(getattr(torchvision.models, arch)(weights=None).state_dict(), checkpoints / filename)


@pytest.fixture(scope="module")
def paper_repo(tmp_path_factory):
    """A copy of the repo with the paper preset applied, the files in place, and `dvc repro` done."""
    repo = tmp_path_factory.mktemp("paper_repo")
    copy_sources(repo)

    preset = flatten(yaml.safe_load(PRESET.read_text()))
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for key, value in {**preset, **SHRINK}.items():  # what `dvc exp run -S key=value ...` sets
        set_dotted(params, key, value)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for key, value in preset.items():
        if key not in SHRINK:
            assert get_dotted(params, key) == value, key

    write_cifar10(repo / "data" / "downloads")
    write_pets(repo / "data" / "downloads")
    torch_home = tmp_path_factory.mktemp("torch_home")
    write_weights(torch_home)

    closed = "http://127.0.0.1:9"  # any download attempt fails at once instead of reaching a network
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TORCH_HOME", str(torch_home))
        for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            env.setenv(key, closed)
        for key in ("NO_PROXY", "no_proxy"):
            env.delenv(key, raising=False)
        run(["git", "init", "-q"], repo)
        run(["git", "add", "-A"], repo)
        run(["git", "commit", "-qm", "paper preset, shrunk"], repo)
        out = run(["dvc", "repro"], repo)
    return repo, params, out


def test_paper_preset_runs_offline_through_the_report(paper_repo):
    repo, params, out = paper_repo
    assert "Downloading" not in out
    assert "does not match torchvision's CIFAR-10 checksums" in out  # the fixture is not the release

    for dataset, classes in (("cifar10", 10), ("pets", 37)):
        meta = json.loads((repo / f"data/prepared/{dataset}/meta.json").read_text())
        assert meta["kind"] == dataset and meta["num_classes"] == classes
        probe = json.loads((repo / f"results/features/{dataset}/probe.json").read_text())
        assert probe["backbone"] == "resnet50" and probe["weights"] == "imagenet"
        (rate,) = params["train"]["lrs"]  # the paper's one rate
        best = json.loads((repo / f"results/lr/{dataset}/best.json").read_text())["methods"]
        for method in listed_methods(params):
            metrics = json.loads((repo / f"results/train/{dataset}/{method}/seed0/lr{rate:g}/metrics.json").read_text())
            assert 0 <= metrics["test_acc"] <= 1 and metrics["lr"] == rate, (dataset, method)
            assert best[method]["best_lr"] == rate, (dataset, method)
    assert set(listed_methods(params)) == {"standard", "saln", "jest", "random"}
    assert (params["model"]["arch"], params["model"]["weights"]) == ("resnet18", "imagenet")
    assert params["train"]["lrs"] == [0.001] and params["reference"]["lr"] == 0.001

    report = (repo / "reports" / "report.md").read_text()
    for number in range(1, 17):  # Pet: Tables 1-8, CIFAR-10: Tables 9-16
        assert f"Table {number} (" in report, number
    assert "paper value not available" not in report
    assert "82.02" in report and "82.56" in report  # the paper's standard test accuracy, Pet and CIFAR-10
    assert "ResNet-18 ImageNet-pretrained" in report and "ResNet-50 (ImageNet-pretrained)" in report
    assert "up to date" in run(["dvc", "status"], repo).lower()
