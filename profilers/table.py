"""The profile table: one (device, engine, workload) measured over a grid of shapes.

JSON on disk, validated on read (pydantic v2); importable without torch so the service can validate
uploads with the same model. ``content_sha256()`` hashes a canonical serialisation (idempotent uploads).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, ValidationError, field_validator, model_validator

from core.atomic import atomic_write_text
from core.errors import ConfigError
from core.spec import SubnetSpec
from profilers.dims import ShapeDims
from profilers.errors import TableError
from profilers.workload import Workload

SCHEMA_VERSION: Literal[1] = 1


class _Strict(BaseModel):
    """Every table model: unknown fields rejected, no NaN / ±inf anywhere, no type coercion (``"2.0"`` is not a number,
    ``1`` not a bool, ``3.0`` not an int; an int is a float). JSON arrays stay fine for tuples: those fields (and the CPU
    lists) are lax containers of strict items."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)


class Stat(_Strict):
    """Repeated timing in milliseconds: median, 90th percentile, standard deviation, repetitions.

    Measured with interleaved rounds (``profilers.protocol``): ``median`` is the median of the round medians,
    ``p90`` / ``std`` are over all timed repetitions, ``rounds`` the number of rounds, ``mad_pct`` the median
    absolute deviation of the round medians relative to ``median`` (the spread), ``pass_medians`` the value of
    each separate pass (test–retest). The last three are ``None`` in tables written without rounds.
    """

    median: float = Field(gt=0)
    p90: float = Field(gt=0)
    std: float = Field(ge=0)
    repetitions: int = Field(ge=1)
    rounds: int | None = Field(default=None, ge=1)
    mad_pct: float | None = Field(default=None, ge=0)
    pass_medians: list[float] | None = None

    @model_validator(mode="after")
    def _p90_not_below_median(self) -> Stat:
        if self.p90 < self.median * (1 - 1e-9):
            raise ValueError(f"p90 {self.p90} is below median {self.median}")
        return self


class DeviceFacts(_Strict):
    """What ran the measurement. Unknown facts are ``None`` (never guessed)."""

    name: str | None = None
    cpu_model: str
    cpu_count: int = Field(ge=1)
    threads: int = Field(ge=1)
    gpu_model: str | None = None
    driver: str | None = None
    jetpack: str | None = None
    power_mode: str | None = None
    clocks_mhz: dict[str, float] = Field(default_factory=dict)
    load_avg_start: tuple[StrictFloat, StrictFloat, StrictFloat] = Field(strict=False)
    load_avg_end: tuple[StrictFloat, StrictFloat, StrictFloat] = Field(strict=False)
    os: str = ""
    #: CPUs the measuring process was pinned to (``None``: not recorded)
    cpu_affinity: list[StrictInt] | None = Field(default=None, strict=False)


class EngineFacts(_Strict):
    """The deployment flow: engine name and version, dtype / quantisation, build flags."""

    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    dtype: str = Field(min_length=1)
    quantization: str | None = None
    device: str = "cpu"
    build_flags: dict[str, str] = Field(default_factory=dict)


class ModelFacts(_Strict):
    """The base model whose shapes were measured (dimensions the predictor features need)."""

    model_type: str
    num_layers: int = Field(ge=1)
    hidden_size: int = Field(ge=1)
    num_heads: int = Field(ge=1)
    num_kv_heads: int = Field(ge=1)
    head_dim: int = Field(ge=1)
    intermediate_size: int = Field(ge=1)
    vocab_size: int = Field(ge=1)
    source: Literal["config", "exported"] = "config"
    config_sha256: str | None = None


class ProfileRow(_Strict):
    """One measured shape. ``busy``: other processes competed for the CPU (``contention`` = their cores in use).

    ``kv_groups`` = KV heads kept per layer; ``q_heads`` = query heads kept per layer (``None``: the KV groups' full
    complement, ``kv_groups × group_size``, as in tables written before query-head attention units).
    """

    shape: str
    num_layers: int = Field(ge=1)
    kv_groups: int = Field(ge=1)
    ffn_channels: int = Field(ge=1)
    q_heads: int | None = Field(default=None, ge=1)
    ttft_ms: Stat
    tpot_ms: Stat
    peak_mem_mb: float | None = Field(default=None, ge=0)
    busy: bool = False
    contention: float | None = Field(default=None, ge=0)
    #: wall seconds this shape cost to measure (preparing, opening, warm-ups and timed generations of every round)
    measure_s: float | None = Field(default=None, ge=0)
    #: rounds that were contended and measured again
    remeasured: int = Field(default=0, ge=0)

    @field_validator("shape")
    @classmethod
    def _canonical_shape(cls, v: str) -> str:
        try:
            return SubnetSpec.parse(v).key
        except ConfigError as e:
            raise ValueError(str(e)) from None

    @model_validator(mode="after")
    def _depth_matches(self) -> ProfileRow:
        if SubnetSpec.parse(self.shape).num_layers != self.num_layers:
            raise ValueError(f"num_layers {self.num_layers} does not match shape {self.shape}")
        return self

    @property
    def spec(self) -> SubnetSpec:
        return SubnetSpec.parse(self.shape)

    def dims(self) -> ShapeDims:
        """What was built (``q_heads`` as stored, possibly ``None``)."""
        return ShapeDims(self.num_layers, self.kv_groups, self.ffn_channels, self.q_heads)


class ProtocolFacts(_Strict):
    """How the table was measured (``profilers.protocol``)."""

    passes: int = Field(ge=1)
    rounds_per_pass: int = Field(ge=1)
    warmup: int = Field(ge=0)
    repetitions: int = Field(ge=1)
    threads: int = Field(ge=1)
    cpu_affinity: list[StrictInt] | None = Field(default=None, strict=False)
    statistic: str = "median of round medians"
    order: str = "rotated by one shape per round"
    busy_policy: str = "mark"
    busy_retries: int = Field(default=1, ge=0)
    busy_tolerance: float = 0.25
    remeasured_rounds: int = Field(default=0, ge=0)
    wall_s: float = Field(default=0.0, ge=0)


class FloorStat(_Strict):
    """Test–retest agreement of one quantity over the shapes: |pass A − pass B| relative to their mean."""

    median_abs_delta_pct: float = Field(ge=0)
    p90_abs_delta_pct: float = Field(ge=0)
    within_5pct: float = Field(ge=0, le=1)
    within_10pct: float = Field(ge=0, le=1)
    n: int = Field(ge=1)


class NoiseFloor(_Strict):
    """The table's test–retest noise floor: the same shapes in two separate passes (first vs second half of the passes)."""

    ttft_ms: FloorStat
    tpot_ms: FloorStat
    method: str = "per shape: |median of pass A - median of pass B| / their mean; passes measured apart in time"


class ProfileTable(_Strict):
    """A latency profile: schema version, facts, the workload key and one row per shape (unique)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    device: DeviceFacts
    engine: EngineFacts
    workload: str
    model: ModelFacts
    rows: list[ProfileRow] = Field(min_length=1)
    created_at: str = ""
    command: str = ""
    protocol: ProtocolFacts | None = None
    noise_floor: NoiseFloor | None = None

    @field_validator("workload")
    @classmethod
    def _canonical_workload(cls, v: str) -> str:
        try:
            return Workload.parse(v).key
        except ConfigError as e:
            raise ValueError(str(e)) from None

    @model_validator(mode="after")
    def _rows_consistent(self) -> ProfileTable:
        seen: set[str] = set()
        for i, r in enumerate(self.rows):
            if r.shape in seen:
                raise ValueError(f"rows.{i}.shape: duplicate shape {r.shape}")
            seen.add(r.shape)
            if r.num_layers > self.model.num_layers:
                raise ValueError(f"rows.{i}.num_layers: {r.num_layers} exceeds the model's {self.model.num_layers} layers")
            if r.kv_groups > self.model.num_kv_heads:
                raise ValueError(f"rows.{i}.kv_groups: {r.kv_groups} exceeds the model's {self.model.num_kv_heads} KV heads")
            if r.q_heads is not None:
                if r.q_heads > self.model.num_heads:
                    raise ValueError(f"rows.{i}.q_heads: {r.q_heads} exceeds the model's {self.model.num_heads} query heads")
                if r.q_heads % r.kv_groups:
                    raise ValueError(f"rows.{i}.q_heads: {r.q_heads} query heads cannot be shared evenly by {r.kv_groups} KV heads")
            if r.ffn_channels > self.model.intermediate_size:
                raise ValueError(f"rows.{i}.ffn_channels: {r.ffn_channels} exceeds intermediate_size {self.model.intermediate_size}")
        return self

    @property
    def wl(self) -> Workload:
        return Workload.parse(self.workload)

    def row(self, shape: SubnetSpec | str) -> ProfileRow | None:
        """The row of ``shape`` (canonical key match), or ``None``."""
        key = shape.key if isinstance(shape, SubnetSpec) else SubnetSpec.parse(shape).key
        return next((r for r in self.rows if r.shape == key), None)

    def canonical_json(self) -> str:
        """Canonical serialisation: sorted keys, no whitespace (what ``content_sha256`` hashes)."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), allow_nan=False)

    def content_sha256(self) -> str:
        """sha256 of the canonical serialisation: equal tables hash equal, whatever their formatting."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


def format_validation_error(err: ValidationError, what: str = "profile table") -> str:
    """One line naming each invalid field, e.g. ``rows.0.ttft_ms.median: Input should be greater than 0``."""
    parts = []
    for e in err.errors()[:5]:
        loc = ".".join(str(x) for x in e["loc"]) or "<root>"
        parts.append(f"{loc}: {e['msg'].removeprefix('Value error, ')}")
    more = f" (+{err.error_count() - 5} more)" if err.error_count() > 5 else ""
    return f"invalid {what}: " + "; ".join(parts) + more


def parse_table(data: str | bytes | dict[str, Any]) -> ProfileTable:
    """Validate a table from JSON text / bytes or a decoded dict; raises ``TableError`` naming the field."""
    if isinstance(data, str | bytes):
        try:
            data = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise TableError(f"invalid profile table: not JSON ({e})") from None
    if not isinstance(data, dict):
        raise TableError("invalid profile table: the top level must be a JSON object")
    v = data.get("schema_version")
    if v != SCHEMA_VERSION:
        raise TableError(f"invalid profile table: schema_version: expected {SCHEMA_VERSION}, got {v!r}")
    try:
        return ProfileTable.model_validate(data)
    except ValidationError as e:
        raise TableError(format_validation_error(e)) from None


def load_table(path: Path) -> ProfileTable:
    """Read and validate a table file (``DataMissingError`` style message when missing)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"profile table not found: {p}")
    try:
        return parse_table(p.read_bytes())
    except TableError as e:
        raise TableError(f"{p}: {e}") from None


def save_table(table: ProfileTable, path: Path) -> None:
    """Write the table as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(table.model_dump(mode="json"), indent=1, allow_nan=False) + "\n")
