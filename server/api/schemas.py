"""Request and response bodies of the /v1 API (pydantic v2)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


class DeviceCreate(BaseModel):
    name: str = Field(pattern=NAME_PATTERN, description="unique device name (letters, digits, . _ -)")
    hardware: dict[str, Any] = Field(default_factory=dict, description="hardware facts (CPU/GPU model, memory, ...)")


class ProfileSummary(BaseModel):
    id: int
    engine: str
    engine_version: str | None
    workload: str
    rows: int
    content_sha256: str
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
    created: bool = Field(description="false when the same table was uploaded before (idempotent)")


class Budget(BaseModel):
    latency_ms: float = Field(gt=0, description="latency budget in milliseconds")
    metric: Literal["tpot", "ttft", "e2e"] = Field(default="tpot", description="which latency the budget bounds")


class SearchRequest(BaseModel):
    device: str
    engine: str
    workload: str
    budget: Budget
    memory_mb: float | None = Field(default=None, gt=0, description="optional peak-memory budget in MB")


class Latency(BaseModel):
    ttft_ms: float
    tpot_ms: float
    e2e_ms: float
    peak_mem_mb: float | None = None
    in_range: bool = True


class ShapePoint(BaseModel):
    shape: str
    accuracy: float
    latency_ms: float


class SearchAnswer(BaseModel):
    search_id: int
    subnet_id: int
    shape: str
    num_layers: int
    attn_width: float
    ffn_width: float
    metric: str
    budget_ms: float
    latency_ms: float = Field(description="predicted latency on the budgeted metric")
    predicted: Latency
    accuracy: float = Field(description="higher is better (−ln perplexity for the ppl metric)")
    accuracy_raw: float | None = None
    accuracy_metric: str
    neighbours: list[ShapePoint] = Field(description="Pareto neighbours of the answer")
    artifact_url: str
    duration_ms: float


class Infeasible(BaseModel):
    detail: str
    metric: str
    budget_ms: float
    fastest_ms: float
    fastest_shape: str


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
    detail: str
    field: str | None = None
