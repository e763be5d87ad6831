"""Experiment tracking (hpo.tracking): each trial ONE MLflow run and ONE TensorBoard run, driven through a
StudyDriver / NativeRecorder without Ray, against a local MLflow file store and TensorBoard event files read
back with a small TFRecord reader (the `tensorboard` package is not installed here).

MLflow calls pinned here (mlflow/mlflow, mlflow/tracking/client.py: MlflowClient.create_run, log_batch,
set_terminated, update_run, search_runs, log_text; mlflow/environment_variables.py:
MLFLOW_ALLOW_FILE_STORE, which MLflow 3's FileStore.__init__ checks in mlflow/store/tracking/file_store.py).
"""

from __future__ import annotations

import logging
import math
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# before mlflow is imported: `import mlflow` starts its telemetry client, which writes ~/.config/mlflow
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
pytest.importorskip("mlflow")
pytest.importorskip("tensorboardX")

from mlflow.tracking import MlflowClient
from service_store import drive_serially
from tensorboardX.proto import event_pb2

from hpo.session.driver import StudyDriver, load_state
from hpo.session.lifecycle import create_study_folder, end_study, fail_study
from hpo.session.native import NativeRecorder
from hpo.session.recorder import StopReason
from hpo.study import parse_study
from hpo.study.build import core_from_spec
from hpo.study.folder import StudyFolder
from hpo.study.loader import StudyError, loads_study
from hpo.study.validate import check_tracking
from hpo.tracking import mlflow_runs


@pytest.fixture(autouse=True)
def _quiet_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """MLflow 3 wants MLFLOW_ALLOW_FILE_STORE for a file store; HOME under tmp_path: nothing goes to ~."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("DO_NOT_TRACK", "true")
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    yield home
    assert not any(home.iterdir()), f"tracking wrote into HOME: {sorted(home.iterdir())}"


def _raw(root: Path, *, tracking: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "trk",
        "space": {"x": {"uniform": [0, 1]}, "depth": {"choice": [1, 2, 3]}},
        "fidelity": {"min": 1, "max": 9, "eta": 3},
        "scheduler": "asha",
        "searcher": "random",
        "budget": {"max_trials": 6},
        "trainer": {"name": "synthetic"},
        "storage": {"root": str(root / "results")},
    }
    if tracking is not None:
        raw["tracking"] = tracking
    raw.update(changes)
    return raw


def _tracking(tmp_path: Path) -> dict[str, Any]:
    return {"mlflow": {"uri": f"file://{tmp_path}/mlruns"}, "tensorboard": {"dir": str(tmp_path / "tb")}}


def _driver(spec: Any, *, create: bool = True) -> StudyDriver:
    folder = StudyFolder.of(spec.storage.root, spec.name)
    driver = StudyDriver(spec, folder, core_from_spec(spec), flush_seconds=0.0)
    if create:
        create_study_folder(spec, folder, driver, sessions=0)
    return driver


def _value(trial_id: int, epoch: int) -> float:
    return round(0.1 * epoch + 0.01 * trial_id, 6)


def _drive(driver: StudyDriver, reports: int | None = None) -> int:
    """Run the driver's jobs serially with a synthetic curve; returns the reports made."""

    def checkpoint(trial_id: int, epoch: int) -> str:
        path = driver.folder.trial_dir(trial_id) / f"epoch-{epoch:04d}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("w")
        return str(path)

    return drive_serially(
        driver,
        lambda trial_id, config, epoch: {"val_map": _value(trial_id, epoch), "val_r1": 0.5 + 0.01 * epoch},
        reports=reports,
        node="n1",
        checkpoint=checkpoint,
    )


def _runs(tmp_path: Path, study: str = "trk") -> tuple[MlflowClient, list[Any]]:
    client = MlflowClient(tracking_uri=f"file://{tmp_path}/mlruns")
    experiment = client.get_experiment_by_name(study)
    assert experiment is not None
    return client, client.search_runs([experiment.experiment_id], max_results=1000)


def _by_trial(runs: list[Any]) -> dict[int, Any]:
    trials = [int(run.data.tags["agvp.trial_id"]) for run in runs]
    assert len(trials) == len(set(trials)), f"more than one run for a trial: {sorted(trials)}"
    return {int(run.data.tags["agvp.trial_id"]): run for run in runs}


# --- a minimal TensorBoard event file reader (TFRecord framing + tensorboardX's Event proto) -------------


def _events(run_dir: Path) -> list[Any]:
    events = []
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            offset += 12  # length, then its masked CRC
            event = event_pb2.Event()
            event.ParseFromString(data[offset : offset + length])
            offset += length + 4  # the record, then its masked CRC
            events.append(event)
    return events


def _scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    return [
        (event.step, value.simple_value)
        for event in _events(run_dir)
        for value in event.summary.value
        if value.tag == tag and value.HasField("simple_value")
    ]


def _plugin_values(run_dir: Path, plugin: str) -> list[Any]:
    return [
        (event.step, value)
        for event in _events(run_dir)
        for value in event.summary.value
        if value.metadata.plugin_data.plugin_name == plugin
    ]


# --- the tests ---------------------------------------------------------------------------------------------


def test_tracking_is_off_by_default(tmp_path: Path) -> None:
    spec = parse_study(_raw(tmp_path))
    assert spec.tracking.mlflow is None and spec.tracking.tensorboard is None
    driver = _driver(spec)
    assert not driver.tracking.enabled
    _drive(driver)
    end_study(spec, driver.folder, driver, StopReason.BUDGET, "done")
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "tb").exists()


@pytest.mark.parametrize(
    ("tracking", "expected"),
    [
        ({"mlflow": {"url": "x"}}, "tracking.mlflow"),
        ({"mlflow": {}}, "tracking.mlflow.uri"),
        ({"mlflow": {"uri": ""}}, "tracking.mlflow.uri"),
        ({"tensorboard": {"dir": " "}}, "tracking.tensorboard.dir"),
        ({"wandb": {"project": "p"}}, "tracking"),
    ],
)
def test_bad_tracking_sections_are_one_line_errors(
    tmp_path: Path, tracking: dict[str, Any], expected: str
) -> None:
    import yaml

    with pytest.raises(StudyError) as caught:
        loads_study(yaml.safe_dump(_raw(tmp_path, tracking=tracking)), source="study.yaml")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("study.yaml: ") and expected in message


def test_validation_names_the_missing_package_and_the_file_store_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = parse_study(_raw(tmp_path, tracking={"mlflow": {"uri": "mlruns"}}))
    check_tracking(spec, source="s.yaml")  # installed, and the file store is allowed (fixture)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")
    with pytest.raises(StudyError, match=r"tracking.mlflow.uri: 'mlruns' is a file store.*MLFLOW_ALLOW"):
        check_tracking(spec, source="s.yaml")
    check_tracking(parse_study(_raw(tmp_path, tracking={"mlflow": {"uri": "sqlite:///x.db"}})))
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name)
    )
    with pytest.raises(StudyError) as caught:
        check_tracking(spec, source="s.yaml")
    assert str(caught.value) == (
        "s.yaml: tracking.mlflow: needs the package mlflow-skinny: pip install 'agvp-hpo[tracking]' "
        "(or pip install mlflow-skinny)"
    )


def test_each_trial_is_one_mlflow_run_with_params_metrics_tags_and_the_best_config(tmp_path: Path) -> None:
    spec = parse_study(_raw(tmp_path, tracking=_tracking(tmp_path)))
    driver = _driver(spec)
    _drive(driver)
    assert end_study(spec, driver.folder, driver, StopReason.BUDGET, "done") == "finished"
    rows = driver.folder.store.read()
    client, runs = _runs(tmp_path)
    by_trial = _by_trial(runs)
    assert sorted(by_trial) == sorted(rows["trial_id"].unique()) == list(range(6))
    for trial_id, run in by_trial.items():
        mine = rows[rows["trial_id"] == trial_id]
        assert run.info.run_name == f"trial-{trial_id:05d}" and run.data.tags["agvp.study"] == "trk"
        config = driver.core.config(trial_id)
        assert run.data.params == {key: str(value) for key, value in config.items()}
        for name in ("val_map", "val_r1"):
            history = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, name)]
            assert sorted(history) == list(zip(mine["resource"], mine[f"metric_{name}"], strict=True))
        last = mine.iloc[-1]
        assert run.data.tags["agvp.decision"] == last["decision"]
        assert run.data.tags["agvp.rung"] == str(last["rung"])
        assert run.data.tags["agvp.bracket"] == str(last["bracket"])
        assert run.data.tags["agvp.node"] == "n1"
        assert run.data.tags["agvp.decisions"] == " ".join(
            f"{r}:{d}" for r, d in zip(mine["resource"], mine["decision"], strict=True)
        )
        assert run.info.status == "FINISHED"  # the study finished: paused trials never run again
        if last["status"] == "paused":
            assert run.data.tags["agvp.status"] == "stopped"
        else:
            assert run.data.tags["agvp.status"] == last["status"]
    best_trial = driver.best[1]  # type: ignore[index]
    best_run = by_trial[best_trial]
    assert best_run.data.tags.get("agvp.best") == "true"
    assert [a.path for a in client.list_artifacts(best_run.info.run_id)] == ["best.yaml"]
    text = Path(
        client.download_artifacts(best_run.info.run_id, "best.yaml", str(tmp_path / "dl"))
    ).read_text()
    assert text == driver.folder.best_file.read_text()
    assert all(not client.list_artifacts(r.info.run_id) for t, r in by_trial.items() if t != best_trial)


def test_tensorboard_run_per_trial_read_back(tmp_path: Path) -> None:
    spec = parse_study(_raw(tmp_path, tracking={"tensorboard": {"dir": str(tmp_path / "tb")}}))
    driver = _driver(spec)
    _drive(driver)
    end_study(spec, driver.folder, driver, StopReason.BUDGET, "done")
    rows = driver.folder.store.read()
    runs = sorted(p.name for p in (tmp_path / "tb" / "trk").iterdir())
    assert runs == [f"trial-{t:05d}" for t in range(6)]
    best_trial = driver.best[1]  # type: ignore[index]
    for trial_id in range(6):
        run_dir = tmp_path / "tb" / "trk" / f"trial-{trial_id:05d}"
        mine = rows[rows["trial_id"] == trial_id]
        expected = list(zip(mine["resource"], mine["metric_val_map"], strict=True))
        assert [(s, pytest.approx(v)) for s, v in _scalars(run_dir, "val_map")] == expected
        hparams = _plugin_values(run_dir, "hparams")
        assert len(hparams) == 3  # experiment, session start, session end infos: once
        assert any(b"depth" in v.metadata.plugin_data.content for _, v in hparams)
        texts = _plugin_values(run_dir, "text")
        decisions = [(s, v.tensor.string_val[0].decode()) for s, v in texts if v.tag.startswith("decision")]
        assert [s for s, _ in decisions] == list(mine["resource"])
        assert decisions[-1][1].startswith(f"{mine.iloc[-1]['decision']} at rung {mine.iloc[-1]['rung']}")
        best_texts = [v for _, v in texts if v.tag.startswith("best.yaml")]
        assert len(best_texts) == (1 if trial_id == best_trial else 0)


def test_a_resumed_study_continues_the_same_runs(tmp_path: Path) -> None:
    spec = parse_study(_raw(tmp_path, tracking=_tracking(tmp_path)))
    first = _driver(spec)
    _drive(first, reports=7)
    end_study(spec, first.folder, first, StopReason.REQUESTED, "stop requested")  # resumable
    _, runs = _runs(tmp_path)
    before = _by_trial(runs)
    assert {run.info.status for run in before.values() if run.data.tags["agvp.status"] != "stopped"} <= {
        "KILLED",
        "FINISHED",
    }
    assert any(run.info.status == "KILLED" for run in before.values())

    second = _driver(spec, create=False)
    second.restore(load_state(second.folder))
    _drive(second, reports=5)
    # killed now: no end of session, no end_tracking; a third driver resumes
    second.maybe_flush(force=True)
    sender = second.tracking.trackers[0]
    assert isinstance(sender, mlflow_runs.MlflowTracker)
    sender.drain(
        30.0
    )  # what the sender had taken reached MLflow (a kill -9 may lose that: rows are the truth)
    sender.discard()
    third = _driver(spec, create=False)
    third.restore(load_state(third.folder))
    _drive(third)
    end_study(spec, third.folder, third, StopReason.BUDGET, "done")

    rows = third.folder.store.read()
    client, runs = _runs(tmp_path)
    after = _by_trial(runs)  # one run per trial, never a second one
    assert sorted(after) == list(range(6))
    for trial_id, run in before.items():
        assert after[trial_id].info.run_id == run.info.run_id
    for trial_id, run in after.items():
        mine = rows[rows["trial_id"] == trial_id]
        history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "val_map"))
        assert history == list(zip(mine["resource"], mine["metric_val_map"], strict=True))
        assert run.info.status == "FINISHED"
        assert run.data.tags["agvp.decisions"].split() == [
            f"{r}:{d}" for r, d in zip(mine["resource"], mine["decision"], strict=True)
        ]
    # TensorBoard: the same run folders, more event files, every epoch once
    for trial_id in range(6):
        run_dir = tmp_path / "tb" / "trk" / f"trial-{trial_id:05d}"
        mine = rows[rows["trial_id"] == trial_id]
        assert sorted(s for s, _ in _scalars(run_dir, "val_map")) == sorted(mine["resource"])
        assert len(_plugin_values(run_dir, "hparams")) == 3
    assert sorted(p.name for p in (tmp_path / "tb" / "trk").iterdir()) == [f"trial-{t:05d}" for t in range(6)]


def test_failed_trial_run_is_failed_and_a_study_failure_kills_the_rest(tmp_path: Path) -> None:
    spec = parse_study(_raw(tmp_path, tracking={"mlflow": {"uri": f"file://{tmp_path}/mlruns"}}))
    driver = _driver(spec)
    job, _ = driver.next_job()  # type: ignore[misc]
    driver.fail(job.trial_id, "Traceback ...\nRuntimeError: CUDA out of memory")
    job2, _ = driver.next_job()  # type: ignore[misc]
    driver.report(job2.trial_id, {"epoch": 1, "val_map": 0.2}, node="n1")
    job3, _ = driver.next_job()  # type: ignore[misc]
    fail_study(driver.folder, driver, RuntimeError("boom"))
    _, runs = _runs(tmp_path)
    by_trial = _by_trial(runs)
    assert by_trial[job.trial_id].info.status == "FAILED"
    assert by_trial[job.trial_id].data.tags["agvp.error"] == "RuntimeError: CUDA out of memory"
    assert by_trial[job2.trial_id].info.status == "KILLED"  # paused; the study can resume
    assert job3.trial_id not in by_trial  # started, never reported: no run yet


def test_a_broken_tracking_uri_never_fails_the_study(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where MLflow wants its store")
    tracking = {"mlflow": {"uri": f"file://{blocker}/mlruns"}, "tensorboard": {"dir": str(tmp_path / "tb")}}
    spec = parse_study(_raw(tmp_path, tracking=tracking))
    plain = parse_study(_raw(tmp_path / "plain"))
    reference = _driver(plain)
    _drive(reference)
    end_study(plain, reference.folder, reference, StopReason.BUDGET, "done")

    driver = _driver(spec)
    with caplog.at_level(logging.WARNING, logger="hpo.tracking"):
        _drive(driver)
        assert end_study(spec, driver.folder, driver, StopReason.BUDGET, "done") == "finished"
    warnings = [r for r in caplog.records if r.name == "hpo.tracking"]
    assert len(warnings) == 1 and warnings[0].getMessage().startswith("MLflow tracking failed")
    columns = ["trial_id", "resource", "value", "decision", "status"]
    assert driver.folder.store.read()[columns].equals(reference.folder.store.read()[columns])
    assert len(list((tmp_path / "tb" / "trk").iterdir())) == 6  # TensorBoard went on


def test_reports_are_batched_per_flush(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    for name in ("log_batch", "log_metric", "set_tag", "log_param"):
        original = getattr(MlflowClient, name)

        def spy(self: Any, *args: Any, _name: str = name, _original: Any = original, **kwargs: Any) -> Any:
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(MlflowClient, name, spy)
    spec = parse_study(_raw(tmp_path, tracking={"mlflow": {"uri": f"file://{tmp_path}/mlruns"}}))
    folder = StudyFolder.of(spec.storage.root, spec.name)
    driver = StudyDriver(spec, folder, core_from_spec(spec), flush_seconds=3600.0)
    create_study_folder(spec, folder, driver, sessions=0)
    reports = _drive(driver)
    assert calls == [] and reports > 10  # nothing reaches MLflow between flushes
    driver.maybe_flush(force=True)
    driver.tracking.trackers[0].drain(30.0)  # type: ignore[attr-defined]
    trials = driver.core.num_trials
    # one batch of params and one of metrics+tags per run, not one call per metric
    assert calls.count("log_batch") == 2 * trials and "log_metric" not in calls


def test_ray_native_scheduler_rows_are_tracked_per_trial(tmp_path: Path) -> None:
    raw = _raw(tmp_path, tracking=_tracking(tmp_path), scheduler="ray-asha")
    spec = parse_study(raw)
    folder = StudyFolder.of(spec.storage.root, spec.name)
    recorder = NativeRecorder(spec, folder, flush_seconds=0.0)
    create_study_folder(spec, folder, recorder, sessions=0)
    for ray_id in ("a", "b"):
        trial_id, _ = recorder.new_trial(ray_id)
        for epoch in (1, 2, 3):
            recorder.record(ray_id, {"epoch": epoch, "val_map": _value(trial_id, epoch)}, "continue")
    recorder.record("a", {"epoch": 4, "val_map": math.nan}, "continue")  # non-finite: the trial fails
    end_study(spec, folder, recorder, StopReason.BUDGET, "done")
    client, runs = _runs(tmp_path)
    by_trial = _by_trial(runs)
    assert sorted(by_trial) == [0, 1]
    assert by_trial[0].info.status == "FAILED" and by_trial[1].info.status == "FINISHED"
    history = sorted((m.step, m.value) for m in client.get_metric_history(by_trial[1].info.run_id, "val_map"))
    assert history == [(e, _value(1, e)) for e in (1, 2, 3)]
    assert len(_scalars(tmp_path / "tb" / "trk" / "trial-00001", "val_map")) == 3


def test_tag_history_keeps_the_newest_decisions() -> None:
    tracker = mlflow_runs.MlflowTracker("unused", study="s")
    row = {
        "trial_id": 0,
        "resource": 0,
        "decision": "continue",
        "rung": -1,
        "bracket": 0,
        "status": "running",
    }
    for epoch in range(2000):
        tracker.row({**row, "resource": epoch}, {"x": 1})
    history = tracker.runs[0].history
    assert len(history) <= mlflow_runs.MAX_HISTORY_CHARS and history.endswith("1999:continue")
    assert history.split()[0].endswith(":continue")  # cut at a pair, never inside one


def test_a_slow_mlflow_never_holds_the_driver_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import threading
    import time

    release = threading.Event()
    original = MlflowClient.log_batch

    def slow(self: Any, *args: Any, **kwargs: Any) -> Any:
        release.wait(5.0)  # a server that takes seconds to answer
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", slow)
    monkeypatch.setattr(mlflow_runs, "CLOSE_TIMEOUT_S", 0.3)
    spec = parse_study(_raw(tmp_path, tracking={"mlflow": {"uri": f"file://{tmp_path}/mlruns"}}))
    driver = _driver(spec)  # flush_seconds=0: every report flushes
    tracker = driver.tracking.trackers[0]
    assert isinstance(tracker, mlflow_runs.MlflowTracker)
    started = time.perf_counter()
    reports = _drive(driver)
    assert time.perf_counter() - started < 3.0 and reports > 10  # sent synchronously: > 5 s per report
    with caplog.at_level(logging.WARNING, logger="hpo.tracking"):
        assert end_study(spec, driver.folder, driver, StopReason.BUDGET, "done") == "finished"
    messages = [r.getMessage() for r in caplog.records if r.name == "hpo.tracking"]
    assert len(messages) == 1 and "did not take the runs' data within 0.3 s" in messages[0]
    assert driver.folder.best_file.exists() and len(driver.folder.store.read()) == reports
    release.set()
    assert tracker._sender is not None
    tracker._sender.join(10.0)
    assert not tracker._sender.is_alive()
