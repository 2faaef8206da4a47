"""The /v1 API is documented in OpenAPI: every route, its error responses and the security schemes."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_openapi_documents_the_routes(client: Any) -> None:
    doc = client.get("/openapi.json").json()
    paths = doc["paths"]
    expected = {
        ("/v1/devices", "post"), ("/v1/devices", "get"), ("/v1/devices/{name}", "get"), ("/v1/devices/{name}/profiles", "post"),
        ("/v1/search", "post"), ("/v1/subnets/{subnet_id}", "get"), ("/v1/subnets/{subnet_id}/artifact", "get"),
        ("/v1/devices/{name}/pareto", "get"), ("/healthz", "get"), ("/readyz", "get"),
    }
    assert expected <= {(p, m) for p, ops in paths.items() for m in ops}
    assert not any(p.startswith("/admin") or p.startswith("/static") for p in paths)
    assert {"401", "404", "422"} <= set(paths["/v1/devices/{name}/profiles"]["post"]["responses"])
    assert {"404", "422", "503"} <= set(paths["/v1/search"]["post"]["responses"])
    assert {"202", "304"} <= set(paths["/v1/subnets/{subnet_id}/artifact"]["get"]["responses"])
    schemes = doc["components"]["securitySchemes"]
    assert schemes["token"]["scheme"] == "bearer" and schemes["admin-basic"]["scheme"] == "basic"
    assert paths["/v1/devices"]["post"]["security"] and paths["/v1/devices/{name}/profiles"]["post"]["security"]
    search_body = doc["components"]["schemas"]["SearchRequest"]
    assert {"device", "engine", "workload", "budget"} <= set(search_body["required"])


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_health_and_readiness(bare_client: Any) -> None:
    client = bare_client
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")  # the test app points at a missing checkpoint and runs no worker threads
    assert r.status_code == 503 and r.json()["checks"]["database"] == "ok" and r.json()["checks"]["checkpoint"].startswith("missing")
