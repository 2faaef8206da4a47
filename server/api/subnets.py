"""GET /v1/subnets/{id} and its artifact (a streamed tar, built on first request by a worker)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from server.api.deps import State
from server.api.schemas import ArtifactOut, ErrorOut, SubnetOut
from server.api.search import artifact_url
from server.errors import NotReady
from server.services import artifacts as svc

router = APIRouter(prefix="/v1/subnets", tags=["subnets"])
SubnetId = Annotated[int, PathParam(ge=1, le=2**63 - 1, description="a subnet id from a search answer")]


@router.get("/{subnet_id}", response_model=SubnetOut, responses={404: {"model": ErrorOut}, 422: {"model": ErrorOut}, 503: {"model": ErrorOut}})
def get_subnet(subnet_id: SubnetId, request: Request, state: State) -> SubnetOut:
    with state.db.session() as s:
        sub = svc.get_subnet(s, subnet_id)
        art = sub.artifact
        a = ArtifactOut(status=art.status if art else "not requested", url=artifact_url(request, state.settings.public_url, sub.id))
        if art is not None and art.status == "ready":
            a = a.model_copy(update={"sha256": art.sha256, "manifest_sha256": art.manifest_sha256, "size_bytes": art.size_bytes,
                                     "architecture": art.architecture})
        return SubnetOut(id=sub.id, shape=sub.shape_key, num_layers=sub.num_layers, attn_width=sub.attn_width, ffn_width=sub.ffn_width,
                         checkpoint_sha256=sub.checkpoint_sha256, created_at=sub.created_at, artifact=a)


@router.get(
    "/{subnet_id}/artifact",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/x-tar": {}}, "description": "the exported HF directory as a tar; sha256 in X-Amoeba-SHA256 and ETag"},
        202: {"model": ErrorOut, "description": "being built (Retry-After)"},
        304: {"description": "not modified (If-None-Match)"},
        404: {"model": ErrorOut},
        422: {"model": ErrorOut},
        500: {"model": ErrorOut, "description": "the export failed after its retries (the stored error)"},
        503: {"model": ErrorOut},
    },
)
def download_artifact(subnet_id: SubnetId, state: State, if_none_match: str | None = Header(None)) -> Response:
    """The subnet as a standalone model directory (tar). First request queues the export: 202 + Retry-After."""
    try:
        with state.db.session() as s:
            art = svc.request_artifact(s, svc.get_subnet(s, subnet_id))
            path, sha, manifest, shape = Path(str(art.path)), str(art.sha256), str(art.manifest_sha256), art.subnet.shape_key
    except NotReady:
        state.worker.notify()  # the build job was just queued (or is running)
        raise
    etag = f'"{sha}"'
    headers = {"ETag": etag, "X-Amoeba-SHA256": sha, "X-Amoeba-Manifest-SHA256": manifest, "X-Amoeba-Shape": shape}
    if if_none_match and etag in [t.strip() for t in if_none_match.split(",")]:
        return Response(status_code=304, headers=headers)
    return FileResponse(path, media_type="application/x-tar", filename=path.name, headers=headers)
