"""docker-compose.yml and the Dockerfile, validated statically (no Docker engine runs here): the services,
ports, the shared results volume, GPU reservations and commands that match the CLI."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import tomllib
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _command(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else list(command)


def test_services_ports_and_shared_volume() -> None:
    compose = _compose()
    services = compose["services"]
    assert set(services) == {"ray-head", "ray-worker", "api"}
    assert "8265:8265" in services["ray-head"]["ports"]  # Ray dashboard + Jobs API (agvp-hpo submit)
    assert "8000:8000" in services["api"]["ports"]
    assert "results" in compose["volumes"]
    for name, service in services.items():
        assert "results:/results" in service["volumes"], name  # one volume: results and checkpoints
        assert service["environment"]["RAY_AUTH_MODE"] == "token", name
        assert "RAY_AUTH_TOKEN" in service["environment"], name
        assert service["image"] == "agvp-hpo:latest" and service["build"] == ".", name


def test_gpu_workers_join_the_head() -> None:
    services = _compose()["services"]
    worker = services["ray-worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
    head = _command(services["ray-head"])
    assert (
        head[:3] == ["ray", "start", "--head"] and "--port=6379" in head and "--dashboard-port=8265" in head
    )
    assert "--dashboard-host=0.0.0.0" in head and "--block" in head
    assert "--address=ray-head:6379" in _command(worker)
    assert worker["depends_on"]["ray-head"]["condition"] == "service_healthy"


def test_api_serves_the_shared_store_and_submits_to_the_head() -> None:
    api = _command(_compose()["services"]["api"])
    assert api[:2] == ["agvp-hpo", "serve"]
    options = dict(zip(api[2::2], api[3::2], strict=True))
    assert options == {
        "--store": "/results",
        "--host": "0.0.0.0",
        "--port": "8000",
        "--ray-address": "http://ray-head:8265",
    }
    from hpo.cli import app

    serve = next(
        c for c in app.registered_commands if c.callback is not None and c.callback.__name__ == "serve"
    )
    import inspect

    names = {f"--{p.replace('_', '-')}" for p in inspect.signature(serve.callback).parameters}  # type: ignore[arg-type]
    assert set(options) <= names


def test_dockerfile_installs_every_package() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    for pattern in packages["include"]:
        assert f"COPY {pattern.rstrip('*')} ./{pattern.rstrip('*')}" in dockerfile
    assert "RUN pip install ." in dockerfile and "FROM python:3.11" in dockerfile
