"""The study driver without Ray: rows, the journal, state snapshots and what a resume restores."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from hpo.results import ROW_COLUMNS, TrialStatus
from hpo.schedulers.base import Decision, JobKind
from hpo.session.driver import StudyDriver, load_state, replayed_state
from hpo.study import parse_study
from hpo.study.build import core_from_spec
from hpo.study.folder import StudyFolder


def _spec(root: Path, **changes: Any) -> Any:
    raw: dict[str, Any] = {
        "name": "unit",
        "space": {"x": {"uniform": [0, 1]}},
        "fidelity": {"min": 1, "max": 9, "eta": 3},
        "scheduler": "asha",
        "budget": {"max_trials": 6},
        "trainer": {"name": "synthetic"},
        "storage": {"root": str(root)},
    }
    raw.update(changes)
    return parse_study(raw)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _driver(tmp_path: Path, clock: Clock, **changes: Any) -> StudyDriver:
    spec = _spec(tmp_path, **changes)
    folder = StudyFolder.of(tmp_path, spec.name)
    folder.path.mkdir(parents=True, exist_ok=True)
    return StudyDriver(spec, folder, core_from_spec(spec), clock=clock)


def _report(driver: StudyDriver, trial_id: int, epoch: int, value: float) -> Decision:
    checkpoint = driver.folder.trial_dir(trial_id) / f"epoch-{epoch:04d}.pt"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.write_text("weights")
    return driver.report(
        trial_id, {"epoch": epoch, "val_map": value, "checkpoint": str(checkpoint)}, node="n1"
    )


def test_rows_carry_every_column_and_metric(tmp_path: Path) -> None:
    clock = Clock()
    driver = _driver(tmp_path, clock)
    job, resume_from = driver.next_job()  # type: ignore[misc]
    assert (job.kind, job.start, job.resource, resume_from) == (JobKind.START, 0, 1, None)
    clock.now += 5
    checkpoint = driver.folder.trial_dir(0) / "epoch-0001.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_text("w")
    decision = driver.report(
        0,
        {"epoch": 1, "val_map": 0.25, "val_r1": 0.5, "checkpoint": str(checkpoint), "node": "n1"},
        node="n1",
    )
    assert decision is Decision.PAUSE
    driver.maybe_flush(force=True)
    frame = driver.folder.store.read()
    assert len(frame) == 1
    row = frame.iloc[0]
    for column in ROW_COLUMNS:
        assert column in frame.columns
    assert (row["resource"], row["value"], row["decision"], row["status"]) == (1, 0.25, "pause", "paused")
    assert row["metric_val_r1"] == 0.5 and row["node"] == "n1" and row["checkpoint"] == str(checkpoint)
    assert row["time"] == 5.0 and row["param_x"] == json.loads(row["config"])["x"]


def test_missing_objective_fails_the_trial(tmp_path: Path) -> None:
    driver = _driver(tmp_path, Clock())
    driver.next_job()
    assert driver.report(0, {"epoch": 1, "loss": 0.3}, node="") is Decision.STOP
    assert driver.core.status(0) is TrialStatus.FAILED
    assert "reported no 'val_map'" in driver.trials[0].error
    driver.maybe_flush(force=True)
    row = driver.folder.store.read().iloc[-1]
    assert row["status"] == "failed" and math.isnan(row["value"]) and "val_map" in row["error"]


def test_journal_survives_a_crash_before_the_store_write(tmp_path: Path) -> None:
    """Rows reported but not yet in the store live in state.json; a resume writes them exactly once."""
    clock = Clock()
    driver = _driver(tmp_path, clock)
    for _ in range(2):
        driver.next_job()
    _report(driver, 0, 1, 0.3)
    clock.now += 5
    driver.maybe_flush()  # first part written
    _report(driver, 1, 1, 0.4)  # journaled only (flush_seconds not elapsed)
    assert len(driver.folder.store.read()) == 1
    state = load_state(driver.folder)
    journal = replayed_state(driver.folder, state, spec=driver.spec)["journal"]  # from the event log
    assert len(journal["rows"]) == 1

    resumed = _driver(tmp_path, Clock())
    resumed.restore(state)
    rows = resumed.folder.store.read()
    assert sorted(rows["trial_id"]) == [0, 1]
    # A crash after the part was written but before state.json was rewritten: no second copy.
    again = _driver(tmp_path, Clock())
    again.restore(state)
    assert len(again.folder.store.read()) == 2


def test_restore_relaunches_running_jobs_from_their_checkpoint(tmp_path: Path) -> None:
    clock = Clock()
    driver = _driver(tmp_path, clock, scheduler="fifo")
    driver.next_job()
    driver.next_job()
    assert _report(driver, 0, 1, 0.2) is Decision.CONTINUE
    assert _report(driver, 0, 2, 0.3) is Decision.CONTINUE
    state = load_state(driver.folder)

    resumed = _driver(tmp_path, Clock(), scheduler="fifo")
    resumed.restore(state)
    assert resumed.session == 2 and resumed.total_resource == 2
    first, from_checkpoint = resumed.next_job()  # type: ignore[misc]
    assert (first.trial_id, first.kind, first.start, first.resource) == (0, JobKind.RESUME, 2, 9)
    assert from_checkpoint is not None and from_checkpoint.endswith("epoch-0002.pt")
    second, none = resumed.next_job()  # type: ignore[misc]
    assert (second.trial_id, second.kind, second.start, none) == (1, JobKind.START, 0, None)
    assert _report(resumed, 0, 3, 0.35) is Decision.CONTINUE  # reports continue at the exact epoch


def test_stopped_and_failed_trials_release_their_checkpoints(tmp_path: Path) -> None:
    driver = _driver(tmp_path, Clock(), scheduler={"kind": "asha", "mode": "stopping"})
    for _ in range(2):
        driver.next_job()
    assert _report(driver, 0, 1, 0.9) is Decision.CONTINUE  # the first at a rung always continues
    assert _report(driver, 1, 1, 0.1) is Decision.STOP
    assert not driver.folder.trial_dir(1).exists()
    assert driver.folder.trial_dir(0).exists()
    driver.fail(0, "Traceback ...\nRuntimeError: boom\n")
    assert not driver.folder.trial_dir(0).exists()
    assert driver.trials[0].error == "RuntimeError: boom"
    assert driver.core.status(0) is TrialStatus.FAILED
    with pytest.raises(RuntimeError, match="no job of it is running"):
        driver.report(0, {"epoch": 2, "val_map": 0.5}, node="")


def test_best_prefers_the_highest_fidelity(tmp_path: Path) -> None:
    driver = _driver(tmp_path, Clock(), scheduler="fifo", budget={"max_trials": 2})
    driver.next_job()
    driver.next_job()
    _report(driver, 0, 1, 0.9)
    _report(driver, 1, 1, 0.5)
    assert driver.best == (0.9, 0, 1)
    _report(driver, 1, 2, 0.6)
    assert driver.best == (0.6, 1, 2)  # more epochs win over a higher low-fidelity value
    summary = driver.summary()
    assert summary.counts["running"] == 2 and summary.rungs[0] == (1, 2)
