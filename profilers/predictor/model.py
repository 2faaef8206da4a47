"""``LatencyPredictor`` (fitted, implements ``core.latency.LatencyModel``) and ``MeasuredTableModel`` (exact lookup)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.errors import ConfigError
from core.latency import LatencyEstimate
from core.spec import SubnetSpec
from profilers.predictor.features import ShapeDims, features, normalised, q_heads_of
from profilers.predictor.fit import FITTERS, METHODS, HeldOut, cross_validate, hybrid_predict, knn_predict, lstsq_relative
from profilers.predictor.state import CvScore, PredictorState, TargetFit, load_state, save_state
from profilers.table import ModelFacts, ProfileRow, ProfileTable
from profilers.workload import Workload

MIN_ROWS = 6
TARGETS = {"ttft_ms": "prefill", "tpot_ms": "decode", "peak_mem_mb": "memory"}
_TARGETS = TARGETS

if TYPE_CHECKING:
    from core.model.loader import ModelInfo


def model_info(m: ModelFacts) -> ModelInfo:
    """A ``core.model.loader.ModelInfo`` with the dimensions of ``m`` (what the unit-rounding helpers take)."""
    from core.model.loader import ModelInfo

    return ModelInfo(model_type=m.model_type, num_layers=m.num_layers, hidden_size=m.hidden_size, num_heads=m.num_heads,
                     num_kv_heads=m.num_kv_heads, head_dim=m.head_dim, intermediate_size=m.intermediate_size,
                     vocab_size=m.vocab_size, tie_word_embeddings=False, qkv_bias=False, max_position_embeddings=0)


def kept_dims(m: ModelFacts, spec: SubnetSpec, attn_unit: str = "kv_group") -> ShapeDims:
    """Kept units of ``spec`` with the same rounding export uses (``core.strategy.units``) for ``attn_unit``."""
    from core.strategy.units import kept_ffn_channels, kept_heads

    info = model_info(m)
    q, kv = kept_heads(info, spec.attn_width, attn_unit)
    return ShapeDims(spec.num_layers, kv, kept_ffn_channels(info, spec.ffn_width), q)


def _value(r: ProfileRow, target: str) -> float | None:
    if target == "peak_mem_mb":
        return r.peak_mem_mb
    return float(getattr(r, target).median)


def _score(h: HeldOut) -> CvScore:
    return CvScore(mape_pct=round(h.mape_pct, 4), within_10pct=round(h.within_10pct, 4), n=h.n, splits=h.splits,
                   mape_sd_pct=round(h.mape_sd_pct, 4), max_ape_pct=round(h.max_ape_pct, 4))


def design(m: ModelFacts, w: Workload, dims: list[ShapeDims], kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(physical feature rows, normalised coordinates) of ``dims``."""
    return np.stack([features(m, w, d, kind) for d in dims]), np.stack([normalised(m, d) for d in dims])


def fit_target(table: ProfileTable, rows: list[ProfileRow], target: str, *, folds: int = 5, repeats: int = 4) -> TargetFit | None:
    """Fit one quantity with every method, keep the lowest held-out MAPE (``None`` when values are missing)."""
    vals = [_value(r, target) for r in rows]
    if any(v is None or v <= 0 for v in vals):
        return None
    y = np.array(vals, dtype=float)
    kind = TARGETS[target]
    m = table.model
    dims = [r.dims().resolved(m.num_heads, m.num_kv_heads) for r in rows]
    X, P = design(m, table.wl, dims, kind)
    cv = {name: _score(cross_validate(FITTERS[name], X, P, y, folds=folds, repeats=repeats)) for name in METHODS}
    method = min(METHODS, key=lambda k: (cv[k].mape_pct, METHODS.index(k)))
    return TargetFit(method=method, features=kind, coef=[float(c) for c in lstsq_relative(X, y)],  # type: ignore[arg-type]
                     points=[(d.num_layers, q_heads_of(m, d), d.kv_groups, d.ffn_channels, float(v)) for d, v in zip(dims, y, strict=True)],
                     cv=cv)


class LatencyPredictor:
    """Latency of any shape for one (device, engine, workload), fitted on a measured profile table."""

    def __init__(self, state: PredictorState, attn_unit: str | None = None) -> None:
        """``attn_unit``: how ``estimate`` turns an attention width into heads (default: inferred from the fitted points)."""
        self.state = state
        self.attn_unit = attn_unit or infer_attn_unit_from_points(state)
        self._wl = Workload.parse(state.workload)

    @classmethod
    def fit(cls, table: ProfileTable, *, include_busy: bool = False, attn_unit: str | None = None, folds: int = 5, repeats: int = 4) -> LatencyPredictor:
        """Fit ttft / tpot (and peak memory when measured); busy rows are left out unless ``include_busy``.

        ``attn_unit``: how ``estimate`` turns an attention width into heads (default: inferred from the rows —
        ``q_head`` when some row keeps every KV head with fewer query heads, else ``kv_group``).
        """
        rows = [r for r in table.rows if include_busy or not r.busy]
        if len(rows) < MIN_ROWS:
            raise ConfigError(f"need at least {MIN_ROWS} non-busy measured shapes to fit a predictor, table has {len(rows)} "
                              f"({len(table.rows) - len(rows)} busy rows excluded)")
        targets = {t: f for t in TARGETS if (f := fit_target(table, rows, t, folds=folds, repeats=repeats)) is not None}
        if "ttft_ms" not in targets or "tpot_ms" not in targets:
            raise ConfigError("profile table has non-positive latencies; cannot fit")
        m = table.model
        dims = [r.dims().resolved(m.num_heads, m.num_kv_heads) for r in rows]
        rng = {"num_layers": (min(d.num_layers for d in dims), max(d.num_layers for d in dims)),
               "q_heads": (min(q_heads_of(m, d) for d in dims), max(q_heads_of(m, d) for d in dims)),
               "kv_groups": (min(d.kv_groups for d in dims), max(d.kv_groups for d in dims)),
               "ffn_channels": (min(d.ffn_channels for d in dims), max(d.ffn_channels for d in dims))}
        state = PredictorState(table_sha256=table.content_sha256(), device=table.device.name, engine=table.engine.name,
                               engine_version=table.engine.version, workload=table.workload, model=table.model, range=rng, targets=targets,
                               noise_floor=table.noise_floor)
        return cls(state, attn_unit or infer_attn_unit(table))

    @classmethod
    def load(cls, path: Path, attn_unit: str | None = None) -> LatencyPredictor:
        return cls(load_state(path), attn_unit)

    def save(self, path: Path) -> None:
        save_state(self.state, path)

    @property
    def gen_len(self) -> int:
        return self._wl.gen_len

    def held_out(self, target: str) -> CvScore:
        """Held-out error of the chosen method for ``target`` (``ttft_ms``, ``tpot_ms``, ``peak_mem_mb``)."""
        return self.state.targets[target].held_out

    def in_range(self, d: ShapeDims) -> bool:
        r = self.state.range
        m = self.state.model
        vals = {"num_layers": d.num_layers, "q_heads": q_heads_of(m, d), "kv_groups": d.kv_groups, "ffn_channels": d.ffn_channels}
        return all(r[k][0] <= v <= r[k][1] for k, v in vals.items() if k in r)

    def predict_dims(self, fit: TargetFit, d: ShapeDims) -> float:
        """The fitted value of one target at ``d``."""
        m = self.state.model
        x = features(m, self._wl, d, fit.features)
        if fit.method == "physical":
            return float(x @ np.array(fit.coef))
        pts = np.array(fit.points, dtype=float)
        train = [ShapeDims(int(a), int(c), int(f), int(b)) for a, b, c, f, _ in pts]
        P = np.stack([normalised(m, t) for t in train])
        q = normalised(m, d)[None, :]
        if fit.method == "knn":
            return float(knn_predict(P, pts[:, 4], q)[0])
        X = np.stack([features(m, self._wl, t, fit.features) for t in train])
        return float(hybrid_predict(np.array(fit.coef), X, P, pts[:, 4], x[None, :], q)[0])

    def estimate_dims(self, d: ShapeDims) -> LatencyEstimate:
        """Predicted latency of a shape given by its kept units."""
        t = self.state.targets
        mem = max(0.0, self.predict_dims(t["peak_mem_mb"], d)) if "peak_mem_mb" in t else None
        return LatencyEstimate(ttft_ms=max(1e-6, self.predict_dims(t["ttft_ms"], d)), tpot_ms=max(1e-6, self.predict_dims(t["tpot_ms"], d)),
                               peak_mem_mb=mem, in_range=self.in_range(d))

    def estimate(self, spec: SubnetSpec) -> LatencyEstimate:
        """Predicted latency of ``spec``; ``in_range`` is False outside the measured depth / head / channel box."""
        m = self.state.model
        if spec.num_layers > m.num_layers:
            raise ConfigError(f"shape {spec.key}: {spec.num_layers} layers exceed the model's {m.num_layers}")
        return self.estimate_dims(kept_dims(m, spec, self.attn_unit))


def infer_attn_unit(table: ProfileTable) -> str:
    """``q_head`` when a row keeps all KV heads with fewer query heads than the full model, else ``kv_group``."""
    m = table.model
    for r in table.rows:
        if r.q_heads is not None and r.kv_groups == m.num_kv_heads and r.q_heads < m.num_heads:
            return "q_head"
    return "kv_group"


def infer_attn_unit_from_points(state: PredictorState) -> str:
    m = state.model
    for t in state.targets.values():
        if any(kv == m.num_kv_heads and q < m.num_heads for _, q, kv, _, _ in t.points):
            return "q_head"
    return "kv_group"


class MeasuredTableModel:
    """Exact lookup in a measured table (``core.latency.LatencyModel``); unmeasured shapes raise ``ConfigError``."""

    def __init__(self, table: ProfileTable) -> None:
        self.table = table
        self._rows = {r.shape: r for r in table.rows}

    @property
    def gen_len(self) -> int:
        return self.table.wl.gen_len

    def estimate(self, spec: SubnetSpec) -> LatencyEstimate:
        r = self._rows.get(spec.key)
        if r is None:
            raise ConfigError(f"shape {spec.key} was not measured in this table ({len(self._rows)} shapes); use a LatencyPredictor")
        return LatencyEstimate(ttft_ms=r.ttft_ms.median, tpot_ms=r.tpot_ms.median, peak_mem_mb=r.peak_mem_mb, in_range=True)
