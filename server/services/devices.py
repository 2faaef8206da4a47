"""Devices, engines and workloads: registration, lookup, device-token authentication."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from profilers.workload import Workload as WorkloadSpec
from server.auth import bearer_token, hash_token, new_token, verify_token
from server.db.models import Device, Engine, Workload
from server.errors import Conflict, NotFound, Unauthorized


def create_device(s: Session, name: str, hardware: dict[str, Any] | None = None) -> tuple[Device, str]:
    """Register ``name``; returns the device and its one-time token (only the hash is stored)."""
    if s.scalar(select(Device.id).where(Device.name == name)) is not None:
        raise Conflict(f"device {name!r} already exists")
    token = new_token()
    dev = Device(name=name, hardware=hardware or {}, token_hash=hash_token(token))
    s.add(dev)
    s.flush()
    return dev, token


def get_device(s: Session, name: str) -> Device:
    dev = s.scalar(select(Device).where(Device.name == name))
    if dev is None:
        raise NotFound(f"unknown device {name!r}")
    return dev


def list_devices(s: Session) -> list[Device]:
    return list(s.scalars(select(Device).order_by(Device.name)))


def authenticate_device(s: Session, name: str, authorization: str | None) -> Device:
    """The device ``name`` if ``authorization`` carries its token: 404 unknown device, 401 bad token."""
    dev = get_device(s, name)
    if not verify_token(bearer_token(authorization), dev.token_hash):
        raise Unauthorized(f"wrong token for device {name!r}")
    return dev


def get_or_create_engine(s: Session, name: str) -> Engine:
    eng = s.scalar(select(Engine).where(Engine.name == name))
    if eng is None:
        eng = Engine(name=name)
        s.add(eng)
        s.flush()
    return eng


def get_or_create_workload(s: Session, key: str) -> Workload:
    spec = WorkloadSpec.parse(key)
    wl = s.scalar(select(Workload).where(Workload.key == spec.key))
    if wl is None:
        wl = Workload(key=spec.key, batch=spec.batch, prompt_len=spec.prompt_len, gen_len=spec.gen_len, dtype=spec.dtype)
        s.add(wl)
        s.flush()
    return wl


def get_engine(s: Session, name: str) -> Engine:
    eng = s.scalar(select(Engine).where(Engine.name == name))
    if eng is None:
        raise NotFound(f"unknown engine {name!r} (no profile uploaded for it)")
    return eng


def get_workload(s: Session, key: str) -> Workload:
    try:
        canonical = WorkloadSpec.parse(key).key
    except ValueError:
        canonical = key
    wl = s.scalar(select(Workload).where(Workload.key == canonical))
    if wl is None:
        raise NotFound(f"unknown workload {key!r} (no profile uploaded for it)")
    return wl
