"""The driver's event log (issue 15 part 5): one appended line per decision, full snapshots only as often as
the log grows as large as the last one, and a resume that replays the log through the same core calls to
exactly the state an uninterrupted driver holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from service_store import drive_serially

from hpo.session import driver as driver_module
from hpo.session.driver import StateError, StudyDriver, events_file, load_state, replayed_state
from hpo.session.statelog import read_events
from hpo.study import parse_study
from hpo.study.build import core_from_spec
from hpo.study.folder import StudyFolder

SCHEDULERS: list[Any] = [
    "asha",
    "hyperband",
    "mfho",
    "mfho-hedge",
    "fifo",
    {"kind": "asha", "mode": "stopping"},
]


def _spec(root: Path, scheduler: Any = "asha", searcher: str = "random", trials: int = 12) -> Any:
    return parse_study(
        {
            "name": "log",
            "space": {"x": {"uniform": [0, 1]}, "y": {"choice": ["a", "b", "c"]}},
            "fidelity": {"min": 1, "max": 9, "eta": 3},
            "scheduler": scheduler,
            "searcher": searcher,
            "budget": {"max_trials": trials},
            "trainer": {"name": "synthetic"},
            "storage": {"root": str(root)},
        }
    )


def _driver(root: Path, flush_seconds: float = 0.0, **changes: Any) -> StudyDriver:
    spec = _spec(root, **changes)
    folder = StudyFolder.of(root, spec.name)
    folder.path.mkdir(parents=True, exist_ok=True)
    return StudyDriver(spec, folder, core_from_spec(spec), flush_seconds=flush_seconds)


def _value(trial_id: int, epoch: int) -> float:
    return ((trial_id * 7919) % 97) / 97 * (1 - 0.5**epoch)


def _drive(driver: StudyDriver, reports: int | None = None) -> int:
    """Run jobs one at a time, every epoch reported; stop after ``reports`` reports (None: to the end)."""
    return drive_serially(
        driver,
        lambda trial_id, config, epoch: {"val_map": _value(trial_id, epoch)},
        reports=reports,
        node="n",
        checkpoint=lambda trial_id, epoch: str(driver.folder.trial_dir(trial_id) / f"epoch-{epoch:04d}.pt"),
    )


def _comparable(state: dict[str, Any]) -> dict[str, Any]:
    """What must agree between a replayed and a live state (not the clock, sequence or session)."""
    return {key: state[key] for key in ("core", "trials", "total_resource", "best")} | {
        "journal_rows": len(state["journal"]["rows"]),
        "journal_part": state["journal"]["part"],
    }


@pytest.mark.parametrize("scheduler", SCHEDULERS, ids=str)
def test_replaying_the_log_gives_the_live_state(tmp_path: Path, scheduler: Any) -> None:
    driver = _driver(tmp_path, scheduler=scheduler, searcher="mf-tpe")
    driver.snapshot()
    _drive(driver, reports=25)
    state = load_state(driver.folder)
    assert state["events"], "the decisions after the snapshot are in the log, not a new snapshot"
    assert _comparable(replayed_state(driver.folder, state, spec=driver.spec)) == _comparable(
        driver.state_dict()
    )


@pytest.mark.parametrize("scheduler", SCHEDULERS, ids=str)
def test_a_suggestion_of_nothing_changes_no_state(tmp_path: Path, scheduler: Any) -> None:
    """The log records only jobs the core issued, so asking a core that has nothing to give must leave its
    state as it was (else a replay would diverge)."""
    driver = _driver(tmp_path, scheduler=scheduler, searcher="mf-tpe", trials=4)
    issued = []
    while (job := driver.core.suggest()) is not None:  # take every job there is, report none of them
        issued.append(job)
    before = json.dumps(driver.core.state_dict(), sort_keys=True)
    assert driver.core.suggest() is None
    assert json.dumps(driver.core.state_dict(), sort_keys=True) == before


def test_a_resumed_study_ends_as_an_uninterrupted_one(tmp_path: Path) -> None:
    whole = _driver(tmp_path / "whole")
    _drive(whole)
    whole.maybe_flush(force=True)

    first = _driver(tmp_path / "cut")
    _drive(first, reports=17)  # killed here: nothing after the last logged event
    resumed = StudyDriver(first.spec, first.folder, core_from_spec(first.spec), flush_seconds=0.0)
    resumed.restore(load_state(first.folder))
    _drive(resumed)
    resumed.maybe_flush(force=True)

    def decisions(driver: StudyDriver) -> list[tuple[int, int, str]]:
        rows = driver.folder.store.read()
        return sorted(zip(rows["trial_id"], rows["resource"], rows["decision"], strict=True))

    assert decisions(resumed) == decisions(whole)
    for key in ("core", "total_resource", "best"):  # not the checkpoints: the two live in other folders
        assert resumed.state_dict()[key] == whole.state_dict()[key]


def test_snapshots_come_as_often_as_the_log_grows_as_large(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(driver_module, "MIN_LOG_BYTES", 0)
    driver = _driver(tmp_path, trials=60)
    written: list[int] = []
    original = driver.snapshot

    def counted() -> None:
        original()
        written.append(driver._snapshot_bytes)

    driver.snapshot = counted  # type: ignore[method-assign]
    reports = _drive(driver)
    log = events_file(driver.folder).stat().st_size
    assert 1 < len(written) < reports / 5, "a snapshot now and then, not one per decision"
    assert log <= 2 * written[-1] + 4096, "the log never outgrows the snapshot by much"


def test_a_last_line_cut_short_is_dropped_and_a_damaged_one_before_it_is_an_error(tmp_path: Path) -> None:
    driver = _driver(tmp_path, flush_seconds=1e9)  # the last event is a report, not a stored part
    driver.snapshot()
    _drive(driver, reports=6)
    path = events_file(driver.folder)
    lines = path.read_bytes().splitlines(keepends=True)
    events = len(lines) - 1
    assert json.loads(lines[-1])["e"] == "report"
    path.write_bytes(b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # killed inside the write
    assert len(load_state(driver.folder)["events"]) == events - 1
    resumed = StudyDriver(driver.spec, driver.folder, core_from_spec(driver.spec), flush_seconds=0.0)
    resumed.restore(load_state(driver.folder))
    cut = json.loads(lines[-1])
    assert [job.trial_id for job in resumed.relaunch] == [cut["trial"]]  # its epoch is trained again
    assert len(resumed.folder.store.read()) == 5  # the five logged reports, once each

    driver = _driver(tmp_path / "damaged")
    driver.snapshot()
    _drive(driver, reports=6)
    path = events_file(driver.folder)
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2] = b"{not json\n"
    path.write_bytes(b"".join(lines))
    with pytest.raises(StateError, match=r"state\.events\.jsonl: line 3 is damaged"):
        load_state(driver.folder)


def test_a_log_older_than_the_snapshot_is_ignored(tmp_path: Path) -> None:
    """A kill between writing a snapshot and starting its log leaves the previous log: every event in it is
    in the snapshot already, so it must not be applied twice."""
    driver = _driver(tmp_path)
    driver.snapshot()
    _drive(driver, reports=5)
    old_log = events_file(driver.folder).read_bytes()
    driver.snapshot()
    events_file(driver.folder).write_bytes(old_log)  # as if the new log had never been started
    state = load_state(driver.folder)
    assert state["events"] == [] and read_events(events_file(driver.folder), state["sequence"] - 1)
    assert _comparable(replayed_state(driver.folder, state, spec=driver.spec)) == _comparable(
        driver.state_dict()
    )


def test_a_replay_that_decides_otherwise_is_an_error_not_a_silent_divergence(tmp_path: Path) -> None:
    driver = _driver(tmp_path)
    driver.snapshot()
    _drive(driver, reports=6)
    path = events_file(driver.folder)
    lines = path.read_bytes().splitlines()
    events = [json.loads(line) for line in lines[1:]]
    for event in events:
        if event["e"] == "report":
            event["decision"] = "continue" if event["decision"] != "continue" else "stop"
            break
    path.write_bytes(b"\n".join([lines[0], *(json.dumps(e).encode() for e in events)]) + b"\n")
    with pytest.raises(StateError, match="on replay, the log says"):
        replayed_state(driver.folder, load_state(driver.folder), spec=driver.spec)
