"""/v1/devices: register (admin), list, show; profile uploads (device token)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Response, status

from server.api.deps import Admin, AuthHeader, DeviceAuth, State
from server.api.schemas import DeviceCreate, DeviceCreated, DeviceOut, ErrorOut, ProfileSummary, ProfileUploaded
from server.db.models import Device
from server.services import devices as svc
from server.services.profiles import upload_profile as store_profile

router = APIRouter(prefix="/v1/devices", tags=["devices"])
BODY: dict[int | str, dict[str, Any]] = {413: {"model": ErrorOut, "description": "request body too large"},
                                         422: {"model": ErrorOut, "description": "invalid body (the field is named)"},
                                         503: {"model": ErrorOut, "description": "database or checkpoint unavailable (Retry-After)"}}
ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": ErrorOut}, 404: {"model": ErrorOut},
                                           409: {"model": ErrorOut, "description": "measured for another model, or uploaded by another device"}, **BODY}


def device_out(d: Device) -> DeviceOut:
    profiles = [
        ProfileSummary(id=p.id, engine=p.engine.name, engine_version=p.engine_version, workload=p.workload.key, rows=p.num_rows,
                       content_sha256=p.content_sha256, model=p.model_dims, checkpoint_sha256=p.checkpoint_sha256, created_at=p.created_at)
        for p in d.profiles
    ]
    return DeviceOut(name=d.name, hardware=d.hardware, created_at=d.created_at, profiles=profiles)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DeviceCreated, dependencies=[Admin],
             responses={401: {"model": ErrorOut}, 409: {"model": ErrorOut}, **BODY})
def create_device(body: DeviceCreate, state: State) -> DeviceCreated:
    """Register a device (admin). The response carries its token once; only the token's hash is stored."""
    with state.db.session() as s:
        dev, token = svc.create_device(s, body.name, body.hardware)
        return DeviceCreated(**device_out(dev).model_dump(), token=token)


@router.get("", response_model=list[DeviceOut], responses={503: {"model": ErrorOut}})
def list_devices(state: State) -> list[DeviceOut]:
    """Every registered device with its profiles."""
    with state.db.session() as s:
        return [device_out(d) for d in svc.list_devices(s)]


@router.get("/{name}", response_model=DeviceOut, responses={404: {"model": ErrorOut}, 503: {"model": ErrorOut}})
def get_device(name: str, state: State) -> DeviceOut:
    with state.db.session() as s:
        return device_out(svc.get_device(s, name))


@router.post(
    "/{name}/profiles",
    status_code=status.HTTP_201_CREATED,
    response_model=ProfileUploaded,
    responses={200: {"model": ProfileUploaded, "description": "the same table was uploaded before"}, **ERRORS},
    dependencies=[DeviceAuth],
)
def upload_profile(
    name: str, body: Annotated[dict[str, Any], Body(description="a profile table (profilers.table.ProfileTable JSON)")],
    response: Response, state: State, authorization: AuthHeader = None,
) -> ProfileUploaded:
    """Agent upload of a profile table (``Authorization: Bearer <device token>``; body = the table JSON).

    201 new, 200 duplicate (same content hash), 401 bad token, 404 unknown device, 409 measured for another
    model than the served checkpoint (both named), 422 invalid (field named; also shapes outside the checkpoint's
    space). One transaction: nothing is stored on error. The predictor refit runs outside the request.
    """
    prof, created = store_profile(state.db, name, authorization, body, state.runtime.identity())
    out = ProfileUploaded(id=prof.id, device=name, engine=prof.engine.name, workload=prof.workload.key, rows=prof.num_rows,
                          content_sha256=prof.content_sha256, model=prof.model_dims, created=created)
    if created:
        state.search.invalidate()
        state.worker.notify()
    else:
        response.status_code = status.HTTP_200_OK
    return out
