"""Every selector family, imported so that the registry knows every method, and the check that
``train.methods`` files each method under its own family."""

from __future__ import annotations

from saln.config import method_lists
from saln.errors import SalnError
from saln.selection import baselines, jest, prune, spectral, uncertainty
from saln.selection.registry import REGISTRY, check_method

FAMILIES = {module.__name__.rsplit(".", 1)[1]: module for module in (baselines, spectral, jest, uncertainty, prune)}


def family_of(method: str) -> str:
    """The family (module, and training stage) a registered method belongs to."""
    return REGISTRY[check_method(method)].__module__.rsplit(".", 1)[1]


def method_names(params: dict) -> list[str]:
    """Every method of ``train.methods``, registered and filed under its own family, in family order."""
    names = []
    for family, methods in method_lists(params).items():
        if family not in FAMILIES:
            raise SalnError(f"train.methods.{family} is not a selector family: choose from "
                            f"{', '.join(FAMILIES)}")
        for method in methods:
            if family_of(method) != family:
                raise SalnError(f"train.methods.{family} lists {method}, which belongs in "
                                f"train.methods.{family_of(method)}")
        names += methods
    return names
