"""A real two-node Ray cluster on this machine (``ray start --head`` plus a second ``ray start``): a demo-like
study goes in through ``agvp-hpo submit`` as a Ray job, its trials run on both nodes, and the service
reports the finished study. Ray 2.60 clusters use token authentication: the head writes the token to
``~/.ray/auth_token``, and every node and client here runs with ``RAY_AUTH_MODE=token`` to use it. Ray's
processes are stopped after the test (``ray stop --force``)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from hpo.cli import app
from hpo.study.folder import StudyFolder
from service.api import ServiceSettings, create_app

runner = CliRunner()
RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _ray(*args: str, env: dict[str, str]) -> None:
    done = subprocess.run([RAY, *args], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # this process submits and lists jobs
    folder = Path(tempfile.mkdtemp(prefix="agvp-c-", dir="/tmp"))  # short: Ray's socket paths
    # Nodes run jobs with the Python they find on PATH: this venv's, as a cluster image would have it.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("RAY_ADDRESS", None)
    env["RAY_AUTH_MODE"] = "token"
    port, dashboard = _free_port(), _free_port()
    try:
        _ray(
            "start",
            "--head",
            f"--port={port}",
            "--num-cpus=1",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}",
            f"--temp-dir={folder / 'ray'}",
            "--disable-usage-stats",
            env=env,
        )
        _ray("start", f"--address=127.0.0.1:{port}", "--num-cpus=1", env=env)
        yield f"http://127.0.0.1:{dashboard}", folder
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120, check=False)
        shutil.rmtree(folder, ignore_errors=True)


def test_submitted_study_runs_on_both_nodes(cluster: tuple[str, Path]) -> None:
    from ray.job_submission import JobStatus, JobSubmissionClient

    address, folder = cluster
    study = {
        "name": "clustered",
        "space": {"x": {"uniform": [0.0, 1.0]}},
        "fidelity": {"min": 1, "max": 3, "eta": 3},
        "scheduler": "fifo",
        "budget": {"max_trials": 4},
        "resources": {"cpu": 1},
        # Epochs long enough that the second node's first actor (a few seconds to start) gets work.
        "trainer": {"name": "synthetic", "overrides": {"epoch_seconds": 2.0}},
        "storage": {"root": str(folder / "results")},  # shared by both nodes (one machine)
    }
    spec = folder / "clustered.yaml"
    spec.write_text(yaml.safe_dump(study))
    submitted = runner.invoke(app, ["submit", str(spec), "--address", address])
    assert submitted.exit_code == 0, submitted.output
    job_id = submitted.output.split("as Ray job ")[1].split()[0]
    assert f"ray job logs --address {address} --follow {job_id}" in submitted.output

    client = JobSubmissionClient(address)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = client.get_job_status(job_id)
        if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            break
        time.sleep(1)
    assert status == JobStatus.SUCCEEDED, client.get_job_logs(job_id)[-3000:]

    rows = StudyFolder.of(folder / "results", "clustered").store.read()
    assert len(set(rows["node"])) == 2, f"trials ran on {set(rows['node'])}"
    service = TestClient(create_app(ServiceSettings(store=folder / "results")))
    detail = service.get("/api/studies/clustered").json()
    assert detail["status"] == "finished" and detail["trials"]["completed"] == 4

    listed = runner.invoke(app, ["status", "--address", address, "--root", str(folder / "results")])
    assert listed.exit_code == 0 and job_id in listed.output and "clustered" in listed.output
