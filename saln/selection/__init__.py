"""Batch selection methods behind one interface, found through an explicit registry.

Each selector family is one module (baselines, spectral, jest, uncertainty, prune) and one
training stage (``train_<family>`` in dvc.yaml), so a stage imports only the selectors it can run:
editing jest.py leaves the standard runs up to date. ``saln.selection.all`` imports every family
(validation, diagnostics, the benchmark).

Add a method: subclass ``Selector`` in a family module and decorate it with ``@register("name")``;
a new family also needs its module in ``saln.selection.all`` and its stage in dvc.yaml.
"""

from saln.selection.base import LearnerView, SelectionBatch, Selector
from saln.selection.registry import REGISTRY, build, check_method, register

__all__ = ["REGISTRY", "LearnerView", "SelectionBatch", "Selector", "build", "check_method", "register"]
