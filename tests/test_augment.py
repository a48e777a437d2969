"""Augmentation: spec round-trip, per-sample randomness, deterministic test transform."""

import pytest
import torch

from saln import transforms
from saln.augment import augment_spec, load_spec, save_spec
from saln.transforms import train_pipeline
from saln.errors import SalnError

NORM = ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))  # any (mean, std): the pipelines take the network's own


def test_spec_round_trips_through_json(params, tmp_path):
    spec = augment_spec(params["augment"])
    save_spec(spec, tmp_path / "a.json")
    assert load_spec(tmp_path / "a.json") == spec


def test_train_augmentation_differs_per_sample(params):
    paper = {"hflip": 0.5, "rotation": 15, "brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.1}
    spec = augment_spec({**params["augment"], **paper, "resize": 24})
    image = torch.randint(0, 256, (1, 3, 16, 16), dtype=torch.uint8)
    torch.manual_seed(0)
    out = train_pipeline(spec, NORM)(image.repeat(8, 1, 1, 1))
    assert out.shape == (8, 3, 24, 24) and out.dtype == torch.float32
    distinct = {tuple(o.flatten()[:50].tolist()) for o in out}
    assert len(distinct) == 8  # one random draw per image, not one per batch


def test_test_pipeline_is_deterministic_and_normalised(params):
    spec = augment_spec({**params["augment"], "test_resize": 20, "test_crop": 16})
    images = torch.full((2, 3, 10, 10), 255, dtype=torch.uint8)
    out = transforms.test_pipeline(spec, NORM)(images)
    assert out.shape == (2, 3, 16, 16)
    expected = (1 - torch.tensor(NORM[0])) / torch.tensor(NORM[1])
    torch.testing.assert_close(out[0, :, 5, 5], expected)
    torch.testing.assert_close(out, transforms.test_pipeline(spec, NORM)(images))


def test_crop_larger_than_resize_is_rejected(params):
    with pytest.raises(SalnError, match="test_crop must be <= augment.test_resize"):
        augment_spec({**params["augment"], "test_resize": 16, "test_crop": 32})
