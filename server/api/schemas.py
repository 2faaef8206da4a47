"""Request and response bodies of the /v1 API (pydantic v2)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.search.objectives import OBJECTIVES

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
WORKLOAD_PATTERN = r"^b[1-9][0-9]{0,5}-p[1-9][0-9]{0,6}-g([2-9]|[1-9][0-9]{1,6})(-[a-z][a-z0-9_]{0,15})?$"
"""``profilers.workload.Workload`` keys: batch >= 1, prompt >= 1, generated >= 2 tokens, optional dtype."""
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class Strict(BaseModel):
    """Request bodies: unknown fields are refused, strings are never coerced to numbers, numbers are finite."""

    model_config = ConfigDict(extra="forbid", strict=True)


class DeviceCreate(Strict):
    name: str = Field(pattern=NAME_PATTERN, description="unique device name (letters, digits, . _ -)")
    hardware: dict[str, Any] = Field(default_factory=dict, description="hardware facts (CPU/GPU model, memory, ...)")


class ProfileSummary(BaseModel):
    id: int
    engine: str
    engine_version: str | None
    workload: str
    rows: int
    content_sha256: str
    model: str = Field(description="the model the table was measured for (architecture dimensions)")
    checkpoint_sha256: str | None = Field(description="the checkpoint served when the table was uploaded")
    created_at: datetime


class DeviceOut(BaseModel):
    name: str
    hardware: dict[str, Any]
    created_at: datetime
    profiles: list[ProfileSummary] = Field(default_factory=list)


class DeviceCreated(DeviceOut):
    token: str = Field(description="the device token: shown once, only its hash is stored")


class ProfileUploaded(BaseModel):
    id: int
    device: str
    engine: str
    workload: str
    rows: int
    content_sha256: str
    model: str = Field(description="the model the table was measured for (architecture dimensions)")
    created: bool = Field(description="false when the same table was uploaded before (idempotent)")


class Budget(Strict):
    """The primary latency budget (``latency_ms`` on ``metric``) and optional further limits; every one must hold."""

    latency_ms: Positive = Field(description="latency budget in milliseconds on `metric`")
    metric: Literal["tpot", "ttft", "e2e"] = Field(default="tpot", description="which latency the budget bounds (e2e = ttft + (gen_len - 1) * tpot)")
    tpot_ms: Positive | None = Field(default=None, description="also bound the time per output token (ms)")
    ttft_ms: Positive | None = Field(default=None, description="also bound the time to first token (ms)")
    e2e_ms: Positive | None = Field(default=None, description="also bound the end-to-end latency (ms)")
    peak_mem_mb: Positive | None = Field(default=None, description="also bound the peak memory (MB)")

    def limits(self) -> dict[str, float]:
        return {k: v for k in ("tpot_ms", "ttft_ms", "e2e_ms", "peak_mem_mb") if (v := getattr(self, k)) is not None}


class SearchRequest(Strict):
    device: str = Field(pattern=NAME_PATTERN, description="a registered device")
    engine: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="a deployment flow with an uploaded profile, e.g. torch")
    workload: str = Field(pattern=WORKLOAD_PATTERN, description="batch, prompt and generated length, e.g. b1-p32-g8")
    budget: Budget
    memory_mb: Positive | None = Field(default=None, description="optional peak-memory budget in MB")
    objective: str = Field(default="accuracy", description="what to maximise under the budget", json_schema_extra={"enum": list(sorted(OBJECTIVES))})  # type: ignore[dict-item]

    @field_validator("workload")
    @classmethod
    def _workload(cls, v: str) -> str:
        from profilers.workload import Workload

        try:
            return Workload.parse(v).key
        except ValueError as e:
            raise ValueError(str(e)) from None

    @field_validator("objective")
    @classmethod
    def _objective(cls, v: str) -> str:
        if v not in OBJECTIVES:
            raise ValueError(f"unknown objective {v!r}; known: {', '.join(sorted(OBJECTIVES))}")
        return v


class Latency(BaseModel):
    ttft_ms: float
    tpot_ms: float
    e2e_ms: float
    peak_mem_mb: float | None = None
    in_range: bool = True


class ShapePoint(BaseModel):
    shape: str
    accuracy_score: float = Field(description="higher is better: -ln(perplexity) for the ppl metric, the task score for mc:*")
    accuracy_value: float | None = Field(default=None, description="the accuracy metric's own value (the perplexity for ppl)")
    latency_ms: float = Field(description="predicted latency on the budgeted metric")
    peak_mem_mb: float | None = None


class SearchAnswer(BaseModel):
    search_id: str = Field(description="identifies this search in the log")
    subnet_id: int
    shape: str
    num_layers: int
    attn_width: float
    ffn_width: float
    metric: str
    budget_ms: float
    latency_ms: float = Field(description="predicted latency on the budgeted metric")
    predicted: Latency
    objective: str
    accuracy_score: float = Field(description="higher is better: -ln(perplexity) for the ppl metric, the task score for mc:*")
    accuracy_value: float | None = Field(default=None, description="the accuracy metric's own value (the perplexity for ppl)")
    accuracy_metric: str = Field(description="the accuracy metric: ppl (calibration perplexity) or mc:<task>:<score>")
    neighbours: list[ShapePoint] = Field(description="Pareto neighbours of the answer")
    method: str = Field(description="how it was answered: index (precomputed lookup), exhaustive, optuna or nsga2")
    artifact_url: str
    duration_ms: float


class Infeasible(BaseModel):
    detail: str
    reason: str | None = None
    metric: str
    budget_ms: float
    fastest_ms: float | None
    fastest_shape: str | None
    min_peak_mem_mb: float | None = None


class ArtifactOut(BaseModel):
    status: str
    sha256: str | None = None
    manifest_sha256: str | None = None
    size_bytes: int | None = None
    architecture: str | None = None
    url: str


class SubnetOut(BaseModel):
    id: int
    shape: str
    num_layers: int
    attn_width: float
    ffn_width: float
    checkpoint_sha256: str
    created_at: datetime
    artifact: ArtifactOut


class ParetoOut(BaseModel):
    device: str
    engine: str
    workload: str
    metric: str
    points: list[ShapePoint]


class ErrorOut(BaseModel):
    """Every error body: ``detail`` says what is wrong; ``field`` names the bad input field; ``status`` says what a
    202/503 waits for."""

    detail: str
    field: str | None = None
    status: str | None = None
