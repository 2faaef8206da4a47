"""The predictor's persisted state: plain JSON data (coefficients, k-NN points, CV scores, table hash), never a pickle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.atomic import atomic_write_text
from profilers.errors import TableError
from profilers.table import ModelFacts, NoiseFloor, format_validation_error

#: 2: k-NN points carry query heads ``[L, q_heads, kv_heads, ffn, value]``; version-1 files (``[L, kv, ffn, value]``) are read
STATE_VERSION: Literal[2] = 2


class _S(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CvScore(_S):
    """Held-out error of one method: repeated k-fold (``splits`` fits in all); ``mape_sd_pct`` = spread over the repeats."""

    mape_pct: float = Field(ge=0)
    within_10pct: float = Field(ge=0, le=1)
    n: int = Field(ge=1)
    splits: int = Field(default=1, ge=1)
    mape_sd_pct: float = Field(default=0.0, ge=0)
    max_ape_pct: float = Field(default=0.0, ge=0)


class TargetFit(_S):
    """One fitted quantity (``ttft_ms``, ``tpot_ms`` or ``peak_mem_mb``)."""

    method: Literal["physical", "hybrid", "knn"]
    features: Literal["decode", "prefill", "memory"]
    coef: list[float]
    #: training points ``[num_layers, q_heads, kv_heads, ffn_channels, value]`` (kept for every method)
    points: list[tuple[int, int, int, int, float]]
    cv: dict[str, CvScore]

    @property
    def held_out(self) -> CvScore:
        return self.cv[self.method]


class PredictorState(_S):
    schema_version: Literal[2] = STATE_VERSION
    kind: Literal["amoeba-latency-predictor"] = "amoeba-latency-predictor"
    table_sha256: str = Field(min_length=64, max_length=64)
    device: str | None
    engine: str
    engine_version: str
    workload: str
    model: ModelFacts
    range: dict[str, tuple[int, int]]
    targets: dict[str, TargetFit]
    #: the fitted table's test–retest floor, kept beside the held-out error it bounds
    noise_floor: NoiseFloor | None = None

    @model_validator(mode="before")
    @classmethod
    def _upgrade_v1(cls, data: Any) -> Any:
        """Version 1 stored ``[L, kv, ffn, value]`` points: query heads = the KV groups' full complement."""
        if not isinstance(data, dict) or data.get("schema_version") != 1:
            return data
        d = dict(data)
        m = d.get("model") or {}
        gs = int(m.get("num_heads", 1)) // max(1, int(m.get("num_kv_heads", 1)))
        d["targets"] = {k: {**t, "points": [[p[0], p[1] * gs, p[1], p[2], p[3]] for p in t.get("points", [])]}
                        for k, t in (d.get("targets") or {}).items()}
        rng = dict(d.get("range") or {})
        if "kv_groups" in rng and "q_heads" not in rng:
            rng["q_heads"] = [rng["kv_groups"][0] * gs, rng["kv_groups"][1] * gs]
        d["range"], d["schema_version"] = rng, 2
        return d


def save_state(state: PredictorState, path: Path) -> None:
    atomic_write_text(path, json.dumps(state.model_dump(mode="json"), indent=1, allow_nan=False) + "\n")


def load_state(path: Path) -> PredictorState:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"predictor file not found: {p}")
    try:
        return PredictorState.model_validate_json(p.read_bytes())
    except ValidationError as e:
        raise TableError(f"{p}: {format_validation_error(e, 'predictor state')}") from None
