"""Upload a profile table to the service: ``POST {url}/v1/devices/{device}/profiles`` with the device token.

201 created, 200 duplicate (same content hash), 401 bad token, 404 unknown device, 422 invalid (field named).
Network errors, timeouts and 5xx are retryable (bounded exponential backoff); 4xx are not.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from core.errors import ConfigError
from profilers.errors import UploadError
from profilers.table import parse_table


@dataclass(frozen=True)
class UploadResult:
    status: str  # "created" | "duplicate"
    http_status: int
    attempts: int
    content_sha256: str


def profiles_url(base_url: str, device: str) -> str:
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"upload URL must start with http:// or https://, got {base_url!r}")
    if not device.strip():
        raise ConfigError("device name is empty")
    return f"{base_url.rstrip('/')}/v1/devices/{quote(device, safe='')}/profiles"


def _detail(resp: Any) -> str:
    try:
        d = resp.json().get("detail", resp.text)
    except ValueError:
        return str(resp.text)[:300]
    if isinstance(d, list):
        return "; ".join(f"{'.'.join(str(x) for x in e.get('loc', []))}: {e.get('msg', '')}" for e in d if isinstance(e, dict))
    return str(d)[:300]


def upload_once(body: bytes, url: str, device: str, token: str, *, client: Any = None, timeout_s: float = 30.0) -> int:
    """One POST of ``body``; returns 201 or 200, raises ``UploadError`` (``retryable`` for network / 5xx)."""
    import httpx

    target = profiles_url(url, device)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    try:
        if client is not None:
            resp = client.post(target, content=body, headers=headers, timeout=timeout_s)
        else:
            resp = httpx.post(target, content=body, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as e:
        raise UploadError(f"upload to {target} failed: {type(e).__name__}: {e}", retryable=True) from None
    code = resp.status_code
    if code in (200, 201):
        return int(code)
    messages = {401: "bad device token (401)", 404: f"unknown device {device!r} (404)", 422: "table rejected as invalid (422)"}
    msg = messages.get(code, f"unexpected HTTP {code}")
    raise UploadError(f"upload to {target}: {msg}: {_detail(resp)}", retryable=code >= 500 or code in (408, 429), status=code)


def upload_file(path: Path, url: str, device: str, token: str, *, attempts: int = 5, base_delay_s: float = 1.0,
                max_delay_s: float = 30.0, client: Any = None, sleep: Callable[[float], None] = time.sleep,
                on_retry: Callable[[int, UploadError, float], None] | None = None) -> UploadResult:
    """Validate the table file, then POST its exact bytes, retrying retryable failures up to ``attempts`` times."""
    if attempts < 1:
        raise ConfigError(f"attempts must be >= 1, got {attempts}")
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"profile table not found: {p}")
    body = p.read_bytes()
    sha = parse_table(body).content_sha256()
    for i in range(1, attempts + 1):
        try:
            code = upload_once(body, url, device, token, client=client)
            return UploadResult("created" if code == 201 else "duplicate", code, i, sha)
        except UploadError as e:
            if not e.retryable or i == attempts:
                raise
            delay = min(max_delay_s, base_delay_s * 2 ** (i - 1))
            if on_retry:
                on_retry(i, e, delay)
            sleep(delay)
    raise AssertionError("unreachable")
