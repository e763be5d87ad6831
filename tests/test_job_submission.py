"""Submitting a study as a Ray job (hpo/ray_backend/jobs.py): a job server whose agent is still starting
is asked again, any other refusal is one line from `agvp-hpo submit`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hpo.cli import app
from hpo.cli._common import EXIT_BAD_INPUT
from hpo.ray_backend import jobs
from hpo.study import load_study

runner = CliRunner()
STUDY = Path(__file__).resolve().parents[1] / "search_spaces" / "demo.yaml"


class FakeClient:
    def __init__(self, failures: list[str]) -> None:
        self.failures = list(failures)
        self.calls = 0

    def submit_job(self, **kwargs: Any) -> str:
        self.calls += 1
        if self.failures:
            raise RuntimeError(self.failures.pop(0))
        assert jobs.STUDY_ENV in kwargs["runtime_env"]["env_vars"]
        return "raysubmit_1"


NO_AGENT = f"Request failed with status code 500: {jobs.NO_AGENT_YET}, please try again later.."


def test_a_job_server_without_its_agent_yet_is_asked_again() -> None:
    client, slept = FakeClient([NO_AGENT, NO_AGENT]), []
    assert jobs.submit_study_job(client, load_study(STUDY), sleep=slept.append) == "raysubmit_1"
    assert client.calls == 3 and slept == [1.0, 1.0]


def test_the_wait_for_the_agent_ends_and_other_errors_are_not_retried() -> None:
    client = FakeClient([NO_AGENT] * 5)
    with pytest.raises(RuntimeError, match="No available agent"):
        jobs.submit_study_job(client, load_study(STUDY), agent_wait_s=0.0, sleep=lambda s: None)
    assert client.calls == 1
    other = FakeClient(["Request failed with status code 400: bad runtime_env"])
    with pytest.raises(RuntimeError, match="bad runtime_env"):
        jobs.submit_study_job(other, load_study(STUDY), sleep=lambda s: None)
    assert other.calls == 1


def test_submit_reports_a_refusal_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray.job_submission

    client = FakeClient(["Request failed with status code 400: bad runtime_env"])
    monkeypatch.setattr(ray.job_submission, "JobSubmissionClient", lambda address: client)
    result = runner.invoke(app, ["submit", str(STUDY), "--address", "http://head:8265"])
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "--address http://head:8265: the Ray job server did not take the study" in lines[0]
    assert "bad runtime_env" in lines[0]
