"""Device registration, listing and profile uploads (SQLite and PostgreSQL), with auth negatives."""

from __future__ import annotations

import copy
import json
from typing import Any

from sqlalchemy import func, select

from server.db.models import Job, Profile, ProfileRow
from tests.factories import make_table
from tests.server.conftest import admin_headers, register


def _count(client: Any, model: Any) -> int:
    with client.app.state.amoeba.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)))


def test_register_list_show(client: Any) -> None:
    token = register(client, "jetson-1", cpu="arm")
    assert len(token) >= 40
    r = client.get("/v1/devices")
    assert r.status_code == 200 and [d["name"] for d in r.json()] == ["jetson-1"]
    assert "token" not in r.json()[0] and "token_hash" not in r.json()[0]
    d = client.get("/v1/devices/jetson-1").json()
    assert d["hardware"] == {"cpu": "arm"} and d["profiles"] == []
    assert client.get("/v1/devices/nope").status_code == 404
    with client.app.state.amoeba.db.session() as s:  # only the hash is stored
        from server.db.models import Device

        stored = s.scalar(select(Device.token_hash))
        assert stored is not None and token not in stored and stored.startswith("sha256:")


def test_register_requires_admin(client: Any) -> None:
    body = {"name": "x"}
    assert client.post("/v1/devices", json=body).status_code == 401
    assert client.post("/v1/devices", json=body, headers={"Authorization": "Bearer wrong-token"}).status_code == 401
    assert client.post("/v1/devices", json=body, headers={"Authorization": "Basic !!notbase64"}).status_code == 401
    import base64

    basic = base64.b64encode(b"admin:admin-secret-for-tests").decode()
    assert client.post("/v1/devices", json=body, headers={"Authorization": f"Basic {basic}"}).status_code == 201
    wrong_user = base64.b64encode(b"root:admin-secret-for-tests").decode()
    assert client.post("/v1/devices", json={"name": "y"}, headers={"Authorization": f"Basic {wrong_user}"}).status_code == 401
    assert client.get("/v1/devices").json()[0]["name"] == "x"


def test_register_rejects_bad_names_and_duplicates(client: Any) -> None:
    r = client.post("/v1/devices", json={"name": "bad name/.."}, headers=admin_headers())
    assert r.status_code == 422 and "name" in json.dumps(r.json()["detail"])
    register(client, "dup")
    r = client.post("/v1/devices", json={"name": "dup"}, headers=admin_headers())
    assert r.status_code == 409 and "already exists" in r.json()["detail"]


def test_upload_created_duplicate_and_refit_job(client: Any, table: dict[str, Any]) -> None:
    token = register(client)
    h = {"Authorization": f"Bearer {token}"}
    r = client.post("/v1/devices/dev1/profiles", json=table, headers=h)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["created"] is True and body["rows"] == len(table["rows"]) and body["workload"] == "b1-p16-g8"
    # same content, different key order/formatting: 200 duplicate, nothing new stored
    reordered = json.loads(json.dumps(table, sort_keys=True))
    r2 = client.post("/v1/devices/dev1/profiles", content=json.dumps(reordered, indent=3), headers={**h, "Content-Type": "application/json"})
    assert r2.status_code == 200 and r2.json()["created"] is False and r2.json()["id"] == body["id"]
    assert _count(client, Profile) == 1 and _count(client, ProfileRow) == len(table["rows"])
    with client.app.state.amoeba.db.session() as s:
        jobs = s.scalars(select(Job)).all()
        assert [(j.kind, j.status) for j in jobs] == [("refit", "pending")]
    dev = client.get("/v1/devices/dev1").json()
    assert dev["profiles"][0]["engine"] == "torch" and dev["profiles"][0]["content_sha256"] == body["content_sha256"]


def test_upload_auth_negatives(client: Any, table: dict[str, Any]) -> None:
    token = register(client)
    register(client, "other")
    assert client.post("/v1/devices/dev1/profiles", json=table).status_code == 401
    assert client.post("/v1/devices/dev1/profiles", json=table, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.post("/v1/devices/dev1/profiles", json=table, headers={"Authorization": token}).status_code == 401
    assert client.post("/v1/devices/dev1/profiles", json=table, headers=admin_headers()).status_code == 401
    # another device's token does not work either
    r = client.post("/v1/devices/other/profiles", json=table, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    assert client.post("/v1/devices/ghost/profiles", json=table, headers={"Authorization": f"Bearer {token}"}).status_code == 404
    assert _count(client, Profile) == 0 and _count(client, Job) == 0


def test_upload_invalid_names_the_field_and_stores_nothing(client: Any, table: dict[str, Any]) -> None:
    token = register(client)
    h = {"Authorization": f"Bearer {token}"}
    bad = copy.deepcopy(table)
    bad["rows"][3]["tpot_ms"]["median"] = -1.0
    r = client.post("/v1/devices/dev1/profiles", json=bad, headers=h)
    assert r.status_code == 422 and "rows.3.tpot_ms.median" in r.json()["detail"]
    bad = copy.deepcopy(table)
    bad["rows"][1]["shape"] = bad["rows"][0]["shape"]
    bad["rows"][1]["num_layers"] = bad["rows"][0]["num_layers"]
    r = client.post("/v1/devices/dev1/profiles", json=bad, headers=h)
    assert r.status_code == 422 and "duplicate shape" in r.json()["detail"]
    bad = copy.deepcopy(table)
    bad["workload"] = "fast please"
    r = client.post("/v1/devices/dev1/profiles", json=bad, headers=h)
    assert r.status_code == 422 and "workload" in r.json()["detail"]
    r = client.post("/v1/devices/dev1/profiles", content=b"[1, 2]", headers={**h, "Content-Type": "application/json"})
    assert r.status_code == 422
    r = client.post("/v1/devices/dev1/profiles", json={**table, "schema_version": 7}, headers=h)
    assert r.status_code == 422 and "schema_version" in r.json()["detail"]
    assert _count(client, Profile) == 0 and _count(client, ProfileRow) == 0 and _count(client, Job) == 0


def test_second_table_is_a_new_profile(client: Any) -> None:
    token = register(client)
    h = {"Authorization": f"Bearer {token}"}
    assert client.post("/v1/devices/dev1/profiles", json=make_table(), headers=h).status_code == 201
    assert client.post("/v1/devices/dev1/profiles", json=make_table(base_ms=2.0), headers=h).status_code == 201
    assert client.post("/v1/devices/dev1/profiles", json=make_table(workload="b1-p32-g8"), headers=h).status_code == 201
    assert [p["workload"] for p in client.get("/v1/devices/dev1").json()["profiles"]] == ["b1-p16-g8", "b1-p16-g8", "b1-p32-g8"]
