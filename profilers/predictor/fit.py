"""Fitting pieces: weighted least squares on physical features, inverse-distance k-NN, their hybrid, repeated k-fold CV.

Every fitter takes ``(X, P, y)`` — physical feature rows, normalised shape coordinates, measured values — and
returns ``predict(Xq, Pq)``:

- ``physical``: ``X @ coef`` with coefficients minimising the squared relative error;
- ``knn``: inverse-distance-weighted mean of the 4 nearest measured shapes in ``P``;
- ``hybrid``: the physical prediction times a per-layer-size efficiency factor: the measured/physical ratio of
  the shapes with the same kept heads and channels (any depth), k-NN-interpolated over the width coordinates for
  sizes not measured. The physical law carries depth and the trend; the factor carries what it misses, e.g. GEMM
  sizes that run unusually fast or slow (depth enters the law affinely, sizes do not).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from core.errors import ConfigError

Predict = Callable[[np.ndarray, np.ndarray], np.ndarray]
Fitter = Callable[[np.ndarray, np.ndarray, np.ndarray], Predict]
METHODS = ("physical", "hybrid", "knn")


@dataclass(frozen=True)
class HeldOut:
    """Cross-validated error over ``repeats`` shuffled k-fold splits: MAPE (mean over every held-out prediction),
    share within ±10 %, the spread of the MAPE over the repeats, and how many splits were used."""

    mape_pct: float
    within_10pct: float
    n: int
    splits: int = 1
    mape_sd_pct: float = 0.0
    max_ape_pct: float = 0.0


def lstsq_relative(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Coefficients minimising the squared *relative* error (rows weighted by 1/y), columns rescaled for conditioning."""
    if np.any(y <= 0):
        raise ConfigError("latencies must be positive to fit")
    scale = np.abs(X).max(axis=0)
    scale[scale == 0] = 1.0
    coef, *_ = np.linalg.lstsq((X / scale) / y[:, None], np.ones_like(y), rcond=None)
    return np.asarray(coef / scale)


def knn_predict(P: np.ndarray, y: np.ndarray, Q: np.ndarray, k: int = 4) -> np.ndarray:
    """Inverse-distance-weighted mean of the ``k`` nearest training points (exact hits return their mean)."""
    out = np.empty(len(Q))
    kk = max(1, min(k, len(P)))
    for i, q in enumerate(Q):
        d = np.linalg.norm(P - q, axis=1)
        hits = d < 1e-12
        if hits.any():
            out[i] = float(y[hits].mean())
            continue
        idx = np.argsort(d, kind="stable")[:kk]
        w = 1.0 / d[idx] ** 2
        out[i] = float(np.sum(w * y[idx]) / np.sum(w))
    return out


def fit_physical(X: np.ndarray, P: np.ndarray, y: np.ndarray) -> Predict:
    coef = lstsq_relative(X, y)
    return lambda Xq, Pq: Xq @ coef


def fit_knn(X: np.ndarray, P: np.ndarray, y: np.ndarray) -> Predict:
    return lambda Xq, Pq: knn_predict(P, y, Pq)


def hybrid_predict(coef: np.ndarray, X: np.ndarray, P: np.ndarray, y: np.ndarray, Xq: np.ndarray, Pq: np.ndarray) -> np.ndarray:
    """Physical prediction at ``Xq`` times the ratio measured / physical of the training points, interpolated over the
    width coordinates (``P`` without its first, depth, column)."""
    base = X @ coef
    ratio = np.where(base > 0, y / np.where(base > 0, base, 1.0), 1.0)
    return (Xq @ coef) * knn_predict(P[:, 1:], ratio, Pq[:, 1:])


def fit_hybrid(X: np.ndarray, P: np.ndarray, y: np.ndarray) -> Predict:
    coef = lstsq_relative(X, y)
    return lambda Xq, Pq: hybrid_predict(coef, X, P, y, Xq, Pq)


FITTERS: dict[str, Fitter] = {"physical": fit_physical, "hybrid": fit_hybrid, "knn": fit_knn}


def fold_indices(n: int, folds: int, seed: int) -> list[np.ndarray]:
    """Test indices of each fold of one shuffled k-fold split."""
    k = min(folds, n)
    order = np.random.default_rng(seed).permutation(n)
    return [order[f::k] for f in range(k)]


def held_out_predictions(fitter: Fitter, X: np.ndarray, P: np.ndarray, y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Every point predicted once by a model fitted without its fold."""
    pred = np.empty(len(y))
    for test in fold_indices(len(y), folds, seed):
        train = np.setdiff1d(np.arange(len(y)), test)
        pred[test] = fitter(X[train], P[train], y[train])(X[test], P[test])
    return pred


def cross_validate(fitter: Fitter, X: np.ndarray, P: np.ndarray, y: np.ndarray, folds: int = 5, repeats: int = 4, seed: int = 0) -> HeldOut:
    """``repeats`` shuffled ``folds``-fold splits; every point is held out once per repeat."""
    n = len(y)
    if n < 3:
        raise ConfigError(f"need at least 3 measured shapes to cross-validate, got {n}")
    rels, mapes = [], []
    for r in range(repeats):
        pred = held_out_predictions(fitter, X, P, y, folds, seed + r)
        rel = np.abs(pred - y) / y
        rels.append(rel)
        mapes.append(float(rel.mean() * 100))
    allr = np.concatenate(rels)
    return HeldOut(mape_pct=float(allr.mean() * 100), within_10pct=float((allr <= 0.10).mean()), n=n, splits=repeats * min(folds, n),
                   mape_sd_pct=float(np.std(mapes)), max_ape_pct=float(allr.max() * 100))


def fold_models(fitter: Fitter, X: np.ndarray, P: np.ndarray, y: np.ndarray, folds: int = 5, repeats: int = 2, seed: int = 0) -> list[Predict]:
    """The models fitted inside cross-validation (each without one fold): their disagreement on a new shape is the
    cross-validated uncertainty adaptive profiling uses."""
    out = []
    for r in range(repeats):
        for test in fold_indices(len(y), folds, seed + r):
            train = np.setdiff1d(np.arange(len(y)), test)
            out.append(fitter(X[train], P[train], y[train]))
    return out
