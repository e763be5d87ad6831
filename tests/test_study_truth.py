"""Status that tells the truth: failed studies say so (and why), stopped ones list nothing as running, a NaN
objective fails its trial, inputs that cannot work are one line before anything is written, progress
reaches a log without a terminal, and the demo's results are where the CLI looks by default."""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from hpo.cli import app
from hpo.cli import study as study_cli
from hpo.schedulers.base import Decision
from hpo.session.driver import StudyDriver
from hpo.study import parse_study
from hpo.study.analysis import failures, trial_table
from hpo.study.build import core_from_spec
from hpo.study.folder import StudyFolder
from service.api import ServiceSettings, create_app

runner = CliRunner()


@pytest.fixture
def short_tmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="agvp-", dir="/tmp"))  # Ray's socket paths must stay short
    monkeypatch.chdir(folder)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _study(root: Path, name: str, space: dict[str, Any], **changes: Any) -> Path:
    raw: dict[str, Any] = {
        "name": name,
        "space": space,
        "fidelity": {"min": 1, "max": 3, "eta": 3},
        "scheduler": "asha",
        "budget": {"max_trials": 4},
        "execution": {"cpus": 2},
        "trainer": {"name": "synthetic"},
        "storage": {"root": "results"},
        **changes,
    }
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _rows(statuses: list[tuple[int, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "trial_id": t,
                "status": s,
                "resource": i + 1,
                "value": 0.5,
                "bracket": 0,
                "config": "{}",
                "error": e,
            }
            for i, (t, s, e) in enumerate(statuses)
        ]
    )


def test_a_study_no_driver_runs_lists_no_trial_as_running() -> None:
    rows = _rows([(0, "running", ""), (1, "paused", ""), (2, "failed", "boom")])
    assert list(trial_table(rows)["status"]) == ["running", "paused", "failed"]
    assert list(trial_table(rows, live=False)["status"]) == ["paused", "paused", "failed"]
    assert list(trial_table(rows, live=False, finished=True)["status"]) == ["stopped", "stopped", "failed"]


def test_failures_count_trials_and_keep_the_first_distinct_messages() -> None:
    rows = _rows([(0, "failed", "A"), (1, "failed", "B"), (2, "failed", "A"), (3, "completed", "")])
    assert failures(rows) == {
        "count": 3,
        "errors": [{"message": "A", "trials": 2}, {"message": "B", "trials": 1}],
    }
    assert failures(rows.iloc[3:]) == {"count": 0, "errors": []}


def test_a_nan_objective_fails_its_trial(tmp_path: Path) -> None:
    spec = parse_study(yaml.safe_load(_study(tmp_path, "nan", {"x": {"uniform": [0, 1]}}).read_text()))
    folder = StudyFolder.of(tmp_path / "results", "nan")
    folder.path.mkdir(parents=True)
    driver = StudyDriver(spec, folder, core_from_spec(spec), flush_seconds=0.0)
    job, _ = driver.next_job()  # type: ignore[misc]
    decision = driver.report(job.trial_id, {"epoch": 1, "val_map": math.nan, "checkpoint": ""})
    assert decision is Decision.STOP
    row = folder.store.read().iloc[-1]
    assert (row["status"], row["error"]) == ("failed", "the objective val_map is nan at epoch 1")


def test_a_study_whose_every_trial_failed_is_failed_and_says_why(short_tmp: Path) -> None:
    spec = _study(short_tmp, "doomed", {"x": {"uniform": [0, 1]}, "crash": True})
    result = runner.invoke(app, ["run", str(spec)])
    assert result.exit_code == 1, result.output
    assert "4 trial(s) failed" in result.output and "synthetic crash at epoch 2" in result.output
    status = runner.invoke(app, ["status", "doomed"])  # the default root: where the study went
    assert status.exit_code == 0 and "doomed: failed" in status.output
    assert "every trial failed: " in status.output
    client = TestClient(create_app(ServiceSettings(store=short_tmp / "results")))
    detail = client.get("/api/studies/doomed").json()
    assert detail["status"] == "failed" and detail["failures"]["count"] == 4
    assert client.get("/api/studies/doomed/failures").json()["errors"][0]["message"].endswith("epoch 2")


def test_some_failed_trials_are_counted_and_progress_reaches_the_log(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(study_cli, "LOG_EVERY_S", 0.0)
    spec = _study(short_tmp, "mixed", {"x": {"uniform": [0, 1]}, "crash": {"choice": [True, False]}})
    result = runner.invoke(app, ["run", str(spec)])  # no terminal here: progress lines, not a live view
    assert result.exit_code == 0, result.output
    assert "mixed: 4 trials (" in result.output and "best val_map" in result.output
    rows = StudyFolder.of(short_tmp / "results", "mixed").store.read()
    failed = failures(rows)["count"]
    assert 0 < failed < 4
    assert f"{failed} trial(s) failed" in runner.invoke(app, ["status", "mixed"]).output


def test_run_refuses_a_storage_root_that_is_a_file(short_tmp: Path) -> None:
    (short_tmp / "results").write_text("not a folder")
    result = runner.invoke(app, ["run", str(_study(short_tmp, "s", {"x": {"uniform": [0, 1]}}))])
    assert result.exit_code == 2 and "storage.root: results is a file" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("model.weights=/nowhere/ViT-B-16.pt", "model.weights: /nowhere/ViT-B-16.pt does not exist"),
        ("data.root=/nowhere", "data.root: /nowhere is not a folder"),
    ],
)
def test_train_with_missing_inputs_is_one_line_and_writes_nothing(
    tmp_path: Path, small_root: Path, setting: str, message: str
) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(f"preset: tiny-cpu\ndata:\n  root: {small_root}\n")
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", str(config), "--out", str(out), "--set", setting])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("name", ["mfho.yaml", "asha.yaml", "hyperband.yaml", "demo.yaml"])
def test_every_searched_key_of_a_bundled_study_is_the_value_its_trial_trains_with(name: str) -> None:
    # Before: data.transform.size was searched by mfho.yaml but the preset's 256x128 always won.
    import numpy as np

    from hpo.study import load_study
    from hpo.study.build import trainer_settings
    from trainers.protocol import get_trainer

    spec = load_study(name)
    trainer = get_trainer(spec.trainer.name)
    rng = np.random.default_rng(0)
    for _ in range(20):
        params = spec.space.sample(rng)
        resolved = trainer.resolved_config(trainer_settings(spec), params)
        for key, value in params.items():
            if key == "data.transform.size":
                got = f"{resolved['data.transform.height']}x{resolved['data.transform.width']}"
            else:
                got = resolved[key]
            assert got == value or (isinstance(got, list) and list(value) == got), (key, value, got)


def test_resume_with_unreadable_state_names_the_files(tmp_path: Path) -> None:
    from service_store import write_study

    from hpo.session.driver import backup_file

    folder = write_study(tmp_path, "broken", status="stopped")
    folder.state_file.write_text("{not json")
    backup_file(folder).write_text("")
    result = runner.invoke(app, ["resume", str(folder.path)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert str(folder.path) in lines[0] and "state.json is unreadable" in lines[0], lines[0]
