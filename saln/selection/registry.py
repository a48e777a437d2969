"""name -> Selector class, filled by the ``register`` decorator."""

from __future__ import annotations

from saln.errors import SalnError
from saln.selection.base import Selector

REGISTRY: dict[str, type[Selector]] = {}


def register(name: str):
    def add(cls: type[Selector]) -> type[Selector]:
        if name in REGISTRY:
            raise ValueError(f"selector {name!r} registered twice")
        REGISTRY[name] = cls
        cls.name = name
        return cls

    return add


def build(name: str, **options) -> Selector:
    if name not in REGISTRY:
        raise KeyError(f"unknown method {name!r}: choose from {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name](**options)


def check_method(method: str) -> str:
    if method not in REGISTRY:
        raise SalnError(f"unknown method {method!r}: choose from {', '.join(sorted(REGISTRY))}")
    return method
