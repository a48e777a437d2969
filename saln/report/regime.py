"""What the runs were: the params the report reads, and how it names them beside the paper's setting.

The report stage reads exactly these keys of params.yaml (``regime_from_params``): data.names,
data.sources.<name>.image_size (for each name in data.names), train.methods, train.seeds,
train.epochs, train.lrs, train.budget, train.schedule, train.warmup, train.budget_fractions,
train.filter_ratio, train.log_batches, model.arch, model.weights, features.backbone, features.weights
and prune.keep_fraction (optional).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from saln.config import batch_numbers, dataset_names, listed_methods, number, require, seeds
from saln.errors import SalnError
from saln.rates import learning_rates
from saln.schedule import budget_fractions, schedule_settings

ARCH_NAMES = {"resnet18": "ResNet-18", "resnet50": "ResNet-50", "efficientnet_lite0": "EfficientNet-Lite0",
              "efficientnet_lite1": "EfficientNet-Lite1", "efficientnet_lite2": "EfficientNet-Lite2"}
DATASET_NAMES = {"pets": "Oxford-IIIT Pet", "cifar10": "CIFAR-10", "cifar10_subset": "CIFAR-10 subset",
                 "digits": "digits"}


@dataclass(frozen=True)
class Regime:
    datasets: list[str]
    methods: list[str]
    seeds: list[int]
    epochs: int
    lrs: list[float]
    filter_ratio: float
    log_batches: list[int]
    arch: str
    weights: str              # learner: none | imagenet | a file
    backbone: str             # SALN's feature extractor
    feature_weights: str
    budget: str = "epochs"    # train.budget: epochs | images
    schedule: str = "constant"
    warmup: float = 0.0
    fractions: list[float] = field(default_factory=lambda: [1.0])  # train.budget_fractions
    image_sizes: dict[str, int] = field(default_factory=dict)   # dataset -> stored image size (px)
    keep_fraction: float | None = None                          # prune.keep_fraction


def regime_from_params(params: dict) -> Regime:
    data, train = require(params, "data", "params"), require(params, "train", "params")
    model, features = require(params, "model", "params"), require(params, "features", "params")
    datasets = dataset_names(params)
    sources = require(data, "sources", "data")
    sizes = {}
    for name in datasets:
        if name not in sources:
            raise SalnError(f"data.names lists {name!r}, which is not in data.sources")
        sizes[name] = number(sources[name], "image_size", f"data.sources.{name}", lo=1, integer=True)
    prune = params.get("prune") or {}
    budget, schedule, warmup = schedule_settings(train)
    return Regime(
        datasets=datasets, methods=listed_methods(params), seeds=seeds(params), epochs=number(train, "epochs", "train", lo=1, integer=True),
        lrs=learning_rates(params),
        filter_ratio=number(train, "filter_ratio", "train", lo=0, hi=1, hi_open=True),
        log_batches=list(batch_numbers(require(train, "log_batches", "train"), "train.log_batches")),
        arch=str(require(model, "arch", "model")), weights=str(require(model, "weights", "model")),
        backbone=str(require(features, "backbone", "features")),
        feature_weights=str(require(features, "weights", "features")),
        budget=budget, schedule=schedule, warmup=warmup, fractions=sorted(budget_fractions(train)),
        image_sizes=sizes, keep_fraction=prune.get("keep_fraction"),
    )


def arch_name(arch: str) -> str:
    return ARCH_NAMES.get(arch, arch)


def dataset_name(key: str) -> str:
    return DATASET_NAMES.get(key, key)


def weights_name(weights: str) -> str:
    return {"none": "from scratch", "imagenet": "ImageNet-pretrained"}.get(weights, f"weights from {weights}")


def learner(regime: Regime) -> str:
    """E.g. 'ResNet-18 from scratch'."""
    return f"{arch_name(regime.arch)} {weights_name(regime.weights)}"


def feature_extractor(regime: Regime) -> str:
    kind = {"none": "randomly initialised, seeded", "imagenet": "ImageNet-pretrained"}.get(
        regime.feature_weights, f"weights from {regime.feature_weights}")
    return f"{arch_name(regime.backbone)} ({kind})"


def _rates(lrs: list[float]) -> str:
    return ", ".join(f"{lr:g}" for lr in lrs)


def budget_line(regime: Regime) -> str:
    """What every method is given and how its rate moves, e.g. 'budget: standard's images in 3 epochs ...'."""
    given = (f"standard's images in {regime.epochs} epochs for every method" if regime.budget == "images"
             else f"{regime.epochs} epochs for every method")
    schedule = regime.schedule + (f" after a {regime.warmup:.0%} warm-up" if regime.warmup else "")
    decay = "" if regime.schedule == "constant" else ", decaying to 0 at each run's own last step"
    return (f"budget ({regime.budget}): {given}; schedule {schedule}{decay}; budget fractions "
            f"{', '.join(f'{f:g}' for f in regime.fractions)} (one completed run each)")


def full_budget(regime: Regime) -> str:
    """What the full-budget runs (each method's lr<rate>/ runs) hold equal across methods."""
    return "equal images back-propagated" if regime.budget == "images" else "equal epochs"


def regime_line(regime: Regime, dataset: str) -> str:
    """One sentence stating what the runs on ``dataset`` were."""
    size = regime.image_sizes.get(dataset)
    return (f"Regime: learner {learner(regime)}; SALN features {feature_extractor(regime)}; data "
            f"{dataset_name(dataset)} (`{dataset}`){f' at {size} px' if size else ''}; {budget_line(regime)}; "
            f"lrs {_rates(regime.lrs)} (each method at its best per budget), filter_ratio "
            f"{regime.filter_ratio:g}; seeds {', '.join(map(str, regime.seeds))}.")


def ours_header(regime: Regime, dataset: str, paper_setting: dict, paper_name: str | None) -> str:
    """'ours (...)' naming what differs from the paper: data, image size (the paper states none),
    epochs and learner."""
    if dataset not in regime.datasets:
        return f"ours (not run: `{dataset}` is not in data.names)"
    parts = []
    if paper_name is None or dataset_name(dataset) != paper_name:
        parts.append(dataset_name(dataset))
    if dataset in regime.image_sizes:
        parts.append(f"{regime.image_sizes[dataset]} px")
    if regime.epochs != paper_setting.get("epochs"):
        parts.append(f"{regime.epochs} epochs")
    paper_learner = paper_setting.get("learner") or {}
    if (regime.arch, regime.weights) != (paper_learner.get("arch"), paper_learner.get("weights")):
        parts.append(learner(regime))
    return f"ours ({', '.join(parts)})" if parts else "ours"
