"""A real two-node Ray cluster on this machine (``ray start --head`` plus a second ``ray start``): a demo-like
study goes in through ``agvp-hpo submit`` as a Ray job, its trials run on both nodes, and the service
reports the finished study.

Ray 2.60 clusters use token authentication. The test makes its own token under its tmp folder and hands it
to every node and to this process through ``RAY_AUTH_TOKEN`` (never ``~/.ray/auth_token``: a fresh machine
has none, and the user's home is not ours to write). Each ``ray start`` runs in a session of its own, and
teardown signals exactly those process groups (plus any stray process naming the test's temp folder) -
never ``ray stop``, which would stop every Ray of the user on the machine.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
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
from hpo.ray_backend.runner import reset_ray_token_cache
from hpo.study.folder import StudyFolder
from service.api import ServiceSettings, create_app

runner = CliRunner()
RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _ray_start(*args: str, env: dict[str, str], groups: list[int]) -> None:
    """``ray start ...`` in a new session; the daemons it leaves keep that session's process group."""
    process = subprocess.Popen(
        [RAY, "start", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    groups.append(process.pid)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output[-3000:]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"  # a zombie is dead, waiting for a parent that may never reap it


def _own_processes(groups: list[int], folder: Path) -> list[int]:
    """Processes of our process groups, or whose command line names our temp folder."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            pgid = os.getpgid(int(entry.name))
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except (ProcessLookupError, PermissionError, FileNotFoundError):
            continue
        if (pgid in groups or str(folder) in cmdline) and _alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def _stop_own(groups: list[int], folder: Path) -> None:
    for sig, grace in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        for pid in _own_processes(groups, folder):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while _own_processes(groups, folder) and time.monotonic() < deadline:
            time.sleep(0.2)
    left = _own_processes(groups, folder)
    assert not left, f"processes the test started are still alive: {left}"


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    folder = Path(tempfile.mkdtemp(prefix="agvp-c-", dir="/tmp"))  # short: Ray's socket paths
    token = secrets.token_hex(32)
    (folder / "auth_token").write_text(token)
    # this process submits and lists jobs with the same token
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(folder / "auth_token"))
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    reset_ray_token_cache()
    # Nodes run jobs with the Python they find on PATH: this venv's, as a cluster image would have it.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("RAY_ADDRESS", None)
    # Temporary files of the nodes' processes (multiprocessing's pymp-* listener folders, which a killed
    # process never removes) stay in the test's folder instead of /tmp.
    (folder / "tmp").mkdir()
    env["TMPDIR"] = str(folder / "tmp")
    port, dashboard = _free_port(), _free_port()
    groups: list[int] = []
    try:
        _ray_start(
            "--head",
            f"--port={port}",
            "--num-cpus=1",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}",
            f"--temp-dir={folder / 'ray'}",
            "--disable-usage-stats",
            env=env,
            groups=groups,
        )
        worker = (f"--address=127.0.0.1:{port}", "--num-cpus=1", f"--temp-dir={folder / 'ray2'}")
        _ray_start(*worker, env=env, groups=groups)
        yield f"http://127.0.0.1:{dashboard}", folder
    finally:
        _stop_own(groups, folder)
        shutil.rmtree(folder, ignore_errors=True)
        monkeypatch.undo()
        reset_ray_token_cache()


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
