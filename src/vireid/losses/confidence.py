"""Per-sample label confidence from the loss distribution: a 2-component GMM (docs/method.md §6.3)."""

from __future__ import annotations

from typing import TypeVar

import numpy as np

__all__ = ["minmax_normalize", "gmm_confidence"]

ArrayLike = TypeVar("ArrayLike")


def minmax_normalize(x: ArrayLike) -> ArrayLike:
    """(x − min)/(max − min) for a numpy array or tensor; all zeros when x is constant."""
    low, high = x.min(), x.max()
    span = high - low
    if not span > 0:
        return x * 0
    return (x - low) / span


def gmm_confidence(losses: np.ndarray, seed: int = 0, max_iter: int = 100, tol: float = 1e-2,
                   reg_covar: float = 5e-4) -> np.ndarray:
    """Posterior of the low-loss (clean) component of a 2-Gaussian mixture fitted to losses (N,).

    Losses are used as given (normalise them before). Returns float64 (N,) in [0, 1]. When the
    losses cannot be split (fewer than 2 samples or all equal), every sample is trusted: all ones.
    """
    from sklearn.mixture import GaussianMixture

    values = np.asarray(losses, dtype=np.float64).reshape(-1, 1)
    if values.shape[0] < 2 or not np.ptp(values) > 0:
        return np.ones(values.shape[0])
    gmm = GaussianMixture(n_components=2, max_iter=max_iter, tol=tol, reg_covar=reg_covar,
                          random_state=seed)
    gmm.fit(values)
    clean = int(np.argmin(gmm.means_.reshape(-1)))
    return gmm.predict_proba(values)[:, clean]
