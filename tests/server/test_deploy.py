"""docker-compose.yml and Dockerfile: structure checks (and `docker compose config` where the client has it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_compose_has_api_and_postgres_with_healthchecks_and_volumes() -> None:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    api, pg = doc["services"]["api"], doc["services"]["postgres"]
    assert api["build"] == "." and api["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in api and "/readyz" in " ".join(api["healthcheck"]["test"])
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    env = api["environment"]
    assert env["AMOEBA_DATABASE_URL"].startswith("postgresql+psycopg://") and "@postgres:5432/" in env["AMOEBA_DATABASE_URL"]
    assert env["AMOEBA_ARTIFACT_DIR"].startswith("/var/lib/amoeba")
    assert any(v.endswith(":/var/lib/amoeba") for v in api["volumes"]) and "amoeba-var" in doc["volumes"]
    assert ":?" in env["AMOEBA_ADMIN_TOKEN"]  # no default admin secret


def test_dockerfile_installs_cpu_torch_then_the_package() -> None:
    text = (ROOT / "Dockerfile").read_text()
    torch_at = text.index("pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0")
    assert torch_at < text.index("pip install -e .")
    assert "amoeba db upgrade" in text and "HEALTHCHECK" in text
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    for d in (p.rstrip("*") for p in packages):  # every package the wheel has is in the image
        assert f"COPY {d} ./{d}" in text


def _compose_cli() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.mark.skipif(_compose_cli() is None, reason="no docker compose client here (the structure is checked above)")
def test_docker_compose_config_validates() -> None:
    cli = _compose_cli()
    assert cli is not None
    env = {**os.environ, "AMOEBA_ADMIN_TOKEN": "compose-test-token"}
    r = subprocess.run([*cli, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
