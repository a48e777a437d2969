"""Linear probes on fixed features: the cheap yardstick of stages features, prune and active."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

PROBE_MAX_ITER = 1000  # logistic-regression iterations (scikit-learn default C = 1)


@contextmanager
def one_blas_thread():
    """Run scikit-learn's solvers on one BLAS / OpenMP thread.

    The probes and k-means here solve small problems, for which extra threads only synchronise:
    on busy shared cores, two OpenBLAS threads made one logistic-regression fit 100x slower.
    """
    from threadpoolctl import threadpool_limits

    # Limits reach only libraries already loaded: load scipy's and scikit-learn's BLAS first.
    import scipy.optimize  # noqa: F401
    import sklearn.cluster  # noqa: F401
    import sklearn.linear_model  # noqa: F401

    with threadpool_limits(limits=1):
        yield


def unit_rows(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float64), so k-means distances follow cosine geometry."""
    x = np.asarray(features, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def linear_probe_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                          test_y: np.ndarray) -> float:
    """Test accuracy of logistic regression on standardized features (scaler fit on train_x).

    A subset of a single class cannot fit a classifier; it predicts that class.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(train_y)) < 2:
        return float(np.mean(test_y == train_y[0]))
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=PROBE_MAX_ITER))
    with one_blas_thread():
        probe.fit(np.asarray(train_x, dtype=np.float64), train_y)
        return float(probe.score(np.asarray(test_x, dtype=np.float64), test_y))
