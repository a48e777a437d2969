"""Weights: none, a local file, or ImageNet through torchvision with a one-line error offline."""

import pytest
import torch
import torchvision

from saln.backbones import build_resnet
from saln.errors import SalnError


def test_none_gives_a_fresh_head_of_the_right_size():
    assert build_resnet("resnet18", "none", num_classes=7).fc.out_features == 7
    assert isinstance(build_resnet("resnet18", "none", num_classes=None).fc, torch.nn.Identity)


def test_local_file_loads_body_and_replaces_a_mismatched_head(tmp_path):
    torch.manual_seed(0)
    source = torchvision.models.resnet18()
    torch.save(source.state_dict(), tmp_path / "w.pth")
    model = build_resnet("resnet18", str(tmp_path / "w.pth"), num_classes=3)
    torch.testing.assert_close(model.conv1.weight, source.conv1.weight)
    assert model.fc.out_features == 3


def test_wrong_architecture_file_is_one_line_error(tmp_path):
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    with pytest.raises(SalnError, match="do not fit resnet50"):
        build_resnet("resnet50", str(tmp_path / "r18.pth"), num_classes=3)


def test_missing_imagenet_weights_name_the_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(SalnError) as err:
        build_resnet("resnet18", "imagenet", num_classes=10)
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
