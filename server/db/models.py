"""Tables: devices, engines, workloads, profiles and their rows, predictor fits, accuracy cache, subnets,
artifacts, jobs, searches, and the admin secret."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.db.base import Base, Timestamped


class Device(Timestamped, Base):
    """A registered device; only the sha256 of its token is stored."""

    __tablename__ = "devices"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    hardware: Mapped[dict[str, Any]] = mapped_column(default=dict)
    token_hash: Mapped[str] = mapped_column(String(80))
    profiles: Mapped[list[Profile]] = relationship(back_populates="device", order_by="Profile.id")


class Engine(Timestamped, Base):
    """A deployment flow (``torch``, ``onnxruntime``, ...); versions live on each profile."""

    __tablename__ = "engines"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)


class Workload(Timestamped, Base):
    """Batch, prompt length, generated length (+ dtype) by canonical key, e.g. ``b1-p128-g64``."""

    __tablename__ = "workloads"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    batch: Mapped[int]
    prompt_len: Mapped[int]
    gen_len: Mapped[int]
    dtype: Mapped[str | None] = mapped_column(String(32))


class Profile(Timestamped, Base):
    """One uploaded latency table; unique by content hash (uploads are idempotent)."""

    __tablename__ = "profiles"
    id: Mapped[int] = mapped_column(primary_key=True)
    content_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    engine_id: Mapped[int] = mapped_column(ForeignKey("engines.id"))
    workload_id: Mapped[int] = mapped_column(ForeignKey("workloads.id"))
    engine_version: Mapped[str | None] = mapped_column(String(64))
    device_facts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    engine_facts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    document: Mapped[dict[str, Any]] = mapped_column(default=dict)
    num_rows: Mapped[int] = mapped_column(default=0)
    model_dims: Mapped[str] = mapped_column(String(160), index=True)
    """The model the table was measured for (``ModelFingerprint.dims``); searches use only matching profiles."""
    model_config_sha256: Mapped[str | None] = mapped_column(String(64))
    checkpoint_sha256: Mapped[str | None] = mapped_column(String(64))
    """The checkpoint the service served when the table was uploaded."""
    device: Mapped[Device] = relationship(back_populates="profiles")
    engine: Mapped[Engine] = relationship()
    workload: Mapped[Workload] = relationship()
    rows: Mapped[list[ProfileRow]] = relationship(back_populates="profile", cascade="all, delete-orphan", order_by="ProfileRow.id")


class ProfileRow(Base):
    """One measured shape of a profile."""

    __tablename__ = "profile_rows"
    __table_args__ = (UniqueConstraint("profile_id", "shape_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"), index=True)
    shape_key: Mapped[str] = mapped_column(String(64))
    num_layers: Mapped[int]
    attn_width: Mapped[float] = mapped_column(Float)
    ffn_width: Mapped[float] = mapped_column(Float)
    kv_groups: Mapped[int]
    ffn_channels: Mapped[int]
    ttft_ms: Mapped[float] = mapped_column(Float)
    ttft_p90_ms: Mapped[float] = mapped_column(Float)
    ttft_std_ms: Mapped[float] = mapped_column(Float)
    tpot_ms: Mapped[float] = mapped_column(Float)
    tpot_p90_ms: Mapped[float] = mapped_column(Float)
    tpot_std_ms: Mapped[float] = mapped_column(Float)
    repetitions: Mapped[int]
    peak_mem_mb: Mapped[float | None] = mapped_column(Float)
    busy: Mapped[bool] = mapped_column(default=False)
    profile: Mapped[Profile] = relationship(back_populates="rows")


class PredictorFit(Timestamped, Base):
    """A fitted latency predictor for (device, engine, workload): state as JSON data, held-out tpot errors.

    ``includes_busy``: too few uncontended rows, so rows measured on a busy machine were used (flagged).
    """

    __tablename__ = "predictor_fits"
    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    engine_id: Mapped[int] = mapped_column(ForeignKey("engines.id"))
    workload_id: Mapped[int] = mapped_column(ForeignKey("workloads.id"))
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"), index=True)
    state: Mapped[dict[str, Any]] = mapped_column(default=dict)
    mape: Mapped[float | None] = mapped_column(Float)
    within_10pct: Mapped[float | None] = mapped_column(Float)
    includes_busy: Mapped[bool] = mapped_column(default=False)


class AccuracyEntry(Timestamped, Base):
    """Cached calibration metric of one shape of one checkpoint (higher is better)."""

    __tablename__ = "accuracy_cache"
    __table_args__ = (UniqueConstraint("checkpoint_sha256", "shape_key", "metric", "data_sha256"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    checkpoint_sha256: Mapped[str] = mapped_column(String(64))
    shape_key: Mapped[str] = mapped_column(String(64))
    metric: Mapped[str] = mapped_column(String(32))
    data_sha256: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Subnet(Timestamped, Base):
    """A shape of a checkpoint that a search returned; its artifact is built on first download."""

    __tablename__ = "subnets"
    __table_args__ = (UniqueConstraint("checkpoint_sha256", "shape_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    checkpoint_sha256: Mapped[str] = mapped_column(String(64))
    shape_key: Mapped[str] = mapped_column(String(64))
    num_layers: Mapped[int]
    attn_width: Mapped[float] = mapped_column(Float)
    ffn_width: Mapped[float] = mapped_column(Float)
    artifact: Mapped[Artifact | None] = relationship(back_populates="subnet", uselist=False)


class Artifact(Timestamped, Base):
    """The exported HF directory of a subnet, as a tar archive. status: pending | building | ready | failed."""

    __tablename__ = "artifacts"
    id: Mapped[int] = mapped_column(primary_key=True)
    subnet_id: Mapped[int] = mapped_column(ForeignKey("subnets.id", ondelete="CASCADE"), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    path: Mapped[str | None] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64))
    manifest_sha256: Mapped[str | None] = mapped_column(String(64))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    architecture: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    ready_at: Mapped[datetime | None]
    subnet: Mapped[Subnet] = relationship(back_populates="artifact")


class Job(Timestamped, Base):
    """Work done outside requests (exports, predictor refits). status: pending | running | done | failed.

    ``key`` deduplicates (e.g. ``export:12``); a restart requeues ``running`` jobs.
    """

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(128), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class Search(Timestamped, Base):
    """One search request and its answer (or the infeasibility), with its duration. ``uid`` is the answer's
    ``search_id`` (rows are written in batches after the response)."""

    __tablename__ = "searches"
    id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[str | None] = mapped_column(String(32), unique=True, index=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    engine_id: Mapped[int] = mapped_column(ForeignKey("engines.id"))
    workload_id: Mapped[int] = mapped_column(ForeignKey("workloads.id"))
    request: Mapped[dict[str, Any]] = mapped_column(default=dict)
    answer: Mapped[dict[str, Any]] = mapped_column(default=dict)
    feasible: Mapped[bool]
    subnet_id: Mapped[int | None] = mapped_column(ForeignKey("subnets.id", ondelete="SET NULL"))
    duration_ms: Mapped[float] = mapped_column(Float)
    device: Mapped[Device] = relationship()
    engine: Mapped[Engine] = relationship()
    workload: Mapped[Workload] = relationship()


class AdminSecret(Timestamped, Base):
    """The generated admin secret (hash only), when ``AMOEBA_ADMIN_TOKEN`` is unset."""

    __tablename__ = "admin_secret"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(80))
