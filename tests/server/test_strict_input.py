"""Strict input and no 500s (issue 14): each test reproduces one defect found from outside the service.

Non-finite JSON numbers, string→number coercion, unknown fields, body size, out-of-range ids, workload keys,
profile shapes outside the checkpoint's space, profiles of another model, duplicate uploads racing, timestamps
losing their timezone, 422 bodies off-schema, and the Allow header.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from server.db.models import Job, Profile, ProfileRow
from tests.factories import make_table
from tests.server.conftest import admin_headers, register

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
QUERY = {"device": "dev1", "engine": "torch", "workload": "b1-p16-g8", "budget": {"latency_ms": 2.5, "metric": "tpot"}}


def _count(client: Any, model: Any) -> int:
    with client.app.state.amoeba.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)))


def _post_raw(client: Any, url: str, text: str, **headers: str) -> Any:
    return client.post(url, content=text.encode(), headers={"Content-Type": "application/json", **headers})


@pytest.mark.parametrize("literal", ["NaN", "-Infinity", "Infinity", "-1e309", "1e400"])
def test_non_finite_budget_is_a_422_naming_the_field(client: Any, literal: str) -> None:
    body = json.dumps(QUERY).replace("2.5", literal)
    r = _post_raw(client, "/v1/search", body)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "budget.latency_ms" and "finite" in r.json()["detail"]


@pytest.mark.parametrize(("path", "literal"), [("rows.0.tpot_ms.p90", "Infinity"), ("rows.0.tpot_ms.median", "NaN"), ("rows.2.ttft_ms.std", "1e309")])
def test_non_finite_profile_numbers_are_refused_and_nothing_is_stored(client: Any, path: str, literal: str) -> None:
    token = register(client)
    table = make_table()
    keys = path.split(".")
    node: Any = table
    for k in keys[:-1]:
        node = node[int(k)] if k.isdigit() else node[k]
    node[keys[-1]] = 12345.678
    r = _post_raw(client, "/v1/devices/dev1/profiles", json.dumps(table).replace("12345.678", literal), Authorization=f"Bearer {token}")
    assert r.status_code == 422 and r.json()["field"] == path
    assert _count(client, Profile) == 0 and _count(client, Job) == 0


def test_strings_are_not_coerced_and_unknown_fields_are_refused(client: Any) -> None:
    r = client.post("/v1/search", json={**QUERY, "budget": {"latency_ms": "20", "metric": "tpot"}})
    assert r.status_code == 422 and r.json()["field"] == "budget.latency_ms"
    r = client.post("/v1/search", json={**QUERY, "budgett": {"latency_ms": 20}})
    assert r.status_code == 422 and r.json()["field"] in ("budgett", "budget")
    r = client.post("/v1/search", json={**QUERY, "priority": "high"})
    assert r.status_code == 422 and r.json()["field"] == "priority" and "xtra" in r.json()["detail"]
    r = client.post("/v1/devices", json={"name": "x", "hardware": {}, "token": "mine"}, headers=admin_headers())
    assert r.status_code == 422 and r.json()["field"] == "token"


def test_profile_numbers_given_as_strings_are_refused(client: Any) -> None:
    token = register(client)
    table = make_table()
    table["rows"][1]["tpot_ms"]["median"] = "1.5"
    r = client.post("/v1/devices/dev1/profiles", json=table, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 422 and "rows.1.tpot_ms.median" in r.json()["detail"]
    table = make_table()
    table["rows"][0]["busy"] = "yes"
    r = client.post("/v1/devices/dev1/profiles", json=table, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 422 and "rows.0.busy" in r.json()["detail"]
    assert _count(client, Profile) == 0


def test_upload_body_is_documented_as_the_profile_table(client: Any) -> None:
    doc = client.get("/openapi.json").json()
    body = doc["paths"]["/v1/devices/{name}/profiles"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ProfileTable"}
    schemas = doc["components"]["schemas"]
    assert {"rows", "model", "workload", "device", "engine"} <= set(schemas["ProfileTable"]["required"]) and "Stat" in schemas


def test_workload_garbage_is_a_422_not_a_404(client: Any) -> None:
    r = client.post("/v1/search", json={**QUERY, "workload": "garbage"})
    assert r.status_code == 422 and r.json()["field"] == "workload"


def test_422_body_is_a_string_detail_without_echo(client: Any) -> None:
    big = "x" * 200_000
    r = client.post("/v1/search", json={**QUERY, "device": big})
    assert r.status_code == 422 and isinstance(r.json()["detail"], str) and len(r.content) < 2000
    r = client.post("/v1/search", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and isinstance(r.json()["detail"], str)
    r = client.post("/v1/search", content=b'{"device": "\xff\xfe"}', headers={"Content-Type": "application/json"})
    assert r.status_code == 422  # not FastAPI's undocumented 400
    r = client.post("/v1/search", content=("[" * 100_000 + "]" * 100_000).encode(), headers={"Content-Type": "application/json"})
    assert r.status_code == 422


def test_body_size_limit(tmp_path: Path, db_url: str, tiny_ckpt: Path) -> None:
    from fastapi.testclient import TestClient

    from server.app import create_app
    from tests.server.conftest import settings_for

    with TestClient(create_app(settings_for(tmp_path, db_url, checkpoint=tiny_ckpt, max_body_bytes=64 * 1024))) as c:
        token = register(c)
        table = make_table()
        table["command"] = "y" * 100_000
        r = c.post("/v1/devices/dev1/profiles", json=table, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 413 and len(r.content) < 500
        r = c.post("/v1/devices/dev1/profiles", content=b"z" * 200_000, headers={"Authorization": f"Bearer {token}", "Content-Type": "text/plain"})
        assert r.status_code == 413 and len(r.content) < 500  # never an echo of the body
        assert _count(c, Profile) == 0
        assert c.post("/v1/devices/dev1/profiles", json=make_table(), headers={"Authorization": f"Bearer {token}"}).status_code == 201


def test_subnet_ids_out_of_range(client: Any) -> None:
    assert client.get(f"/v1/subnets/{2**64}").status_code == 422
    assert client.get(f"/v1/subnets/{2**64}/artifact").status_code == 422
    assert client.get("/v1/subnets/0").status_code == 422
    assert client.get(f"/v1/subnets/{2**63 - 1}").status_code == 404


def test_profile_shapes_must_lie_in_the_checkpoint_space(client: Any) -> None:
    token = register(client)
    h = {"Authorization": f"Bearer {token}"}
    for shape in [(3, 0.75, 0.75), (1, 1.0, 1.0), (4, 0.25, 1.0)]:  # widths off the ladder, depth below min_layers
        bad = make_table(shapes=[(4, 1.0, 1.0), (3, 0.5, 0.5), (2, 1.0, 0.5), (4, 0.5, 1.0), shape])
        r = client.post("/v1/devices/dev1/profiles", json=bad, headers=h)
        assert r.status_code == 422 and r.json()["field"] == "rows.4.shape", r.text
    assert _count(client, Profile) == 0 and _count(client, ProfileRow) == 0


def test_profile_of_another_model_is_refused_naming_both(client: Any) -> None:
    token = register(client)
    other = make_table()
    other["model"]["intermediate_size"] = 256
    r = client.post("/v1/devices/dev1/profiles", json=other, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 409, r.text
    assert "ffn256" in r.json()["detail"] and "ffn128" in r.json()["detail"]
    bad_config = make_table()
    bad_config["model"]["config_sha256"] = "0" * 64
    r = client.post("/v1/devices/dev1/profiles", json=bad_config, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 409 and "config sha256" in r.json()["detail"]
    assert _count(client, Profile) == 0
    ok = client.post("/v1/devices/dev1/profiles", json=make_table(), headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 201 and ok.json()["model"] == "llama L4 h64 heads4/kv2 d16 ffn128 vocab97"
    prof = client.get("/v1/devices/dev1").json()["profiles"][0]
    assert prof["model"] == ok.json()["model"] and prof["checkpoint_sha256"] == client.app.state.amoeba.runtime.sha256


def test_search_refuses_profiles_of_another_model(client: Any, tiny_ckpt: Path) -> None:
    token = register(client)
    assert client.post("/v1/devices/dev1/profiles", json=make_table(), headers={"Authorization": f"Bearer {token}"}).status_code == 201
    state = client.app.state.amoeba
    with state.db.session() as s:  # as if uploaded while another checkpoint was served
        p = s.scalars(select(Profile)).one()
        p.model_dims = "llama L4 h64 heads4/kv2 d16 ffn256 vocab97"
        p.document = {**p.document, "model": {**p.document["model"], "intermediate_size": 256}}
    r = client.post("/v1/search", json=QUERY)
    assert r.status_code == 409 and "ffn256" in r.json()["detail"] and "ffn128" in r.json()["detail"]


def test_duplicate_upload_racing_the_first_answers_200(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The loser of two concurrent identical uploads hits the unique constraint; it must answer the duplicate."""
    from sqlalchemy.exc import IntegrityError

    from server.services import profiles

    token = register(client)
    table = make_table()
    real = profiles.ingest_profile
    calls = {"n": 0}

    def racing(s: Any, dev: Any, body: Any, identity: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:  # the other request commits the same table first ...
            with client.app.state.amoeba.db.session() as other:
                real(other, other.merge(dev), copy.deepcopy(body), identity)
            raise IntegrityError("INSERT INTO profiles", {}, Exception("UNIQUE constraint failed: profiles.content_sha256"))
        return real(s, dev, body, identity)

    monkeypatch.setattr(profiles, "ingest_profile", racing)
    r = client.post("/v1/devices/dev1/profiles", json=table, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json()["created"] is False
    assert _count(client, Profile) == 1 and _count(client, ProfileRow) == len(table["rows"])


def test_timestamps_keep_their_timezone_after_a_round_trip(client: Any) -> None:
    created = client.post("/v1/devices", json={"name": "tz"}, headers=admin_headers()).json()["created_at"]
    read = client.get("/v1/devices/tz").json()["created_at"]
    for text in (created, read):
        assert datetime.fromisoformat(text.replace("Z", "+00:00")).utcoffset() is not None, text
    assert datetime.fromisoformat(created.replace("Z", "+00:00")) == datetime.fromisoformat(read.replace("Z", "+00:00"))


def test_allow_header_lists_every_method_of_the_path(client: Any) -> None:
    r = client.options("/v1/devices")
    assert r.status_code == 405 and {"GET", "POST"} <= {m.strip() for m in r.headers["allow"].split(",")}
    r = client.delete("/v1/search")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
