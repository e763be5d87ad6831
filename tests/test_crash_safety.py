"""Crash safety of the study runner, each fault reproduced at its injected point (:mod:`hpo.faults`), not
after a sleep: a real ``agvp-hpo run`` / ``resume`` process signals itself exactly inside the window, then the
folder is checked with plain pandas, our reader and ``hpo.study.check``. The seeded, many-round version of
these is ``benchmarks/fault_injection.py``."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from hpo.cli import app
from hpo.faults import FAULT_ENV, parse_fault
from hpo.session.driver import StudyDriver, backup_file, load_state, replayed_state
from hpo.study import parse_study
from hpo.study.build import core_from_spec
from hpo.study.check import check_study
from hpo.study.folder import StudyFolder
from hpo.study.lock import StudyLock

runner = CliRunner()


def _study(root: Path, name: str = "crash", **changes: Any) -> Path:
    raw: dict[str, Any] = {
        "name": name,
        "space": {"x": {"uniform": [0.0, 1.0]}},
        "fidelity": {"min": 1, "max": 3, "eta": 3},
        "scheduler": "asha",
        "budget": {"max_trials": 4},
        "execution": {"cpus": 1, "max_concurrent": 1},
        "trainer": {"name": "synthetic"},
        "storage": {"root": str(root / "results")},
    }
    raw.update(changes)
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _cli(args: list[str], cwd: Path, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop(FAULT_ENV, None)
    if fault:
        env[FAULT_ENV] = fault
    process = subprocess.Popen(
        [sys.executable, "-m", "hpo.cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    out, err = process.communicate(timeout=240)
    with contextlib.suppress(ProcessLookupError):  # the Ray of a killed driver dies with its group
        os.killpg(process.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def _consistent(folder: StudyFolder) -> pd.DataFrame:
    rows = folder.store.read()
    assert len(pd.read_parquet(folder.store.results_dir)) == len(rows)  # what a user reads
    reports = rows[rows["status"] != "failed"]
    assert not reports.duplicated(["trial_id", "resource"]).any()
    problems = [p for p in check_study(folder) if not p.warning]
    assert not problems, [str(p) for p in problems]
    return rows


def test_fault_spec_is_validated() -> None:
    assert parse_fault("part-written:3:TERM").nth == 3
    for text in ("nowhere:1", "part-written:x", "part-written:0", "part-written:1:HUP"):
        with pytest.raises(ValueError, match=FAULT_ENV):
            parse_fault(text)


def test_sigterm_inside_a_flush_stores_the_rows_once_and_stops_resumably(short_tmp: Path) -> None:
    # Before: SystemExit landed between writing the part and forgetting its rows, the exit handler wrote
    # them again (duplicates for good) and the study was recorded failed.
    spec = _study(short_tmp)
    killed = _cli(["run", str(spec)], short_tmp, fault="part-written:1:TERM")
    assert killed.returncode == 143, killed.stderr[-2000:]
    assert "agvp-hpo resume" in killed.stdout
    folder = StudyFolder.of(short_tmp / "results", "crash")
    metadata = folder.store.read_metadata()
    assert (metadata["status"], metadata["reason"]) == ("stopped", "interrupted")
    _consistent(folder)
    resumed = _cli(["resume", str(folder.path)], short_tmp)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert folder.store.read_metadata()["status"] == "finished"
    _consistent(folder)


def test_killed_before_the_study_exists_runs_again_and_resume_says_why(short_tmp: Path) -> None:
    # Before: resume printed a 44-line DriverError traceback, run refused ("already exists"), status said
    # unknown; only deleting the folder recovered.
    spec = _study(short_tmp)
    assert _cli(["run", str(spec)], short_tmp, fault="folder-created:1:KILL").returncode == -signal.SIGKILL
    folder = StudyFolder.of(short_tmp / "results", "crash")
    assert not folder.exists()  # no study.json: not a study yet
    resumed = runner.invoke(app, ["resume", str(folder.path)])
    assert resumed.exit_code == 2 and "Traceback" not in resumed.output
    assert "agvp-hpo run" in resumed.output and len(resumed.output.strip().splitlines()) <= 2
    again = _cli(["run", str(spec)], short_tmp)
    assert again.returncode == 0, again.stderr[-2000:]
    _consistent(folder)


def test_killed_while_finishing_still_gets_best_yaml(short_tmp: Path) -> None:
    # Before: killed after "finished" was written but before best.yaml: best.yaml missing for good.
    spec = _study(short_tmp)
    assert _cli(["run", str(spec)], short_tmp, fault="finishing:1:KILL").returncode == -signal.SIGKILL
    folder = StudyFolder.of(short_tmp / "results", "crash")
    assert folder.best_file.is_file()  # written before the final status
    assert folder.store.read_metadata()["status"] == "running"
    assert _cli(["resume", str(folder.path)], short_tmp).returncode == 0
    assert folder.store.read_metadata()["status"] == "finished" and folder.best_file.is_file()
    _consistent(folder)


def test_killed_inside_the_end_compaction_reads_right_with_plain_pandas(short_tmp: Path) -> None:
    # Before: the compacted file and the parts it covered both remained: pd.read_parquet(results) read
    # every row twice, for good.
    spec = _study(short_tmp)
    assert _cli(["run", str(spec)], short_tmp, fault="compaction:1:KILL").returncode == -signal.SIGKILL
    folder = StudyFolder.of(short_tmp / "results", "crash")
    rows = _consistent(folder)
    assert len(rows) > 0
    assert _cli(["resume", str(folder.path)], short_tmp).returncode == 0
    assert len(_consistent(folder)) == len(rows)


def test_a_second_driver_of_a_study_is_refused(short_tmp: Path) -> None:
    # Before: two `resume` of one study both ran: duplicate rows, healthy trials failed.
    spec = _study(short_tmp)
    assert _cli(["run", str(spec)], short_tmp, fault="state-written:12:KILL").returncode == -signal.SIGKILL
    folder = StudyFolder.of(short_tmp / "results", "crash")
    with StudyLock(folder.path):  # a driver holds the study
        second = _cli(["resume", str(folder.path)], short_tmp)
        assert second.returncode == 2
        assert second.stderr.strip().startswith("error: study 'crash' is already running")
        assert "Traceback" not in second.stderr
        stop = runner.invoke(app, ["stop", str(folder.path)])
        assert stop.exit_code == 0 and folder.stop_file.is_file()
    folder.stop_file.unlink()
    not_running = runner.invoke(app, ["stop", str(folder.path)])
    assert not_running.exit_code == 2 and "not running" in not_running.output
    assert _cli(["resume", str(folder.path)], short_tmp).returncode == 0
    _consistent(folder)


def test_a_deleted_part_is_noticed_and_the_loss_can_be_recorded(short_tmp: Path) -> None:
    # Before: resume reported "finished" and the rows were silently gone.
    spec = _study(short_tmp)
    assert _cli(["run", str(spec)], short_tmp, fault="state-written:14:KILL").returncode == -signal.SIGKILL
    folder = StudyFolder.of(short_tmp / "results", "crash")
    first = sorted(folder.store.results_dir.glob("part-*.parquet"))[0]
    first.unlink()
    refused = _cli(["resume", str(folder.path)], short_tmp)
    assert refused.returncode == 2 and f"{first.name} missing" in refused.stderr
    check = runner.invoke(app, ["check", str(folder.path)])
    assert check.exit_code == 1 and "rows are lost" in check.output
    repaired = runner.invoke(app, ["check", "--repair", str(folder.path)])
    assert repaired.exit_code == 0 and "recorded the loss" in repaired.output
    assert _cli(["resume", str(folder.path)], short_tmp).returncode == 0
    assert folder.store.read_metadata()["status"] == "finished"


def _driver(root: Path) -> StudyDriver:
    spec = parse_study(yaml.safe_load(_study(root).read_text()))
    folder = StudyFolder.of(spec.storage.root, spec.name)
    folder.path.mkdir(parents=True, exist_ok=True)
    return StudyDriver(spec, folder, core_from_spec(spec), flush_seconds=0.0)


def test_released_checkpoints_are_deleted_only_after_the_state_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: the checkpoints went first; a kill before the state write left a state that resumed the trial
    # from a deleted checkpoint (recorded failed instead of stopped).
    from hpo.session import driver as driver_module

    driver = _driver(tmp_path)
    job, _ = driver.next_job()  # type: ignore[misc]
    checkpoint = driver.folder.trial_dir(job.trial_id) / "epoch-0001.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_text("weights")

    def killed(point: str) -> None:
        if point == "released":
            raise SystemExit("killed between the state write and the deletion")

    monkeypatch.setattr(driver_module, "fault_point", killed)
    with pytest.raises(SystemExit):
        driver.fail(job.trial_id, "crashed")
    state = replayed_state(driver.folder, load_state(driver.folder), spec=driver.spec)  # with its log
    assert dict(state["core"]["trials"])[0]["status"] == "failed"  # the state says released ...
    assert checkpoint.is_file()  # ... before the files go
    monkeypatch.setattr(driver_module, "fault_point", lambda point: None)
    resumed = _driver(tmp_path)
    resumed.restore(load_state(resumed.folder))
    assert not checkpoint.parent.exists() and resumed.relaunch == []  # deleted on resume, not relaunched


def test_a_damaged_state_file_resumes_from_its_backup(tmp_path: Path) -> None:
    # Before: a truncated state.json left no way to resume.
    driver = _driver(tmp_path)
    driver.next_job()
    text = driver.folder.state_file.read_text()
    driver.folder.state_file.write_text(text[: len(text) // 2])
    state = load_state(driver.folder)
    assert state.pop("events") == [] and state == json.loads(backup_file(driver.folder).read_text())
    from hpo.study.check import _states

    _, problems = _states(driver.folder)
    assert [p.kind for p in problems] == ["state-unreadable"] and problems[0].repairable


def test_check_reports_in_plain_words_and_repairs_what_the_rows_rebuild(tmp_path: Path) -> None:
    from service_store import write_study

    folder = write_study(tmp_path, "done", scheduler="hyperband")  # synchronous rungs stop their losers
    assert runner.invoke(app, ["check", str(folder.path)]).exit_code == 1  # no best.yaml: written by hand
    state = replayed_state(folder, load_state(folder))
    stopped = next(t for t, raw in state["core"]["trials"] if raw["status"] == "stopped")
    folder.trial_dir(stopped).mkdir(parents=True)  # checkpoints left behind by a stopped trial
    result = runner.invoke(app, ["check", str(folder.path)])
    assert result.exit_code == 1
    assert "best.yaml is missing" in result.output and f"trial {stopped} is stopped but" in result.output
    repaired = runner.invoke(app, ["check", "--repair", str(folder.path)])
    assert repaired.exit_code == 0, repaired.output
    assert folder.best_file.is_file() and not folder.trial_dir(stopped).exists()
    assert "consistent" in runner.invoke(app, ["check", str(folder.path)]).output
