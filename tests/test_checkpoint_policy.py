"""Which epoch files a trial keeps (hpo/ray_backend/trainable.py, adapter.CoreScheduler), without Ray running.

``run_job`` runs here with Ray's session calls replaced: ``tune.report`` returns (Ray asked for the next
result after its controller recorded this one) or raises ``SystemExit`` as Ray's session does when the
trial is stopped inside it. Ray 2.60: ray/train/_internal/session.py ``_report_training_result`` (lines
396-422) puts the result on the queue, blocks on ``continue_lock`` and exits if ``stop_event`` is set;
``get_next`` (268-284) releases that lock only when the next result is asked for; the function trainable
reports synchronously (ray/tune/trainable/function_trainable.py line 55), and the controller asks for the
next result only after processing this one (no buffering: ray/tune/execution/tune_controller.py line 162,
``TUNE_RESULT_BUFFER_LENGTH`` default 1). Each report records the epoch files present at that moment: the
ones a retry, a driver resume or a promotion may need.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import ray
from ray import tune

from hpo.ray_backend import trainable
from hpo.ray_backend.adapter import CoreScheduler
from hpo.ray_backend.trainable import POINTER_FILE, epoch_file, prune_epoch_files, run_job
from hpo.schedulers.base import Decision

PARAMS = {"lr": 0.1}


class FakeTune:
    """Stands in for Ray's session: records the files at every report, stops the trial at ``stop_at``."""

    def __init__(self, trial_dir: Path, *, stop_at: int | None, restored: Path | None = None) -> None:
        self.trial_dir = trial_dir
        self.stop_at = stop_at
        self.restored = restored
        self.seen: dict[int, set[str]] = {}
        self.pointers: list[str] = []

    def files(self) -> set[str]:
        return {path.name for path in self.trial_dir.glob("epoch-*.pt")}

    def report(self, metrics: dict[str, Any], checkpoint: Any = None) -> None:
        epoch = int(metrics["epoch"])
        self.seen[epoch] = self.files()
        if checkpoint is not None:
            with checkpoint.as_directory() as folder:
                self.pointers.append(json.loads((Path(folder) / POINTER_FILE).read_text())["path"])
        if epoch == self.stop_at:
            raise SystemExit(0)  # what Ray's session does to a trial stopped while it reports

    def get_checkpoint(self) -> Any:
        if self.restored is None:
            return None
        folder = self.trial_dir / "restored-pointer"
        folder.mkdir(exist_ok=True)
        (folder / POINTER_FILE).write_text(json.dumps({"path": str(self.restored)}))
        return tune.Checkpoint.from_directory(folder)


@pytest.fixture()
def fake_ray(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[FakeTune], None]]:
    monkeypatch.setattr(ray.util, "get_node_ip_address", lambda: "127.0.0.1")
    monkeypatch.setattr(ray, "get_runtime_context", lambda: SimpleNamespace(get_node_id=lambda: "n" * 16))

    def install(fake: FakeTune) -> None:
        monkeypatch.setattr(tune, "report", fake.report)
        monkeypatch.setattr(tune, "get_checkpoint", fake.get_checkpoint)

    yield install


def _job(
    trial_dir: Path, start: int, target: int, resume_from: Path | None, *, schedule: int | None = None
) -> dict[str, Any]:
    """A job's payload as runner.trial_payload builds it; ``schedule``: data_fraction fidelity (the trainer
    runs a ``schedule``-epoch schedule and only its end reports, as ``target``)."""
    return {
        trainable.AGVP_KEY: {
            "trial_id": 0,
            "trial_dir": str(trial_dir),
            "trainer": {"name": "synthetic", "overrides": {}},
            "params": PARAMS,
            "metric": "val_map",
            "start": start,
            "target": target,
            "resume_from": str(resume_from) if resume_from else None,
            "budget": {"epochs": schedule or target, "data_fraction": 0.5 if schedule else 1.0},
            "report_at_end": schedule is not None,
        }
    }


def _run(job: dict[str, Any]) -> None:
    with pytest.raises(SystemExit):  # the job's last report: the PAUSE ends the Ray trial inside it
        run_job(job)


def _names(*epochs: int) -> set[str]:
    return {f"epoch-{epoch:04d}.pt" for epoch in epochs}


def test_a_job_keeps_the_newest_file_and_the_one_still_named(tmp_path: Path, fake_ray: Any) -> None:
    trial_dir = tmp_path / "trials" / "00000"
    fake = FakeTune(trial_dir, stop_at=4)
    fake_ray(fake)
    _run(_job(trial_dir, 0, 4, None))
    # while epoch e is reported, e-1 (what the driver's state and Ray name until then) and e exist
    assert fake.seen == {1: _names(1), 2: _names(1, 2), 3: _names(2, 3), 4: _names(3, 4)}
    assert fake.pointers == [str(epoch_file(trial_dir, e)) for e in (1, 2, 3, 4)]
    # the last report never returned, so epoch 3 is still there until the driver has saved epoch 4
    assert fake.files() == _names(3, 4)


def test_the_driver_side_prunes_once_the_state_names_the_new_file(tmp_path: Path) -> None:
    trial_dir = tmp_path / "trials" / "00000"
    trial_dir.mkdir(parents=True)
    for epoch in (3, 4):
        epoch_file(trial_dir, epoch).write_text("x")
    job = SimpleNamespace(trial_id=0)
    saved: list[str] = []

    def report(trial_id: int, result: dict[str, Any], *, node: str) -> Decision:
        # the state is saved inside report (driver.snapshot); the files must still both be there then
        saved.append(str(sorted(p.name for p in trial_dir.glob("epoch-*.pt"))))
        info.checkpoint = result["checkpoint"]
        return Decision.PAUSE

    info = SimpleNamespace(checkpoint=str(epoch_file(trial_dir, 3)))
    durable: list[set[str]] = []  # the files there when the driver makes its log durable

    def make_durable() -> None:
        durable.append({p.name for p in trial_dir.glob("epoch-*.pt")})

    driver = SimpleNamespace(
        report=report,
        make_durable=make_durable,
        trials={0: info},
        running={0: SimpleNamespace(job=job)},
        folder=SimpleNamespace(trial_dir=lambda trial_id: trial_dir),
    )
    scheduler = CoreScheduler.__new__(CoreScheduler)
    scheduler.driver = driver  # type: ignore[assignment]
    scheduler.searcher = SimpleNamespace(jobs={"ray-trial": job})  # type: ignore[assignment]
    trial = SimpleNamespace(trial_id="ray-trial")
    result = {"epoch": 4, "val_map": 0.5, "checkpoint": str(epoch_file(trial_dir, 4))}
    assert scheduler.on_trial_result(None, trial, result) == "STOP"  # type: ignore[arg-type]
    assert saved == [str(sorted(_names(3, 4)))]
    assert durable == [_names(3, 4)]  # the state naming epoch 4 survives a power loss before 3 goes
    assert {p.name for p in trial_dir.glob("epoch-*.pt")} == _names(4)


def test_a_promotion_from_a_pause_continues_from_the_one_file_left(tmp_path: Path, fake_ray: Any) -> None:
    trial_dir = tmp_path / "trials" / "00000"
    fake_ray(FakeTune(trial_dir, stop_at=2))
    _run(_job(trial_dir, 0, 2, None))
    prune_epoch_files(trial_dir, keep={epoch_file(trial_dir, 2)})  # what the driver side does
    fake = FakeTune(trial_dir, stop_at=4)
    fake_ray(fake)
    _run(_job(trial_dir, 2, 4, epoch_file(trial_dir, 2)))
    assert fake.seen == {3: _names(2, 3), 4: _names(3, 4)}  # resumed at epoch 2, not from scratch


def test_a_driver_resume_after_a_kill_finds_the_file_its_state_names(tmp_path: Path, fake_ray: Any) -> None:
    # Killed while epoch 3 was being reported: the saved state names epoch 2, epoch 3 exists unrecorded.
    trial_dir = tmp_path / "trials" / "00000"
    fake_ray(FakeTune(trial_dir, stop_at=3))
    _run(_job(trial_dir, 0, 3, None))
    assert {p.name for p in trial_dir.glob("epoch-*.pt")} == _names(2, 3)
    fake = FakeTune(trial_dir, stop_at=4)
    fake_ray(fake)
    _run(_job(trial_dir, 2, 4, epoch_file(trial_dir, 2)))
    # epoch 2 (named by the state) survives until epoch 3's report is recorded again
    assert fake.seen == {3: _names(2, 3), 4: _names(3, 4)}


def test_a_ray_retry_keeps_every_file_until_its_first_report_is_recorded(
    tmp_path: Path, fake_ray: Any
) -> None:
    # Crashed in epoch 4 after epoch 3 was reported: Ray restores its latest registered pointer (epoch 3);
    # an older file (a stale epoch 1) is kept too until the retry's first report is recorded.
    trial_dir = tmp_path / "trials" / "00000"
    fake_ray(FakeTune(trial_dir, stop_at=3))
    _run(_job(trial_dir, 0, 3, None))
    epoch_file(trial_dir, 1).write_text("stale")
    fake = FakeTune(trial_dir, stop_at=5, restored=epoch_file(trial_dir, 3))
    fake_ray(fake)
    _run(_job(trial_dir, 0, 5, None))
    assert fake.seen == {4: _names(1, 2, 3, 4), 5: _names(4, 5)}


def test_a_retrain_keeps_the_old_rungs_file_until_its_first_report(tmp_path: Path, fake_ray: Any) -> None:
    # data_fraction fidelity: a promotion retrains from scratch (start > 0, no file to start from) while the
    # driver's state still names the old rung's file, which therefore stays until the new one is recorded.
    trial_dir = tmp_path / "trials" / "00000"
    trial_dir.mkdir(parents=True)
    epoch_file(trial_dir, 3).write_text("old rung")
    fake = FakeTune(trial_dir, stop_at=9)
    fake_ray(fake)
    _run(_job(trial_dir, 3, 9, None, schedule=2))
    assert fake.seen == {9: _names(3, 9)}


def test_check_finds_no_missing_checkpoint_for_a_paused_trial(tmp_path: Path, fake_ray: Any) -> None:
    from hpo.study.check import check_checkpoints

    trial_dir = tmp_path / "study" / "trials" / "00000"
    fake_ray(FakeTune(trial_dir, stop_at=2))
    _run(_job(trial_dir, 0, 2, None))
    prune_epoch_files(trial_dir, keep={epoch_file(trial_dir, 2)})
    folder = SimpleNamespace(trial_dir=lambda trial_id: trial_dir, path=tmp_path / "study")
    state = {
        "core": {"trials": [[0, {"status": "paused", "resource": 2}]]},
        "trials": [[0, {"checkpoint": str(epoch_file(trial_dir, 2))}]],
    }
    assert check_checkpoints(folder, state) == []  # type: ignore[arg-type]
