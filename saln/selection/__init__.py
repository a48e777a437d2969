"""Batch selection methods behind one interface, found through an explicit registry.

Add a method: subclass ``Selector`` in a new module, decorate it with ``@register("name")`` and
import the module below.
"""

from saln.selection.base import LearnerView, SelectionBatch, Selector
from saln.selection.registry import REGISTRY, build, check_method, method_names, register

# Importing a module registers its selectors.
from saln.selection import baselines, jest, spectral  # noqa: E402,F401
from saln.selection import prune, uncertainty  # noqa: E402,F401

__all__ = ["REGISTRY", "LearnerView", "SelectionBatch", "Selector", "build", "check_method", "method_names",
           "register"]
