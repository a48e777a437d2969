"""ResNet-18/50 with weights from ImageNet (torchvision), a local file, or none."""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

from saln.errors import SalnError

IMAGENET_WEIGHTS = {
    "resnet18": torchvision.models.ResNet18_Weights.IMAGENET1K_V1,
    "resnet50": torchvision.models.ResNet50_Weights.IMAGENET1K_V1,
}


def imagenet_state_dict(arch: str) -> dict:
    """torchvision's ImageNet weights: from the torch cache, else downloaded; one-line error if neither."""
    weights = IMAGENET_WEIGHTS[arch]
    filename = Path(weights.url).name
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    try:
        return weights.get_state_dict(progress=False)
    except Exception as err:  # URLError, HTTPError, RuntimeError on a truncated file
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise SalnError(f"ImageNet weights for {arch} unavailable ({reason}); put {filename} from "
                        f"{weights.url} into {cache}/ (or set TORCH_HOME), or set the weights "
                        "param to a local file or none") from None


def file_state_dict(path: str) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise SalnError(f"cannot read weights file {path}: {str(err).splitlines()[0]}") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise SalnError(f"{path} holds no state dict")
    return state


def build_resnet(arch: str, weights: str, num_classes: int | None = None) -> nn.Module:
    """A torchvision ResNet; ``num_classes`` replaces the fc head, None makes it a pooled-feature extractor.

    ``weights`` is ``none``, ``imagenet`` or a file path; the head is re-initialised whenever its
    shape differs from the loaded one (fine-tuning a new label set).
    """
    model = getattr(torchvision.models, arch)(weights=None)
    if weights != "none":
        state = imagenet_state_dict(arch) if weights == "imagenet" else file_state_dict(weights)
        head = {k for k in state if k.startswith("fc.")}
        if num_classes is not None and state.get("fc.weight", torch.empty(0)).shape[0] != num_classes:
            state = {k: v for k, v in state.items() if k not in head}
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as err:  # shape mismatches are raised even when strict=False
            raise SalnError(f"weights {weights!r} do not fit {arch}: "
                            f"{str(err).splitlines()[1].strip()}") from None
        body_missing = [k for k in missing if not k.startswith("fc.")]
        if body_missing or unexpected:
            raise SalnError(f"weights {weights!r} do not fit {arch}: missing {body_missing[:3]}, "
                            f"unexpected {unexpected[:3]}")
    if num_classes is None:
        model.fc = nn.Identity()
    elif model.fc.out_features != num_classes:
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model
