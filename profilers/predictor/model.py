"""``LatencyPredictor`` (fitted, implements ``core.latency.LatencyModel``) and ``MeasuredTableModel`` (exact lookup)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.errors import ConfigError
from core.latency import LatencyEstimate
from core.spec import SubnetSpec
from profilers.predictor.features import ShapeDims, features, normalised
from profilers.predictor.fit import HeldOut, cross_validate, fit_knn, fit_linear, lstsq_relative
from profilers.predictor.state import CvScore, PredictorState, TargetFit, load_state, save_state
from profilers.table import ModelFacts, ProfileRow, ProfileTable
from profilers.workload import Workload

MIN_ROWS = 6
_TARGETS = {"ttft_ms": "prefill", "tpot_ms": "decode", "peak_mem_mb": "memory"}


def kept_dims(m: ModelFacts, spec: SubnetSpec) -> ShapeDims:
    """Kept units of ``spec`` with the same rounding export uses (``core.strategy.units``)."""
    from core.model.loader import ModelInfo
    from core.strategy.units import kept_ffn_channels, kept_kv_groups

    info = ModelInfo(model_type=m.model_type, num_layers=m.num_layers, hidden_size=m.hidden_size, num_heads=m.num_heads,
                     num_kv_heads=m.num_kv_heads, head_dim=m.head_dim, intermediate_size=m.intermediate_size,
                     vocab_size=m.vocab_size, tie_word_embeddings=False, qkv_bias=False, max_position_embeddings=0)
    return ShapeDims(spec.num_layers, kept_kv_groups(info, spec.attn_width), kept_ffn_channels(info, spec.ffn_width))


def _value(r: ProfileRow, target: str) -> float | None:
    if target == "peak_mem_mb":
        return r.peak_mem_mb
    return float(getattr(r, target).median)


def _score(h: HeldOut) -> CvScore:
    return CvScore(mape_pct=round(h.mape_pct, 4), within_10pct=round(h.within_10pct, 4), n=h.n)


def fit_target(table: ProfileTable, rows: list[ProfileRow], target: str) -> TargetFit | None:
    """Fit one quantity with both methods, keep the lower held-out MAPE (``None`` when values are missing)."""
    vals = [_value(r, target) for r in rows]
    if any(v is None or v <= 0 for v in vals):
        return None
    y = np.array(vals, dtype=float)
    kind = _TARGETS[target]
    dims = [ShapeDims(r.num_layers, r.kv_groups, r.ffn_channels) for r in rows]
    X = np.stack([features(table.model, table.wl, d, kind) for d in dims])
    P = np.stack([normalised(table.model, d) for d in dims])
    cv = {"physical": _score(cross_validate(fit_linear, X, y)),
          "knn": _score(cross_validate(fit_knn, P, y))}
    method = "physical" if cv["physical"].mape_pct <= cv["knn"].mape_pct else "knn"
    return TargetFit(method=method, features=kind, coef=[float(c) for c in lstsq_relative(X, y)],  # type: ignore[arg-type]
                     points=[(d.num_layers, d.kv_groups, d.ffn_channels, float(v)) for d, v in zip(dims, y, strict=True)], cv=cv)


class LatencyPredictor:
    """Latency of any shape for one (device, engine, workload), fitted on a measured profile table."""

    def __init__(self, state: PredictorState) -> None:
        self.state = state
        self._wl = Workload.parse(state.workload)

    @classmethod
    def fit(cls, table: ProfileTable, *, include_busy: bool = False) -> LatencyPredictor:
        """Fit ttft / tpot (and peak memory when measured); busy rows are left out unless ``include_busy``."""
        rows = [r for r in table.rows if include_busy or not r.busy]
        if len(rows) < MIN_ROWS:
            raise ConfigError(f"need at least {MIN_ROWS} non-busy measured shapes to fit a predictor, table has {len(rows)} "
                              f"({len(table.rows) - len(rows)} busy rows excluded)")
        targets = {t: f for t in _TARGETS if (f := fit_target(table, rows, t)) is not None}
        if "ttft_ms" not in targets or "tpot_ms" not in targets:
            raise ConfigError("profile table has non-positive latencies; cannot fit")
        rng = {"num_layers": (min(r.num_layers for r in rows), max(r.num_layers for r in rows)),
               "kv_groups": (min(r.kv_groups for r in rows), max(r.kv_groups for r in rows)),
               "ffn_channels": (min(r.ffn_channels for r in rows), max(r.ffn_channels for r in rows))}
        state = PredictorState(table_sha256=table.content_sha256(), device=table.device.name, engine=table.engine.name,
                               engine_version=table.engine.version, workload=table.workload, model=table.model, range=rng, targets=targets)
        return cls(state)

    @classmethod
    def load(cls, path: Path) -> LatencyPredictor:
        return cls(load_state(path))

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
        return all(r[k][0] <= v <= r[k][1] for k, v in (("num_layers", d.num_layers), ("kv_groups", d.kv_groups), ("ffn_channels", d.ffn_channels)))

    def _predict(self, fit: TargetFit, d: ShapeDims) -> float:
        m = self.state.model
        if fit.method == "physical":
            return float(features(m, self._wl, d, fit.features) @ np.array(fit.coef))
        pts = np.array(fit.points, dtype=float)
        P = np.stack([normalised(m, ShapeDims(int(a), int(b), int(c))) for a, b, c, _ in pts])
        return float(fit_knn(P, pts[:, 3])(normalised(m, d)[None, :])[0])

    def estimate(self, spec: SubnetSpec) -> LatencyEstimate:
        """Predicted latency of ``spec``; ``in_range`` is False outside the measured depth / width box."""
        m = self.state.model
        if spec.num_layers > m.num_layers:
            raise ConfigError(f"shape {spec.key}: {spec.num_layers} layers exceed the model's {m.num_layers}")
        d = kept_dims(m, spec)
        t = self.state.targets
        mem = max(0.0, self._predict(t["peak_mem_mb"], d)) if "peak_mem_mb" in t else None
        return LatencyEstimate(ttft_ms=max(1e-6, self._predict(t["ttft_ms"], d)), tpot_ms=max(1e-6, self._predict(t["tpot_ms"], d)),
                               peak_mem_mb=mem, in_range=self.in_range(d))


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
