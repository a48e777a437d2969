"""SALN: spectral batch selection (and friends) as a reproducible DVC pipeline."""

__version__ = "0.1.0"
