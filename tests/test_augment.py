"""Augmentation: spec round-trip, per-sample randomness, deterministic test transform."""

import pytest
import torch

from saln import transforms
from saln.augment import augment_spec, load_spec, save_spec
from saln.transforms import augment_draws, train_pipeline
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
    out = train_pipeline(spec, NORM)(image.repeat(8, 1, 1, 1), augment_draws(0, 1, torch.arange(8)))
    assert out.shape == (8, 3, 24, 24) and out.dtype == torch.float32
    distinct = {tuple(o.flatten()[:50].tolist()) for o in out}
    assert len(distinct) == 8  # one random draw per image, not one per batch


PAPER = {"hflip": 0.5, "rotation": 15, "brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.1}


def test_an_image_gets_the_same_augmentation_in_the_same_pass_whatever_its_batch(params):
    """Paired augmentation on pixels: the draws are keyed by (seed, pass, dataset index), not by the
    position in the batch or by what was drawn before."""
    spec = augment_spec({**params["augment"], **PAPER, "resize": 16})
    tf = train_pipeline(spec, NORM)
    images = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    indices = torch.tensor([3, 17, 40, 41, 99, 250])
    whole = tf(images, augment_draws(7, 2, indices))
    torch.manual_seed(123)  # the global stream plays no part
    few = tf(images[[4, 1]], augment_draws(7, 2, indices[[4, 1]]))
    assert torch.equal(few, whole[[4, 1]])
    other_pass = tf(images, augment_draws(7, 3, indices))
    other_seed = tf(images, augment_draws(8, 2, indices))
    assert not torch.equal(other_pass, whole) and not torch.equal(other_seed, whole)


def test_augment_draws_are_uniform_and_keyed():
    draws = augment_draws(0, 1, torch.arange(20000))
    assert draws.shape == (20000, 6) and float(draws.min()) >= 0 and float(draws.max()) < 1
    torch.testing.assert_close(draws.mean(0), torch.full((6,), 0.5), atol=0.01, rtol=0)
    assert torch.equal(draws[5:9], augment_draws(0, 1, torch.arange(5, 9)))


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
