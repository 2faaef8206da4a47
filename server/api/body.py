"""Request bodies before routing: a size limit (413) and strict JSON (finite numbers only, 422 naming the field).

Python's ``json`` accepts ``NaN``, ``Infinity`` and turns ``1e309`` into ``inf``; such values then broke the
writers (``allow_nan=False``) with a 500. Here every JSON body is decoded once, walked for non-finite numbers,
and refused with the path of the first one (``budget.latency_ms``); bodies that are not JSON at all are a 422
too (never FastAPI's undocumented 400). The body is then replayed to the app unchanged.
"""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

BODYLESS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})


def non_finite_path(doc: Any) -> str | None:
    """The dotted path of the first non-finite float in ``doc`` (``rows.3.tpot_ms.p90``), or ``None``."""
    stack: list[tuple[str, Any]] = [("", doc)]
    while stack:
        path, v = stack.pop()
        if isinstance(v, float) and not math.isfinite(v):
            return path or "<root>"
        if isinstance(v, dict):
            stack.extend((f"{path}.{k}" if path else str(k), x) for k, x in reversed(list(v.items())))
        elif isinstance(v, list):
            stack.extend((f"{path}.{i}" if path else str(i), x) for i, x in reversed(list(enumerate(v))))
    return None


def check_json(body: bytes) -> tuple[str, str | None] | None:
    """``(message, field)`` when ``body`` is not strict JSON, else ``None``."""
    try:
        doc = json.loads(body)
    except RecursionError:
        return "request body is nested too deeply", None
    except (UnicodeDecodeError, ValueError) as e:  # JSONDecodeError, and ints beyond Python's digit limit
        return f"request body is not valid JSON: {str(e)[:200]}", None
    path = non_finite_path(doc)
    if path is not None:
        return f"{path}: numbers must be finite (got NaN, Infinity or an overflowing literal)", path
    return None


def is_json(content_type: bytes) -> bool:
    ct = content_type.split(b";")[0].strip().lower()
    return ct == b"application/json" or ct.endswith(b"+json")


async def send_error(send: Send, status: int, detail: str, field: str | None = None) -> None:
    body = json.dumps({"detail": detail, "field": field}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 413:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class StrictBodyMiddleware:
    """Pure ASGI middleware: 413 beyond ``max_bytes`` (declared or streamed), 422 for non-strict JSON bodies."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in BODYLESS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        too_big = f"request body larger than {self.max_bytes} bytes"
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await send_error(send, 413, too_big)
            return
        chunks, total = [], 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            chunk = msg.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                await send_error(send, 413, too_big)
                return
            chunks.append(chunk)
            if not msg.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and is_json(headers.get(b"content-type", b"")):
            problem = check_json(body)
            if problem is not None:
                await send_error(send, 422, problem[0], problem[1])
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
