"""Fitting pieces: weighted least squares on physical features, inverse-distance k-NN, k-fold CV metrics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from core.errors import ConfigError

Fitter = Callable[[np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray]]


@dataclass(frozen=True)
class HeldOut:
    """Cross-validated error: mean absolute percentage error and share of shapes within ±10 %."""

    mape_pct: float
    within_10pct: float
    n: int


def lstsq_relative(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Coefficients minimising the squared *relative* error (rows weighted by 1/y), columns rescaled for conditioning."""
    if np.any(y <= 0):
        raise ConfigError("latencies must be positive to fit")
    scale = np.abs(X).max(axis=0)
    scale[scale == 0] = 1.0
    coef, *_ = np.linalg.lstsq((X / scale) / y[:, None], np.ones_like(y), rcond=None)
    return np.asarray(coef / scale)


def fit_linear(X: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    coef = lstsq_relative(X, y)
    return lambda Xq: Xq @ coef


def knn_predict(P: np.ndarray, y: np.ndarray, Q: np.ndarray, k: int = 4) -> np.ndarray:
    """Inverse-distance-weighted mean of the ``k`` nearest training points (exact hits return their value)."""
    out = np.empty(len(Q))
    kk = max(1, min(k, len(P)))
    for i, q in enumerate(Q):
        d = np.linalg.norm(P - q, axis=1)
        idx = np.argsort(d, kind="stable")[:kk]
        if d[idx[0]] < 1e-12:
            out[i] = y[idx[0]]
            continue
        w = 1.0 / d[idx] ** 2
        out[i] = float(np.sum(w * y[idx]) / np.sum(w))
    return out


def fit_knn(P: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    return lambda Q: knn_predict(P, y, Q)


def cross_validate(fitter: Fitter, X: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0) -> HeldOut:
    """k-fold held-out predictions (every point predicted once by a model that never saw it)."""
    n = len(y)
    if n < 3:
        raise ConfigError(f"need at least 3 measured shapes to cross-validate, got {n}")
    k = min(folds, n)
    order = np.random.default_rng(seed).permutation(n)
    pred = np.empty(n)
    for f in range(k):
        test = order[f::k]
        train = np.setdiff1d(order, test)
        pred[test] = fitter(X[train], y[train])(X[test])
    rel = np.abs(pred - y) / y
    return HeldOut(mape_pct=float(rel.mean() * 100), within_10pct=float((rel <= 0.10).mean()), n=n)
