"""The predictor's persisted state: plain JSON data (coefficients, k-NN points, CV scores, table hash), never a pickle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.atomic import atomic_write_text
from profilers.errors import TableError
from profilers.table import ModelFacts, format_validation_error

STATE_VERSION: Literal[1] = 1


class _S(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CvScore(_S):
    mape_pct: float = Field(ge=0)
    within_10pct: float = Field(ge=0, le=1)
    n: int = Field(ge=1)


class TargetFit(_S):
    """One fitted quantity (``ttft_ms``, ``tpot_ms`` or ``peak_mem_mb``)."""

    method: Literal["physical", "knn"]
    features: Literal["decode", "prefill", "memory"]
    coef: list[float]
    #: k-NN training points ``[num_layers, kv_groups, ffn_channels, value]`` (kept for either method)
    points: list[tuple[int, int, int, float]]
    cv: dict[str, CvScore]

    @property
    def held_out(self) -> CvScore:
        return self.cv[self.method]


class PredictorState(_S):
    schema_version: Literal[1] = STATE_VERSION
    kind: Literal["amoeba-latency-predictor"] = "amoeba-latency-predictor"
    table_sha256: str = Field(min_length=64, max_length=64)
    device: str | None
    engine: str
    engine_version: str
    workload: str
    model: ModelFacts
    range: dict[str, tuple[int, int]]
    targets: dict[str, TargetFit]


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
