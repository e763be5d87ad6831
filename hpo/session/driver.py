"""The study driver: a scheduler core, the result rows and the persisted state, with no Ray import.

The Ray adapter (:mod:`hpo.ray_backend.adapter`) turns Ray Tune events into calls here; everything that
must survive a kill of the driver lives here, so it is tested without Ray.

Jobs and Ray trials: every job of the core (start a configuration, or resume a paused one up to a target
epoch) runs as one Ray trial. A PAUSE ends that Ray trial after its checkpoint is written; a promotion
starts a new Ray trial that restores the checkpoint at the exact epoch the trial paused at. One path thus
serves promotions within a session and after a driver restart (Ray keeps PAUSED trials only in the memory
of the driver that paused them, and ``Tuner.restore`` does not restore scheduler state).

Persistence (DESIGN principle 3). After every decision the state is rewritten atomically: the core's state
(searcher included), each trial's latest checkpoint, and the *journal* - result rows not yet in the Parquet
store, with the part number they will be stored as (:class:`hpo.session.recorder.Recorder`). Two copies are
written, ``state.backup.json`` first, then ``state.json``, each with a sequence number; :func:`load_state`
takes the newest readable one, so a state file damaged from outside (or cut short by a full disk) still
resumes from the last decision. Rules that keep the state, the rows and the checkpoints consistent at every
moment a kill can land:

- rows reach the store only as the part number the saved journal names (idempotent, see the recorder);
- a trial that never runs again is marked released in the state *before* its checkpoints are deleted (a
  resume after a kill in between deletes them; it never resumes from a deleted checkpoint);
- a report the driver had not yet saved when it was killed is simply trained again: the trial restarts from
  the checkpoint the saved state names.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpo.faults import fault_point
from hpo.results import TrialStatus
from hpo.schedulers.base import Decision, Job, JobKind, SchedulerCore
from hpo.session.recorder import Recorder
from hpo.study.folder import StudyFolder
from hpo.study.spec import StudySpec
from trainers.atomic import atomic_write_text
from trainers.errors import AgvpError

STATE_VERSION = 1
BACKUP_SUFFIX = ".backup.json"


class DriverError(RuntimeError):
    """The driver was asked something inconsistent with its state (a bug, not bad user input)."""


class StateError(AgvpError):
    """A study's saved state is missing or unreadable; the message names the files."""


@dataclass
class TrialInfo:
    """What the driver knows of one trial beyond the core: its latest checkpoint and where it ran."""

    checkpoint: str | None = None  # checkpoint file at the trial's latest reported epoch
    node: str = ""
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "node": self.node, "error": self.error}


@dataclass
class RunningJob:
    job: Job
    resume_from: str | None
    started: float = field(default_factory=time.time)


def backup_file(folder: StudyFolder) -> Path:
    return folder.state_file.with_name(folder.state_file.stem + BACKUP_SUFFIX)


class StudyDriver(Recorder):
    """Issues the core's jobs, records reports as rows, and persists state; see the module docstring."""

    def __init__(
        self,
        spec: StudySpec,
        folder: StudyFolder,
        core: SchedulerCore,
        *,
        flush_seconds: float = 1.0,
        clock: Any = time.time,
    ) -> None:
        super().__init__(spec, folder, flush_seconds=flush_seconds, clock=clock)
        self.core = core
        self.trials: dict[int, TrialInfo] = {}
        self.running: dict[int, RunningJob] = {}
        self.relaunch: list[Job] = []  # jobs that were running when a previous driver died
        self.session = 1
        self._sequence = 0
        self._release: set[int] = set()  # released in the state; checkpoints deleted after it is saved

    # -- jobs -----------------------------------------------------------------------------------------

    def next_job(self) -> tuple[Job, str | None] | None:
        """The next job for a free worker and the checkpoint it starts from, or None (nothing now)."""
        if self.relaunch:
            job = self.relaunch.pop(0)
        else:
            job = self.core.suggest()
            if job is None:
                return None
            self.trials.setdefault(job.trial_id, TrialInfo())
        resumes = job.kind is JobKind.RESUME and not job.retrain
        resume_from = self.trials[job.trial_id].checkpoint if resumes else None
        if resumes and resume_from is None:
            raise DriverError(f"trial {job.trial_id} is resumed at epoch {job.start} but has no checkpoint")
        self.running[job.trial_id] = RunningJob(job, resume_from)
        self.snapshot()
        return job, resume_from

    @property
    def done(self) -> bool:
        """Nothing runs and the core has nothing more to run: the study is over."""
        return not self.running and not self.relaunch

    def report(self, trial_id: int, metrics: Mapping[str, Any], *, node: str = "") -> Decision:
        """Trial ``trial_id`` reported ``metrics`` (with ``epoch``, the objective and ``checkpoint``)."""
        running = self._running(trial_id)
        metric = self.spec.objective.metric
        if metric not in metrics:
            reported = ", ".join(sorted(k for k in metrics if not k.startswith("agvp_"))) or "nothing"
            self.fail(trial_id, f"the trainer reported no {metric!r} (it reported {reported})", node=node)
            return Decision.STOP
        epoch = int(metrics["epoch"])
        value = float(metrics[metric])
        if not math.isfinite(value):
            self.fail(trial_id, f"the objective {metric} is {value} at epoch {epoch}", node=node)
            return Decision.STOP
        info = self.trials[trial_id]
        previous = self.core.used_resource
        decision = self.core.report(trial_id, epoch, value)
        self.total_resource += self.core.used_resource - previous  # a retrained promotion pays it all
        info.checkpoint = str(metrics.get("checkpoint") or "") or info.checkpoint
        info.node = node or info.node
        status = self.core.status(trial_id)
        self._row(running.job, epoch, value, decision, status, metrics, node=info.node)
        if status in (TrialStatus.STOPPED, TrialStatus.FAILED):
            self._mark_released(trial_id)
        if decision is not Decision.CONTINUE:
            del self.running[trial_id]
        self._after_decision()
        return decision

    def fail(self, trial_id: int, error: str, *, node: str = "") -> None:
        """Trial ``trial_id`` failed for good (retries exhausted, or a non-finite loss)."""
        running = self._running(trial_id)
        info = self.trials[trial_id]
        info.error = error.strip().splitlines()[-1][:500] if error.strip() else "failed"
        info.node = node or info.node
        self.core.fail(trial_id)
        resource = self.core.resource_of(trial_id)
        self._row(
            running.job,
            resource,
            math.nan,
            Decision.STOP,
            TrialStatus.FAILED,
            {},
            node=info.node,
            error=info.error,
        )
        del self.running[trial_id]
        self._mark_released(trial_id)
        self._after_decision()

    def abandon(self, trial_id: int) -> None:
        """The Ray trial running ``trial_id`` ended without a decision (the study is being stopped): the
        core keeps it running, so a resume relaunches it from its checkpoint."""
        self.running.pop(trial_id, None)

    def _running(self, trial_id: int) -> RunningJob:
        running = self.running.get(trial_id)
        if running is None:
            raise DriverError(f"trial {trial_id} reported, but no job of it is running")
        return running

    def _row(
        self,
        job: Job,
        resource: int,
        value: float,
        decision: Decision,
        status: TrialStatus,
        metrics: Mapping[str, Any],
        *,
        node: str,
        error: str = "",
    ) -> None:
        self.add_row(
            trial_id=job.trial_id,
            config=job.config,
            resource=resource,
            value=value,
            decision=decision.value,
            bracket=job.bracket,
            status=status,
            metrics=metrics,
            node=node,
            error=error,
        )

    def _after_decision(self) -> None:
        for retired in self.core.drain_stopped():
            self._mark_released(retired)
        self.snapshot()
        self._delete_released()
        self.maybe_flush()

    def _mark_released(self, trial_id: int) -> None:
        """A trial that will never run again: its checkpoints go once the state says so."""
        self.trials[trial_id].checkpoint = None
        self._release.add(trial_id)

    def _delete_released(self) -> None:
        if not self._release:
            return
        fault_point("released")
        for trial_id in sorted(self._release):
            shutil.rmtree(self.folder.trial_dir(trial_id), ignore_errors=True)
        self._release.clear()

    # -- state ----------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "sequence": self._sequence,
            "study": self.spec.name,
            "core": self.core.state_dict(),
            "trials": [[tid, info.to_dict()] for tid, info in self.trials.items()],
            "total_resource": self.total_resource,
            "elapsed": self.elapsed,
            "session": self.session,
            "best": list(self.best) if self.best is not None else None,
            "journal": self.journal(),
        }

    def snapshot(self) -> None:
        self._sequence += 1
        text = json.dumps(self.state_dict(), separators=(",", ":"), default=_json_default)
        atomic_write_text(backup_file(self.folder), text)  # first: never older than state.json
        atomic_write_text(self.folder.state_file, text)
        fault_point("state-written")

    def restore(self, state: Mapping[str, Any]) -> None:
        """Continue a study from its saved state (see the module docstring for what a resume does)."""
        if state.get("version") != STATE_VERSION:
            raise StateError(
                f"{self.folder.state_file}: state version {state.get('version')}, but this agvp-hpo reads "
                f"version {STATE_VERSION}"
            )
        self.core.load_state_dict(state["core"])
        self.trials = {
            int(tid): TrialInfo(raw.get("checkpoint"), raw.get("node", ""), raw.get("error", ""))
            for tid, raw in state["trials"]
        }
        self.total_resource = int(state["total_resource"])
        self.elapsed_before = float(state["elapsed"])
        self.session = int(state["session"]) + 1
        self._sequence = int(state.get("sequence", 0))
        self._session_start = self.clock()
        self.best = tuple(state["best"]) if state.get("best") else None  # type: ignore[assignment]
        self.restore_journal(state["journal"])
        self.running = {}
        self.relaunch = []
        for trial_id in range(self.core.num_trials):
            status = self.core.status(trial_id)
            if status in (TrialStatus.STOPPED, TrialStatus.FAILED):
                self._release.add(trial_id)  # released before the kill; its checkpoints may remain
            target = self.core.target_of(trial_id)
            if status is TrialStatus.RUNNING and target is not None:
                start = self.core.resource_of(trial_id)
                kind = JobKind.RESUME if start > 0 else JobKind.START
                config = self.core.config(trial_id)
                retrain = self.core.retrain and start > 0
                self.relaunch.append(
                    Job(kind, trial_id, config, start, target, self.core.bracket_of(trial_id), retrain)
                )
        self.snapshot()
        self._delete_released()

    # -- what the summary needs -----------------------------------------------------------------------

    def num_trials(self) -> int:
        return self.core.num_trials

    def counts(self) -> dict[str, int]:
        """Trials by state (running = a job in flight)."""
        counts = {status.value: 0 for status in TrialStatus}
        for trial_id in range(self.core.num_trials):
            counts[self.core.status(trial_id).value] += 1
        counts["running"] = len(self.running)
        return counts

    def reached(self) -> Iterable[int]:
        return (self.core.resource_of(t) for t in range(self.core.num_trials))

    def max_total_resource(self) -> int | None:
        return self.core.max_total_resource


def load_state(folder: StudyFolder) -> dict[str, Any]:
    """The newest readable saved state of ``folder`` (``state.json`` or its backup, by sequence number)."""
    found: list[dict[str, Any]] = []
    problems: list[str] = []
    for path in (folder.state_file, backup_file(folder)):
        try:
            found.append(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            problems.append(f"{path.name} is missing")
        except (OSError, ValueError) as error:
            problems.append(f"{path.name} is unreadable ({type(error).__name__})")
    if not found:
        raise StateError(f"{folder.path}: no scheduler state to resume from ({'; '.join(problems)})")
    return max(found, key=lambda state: int(state.get("sequence", 0)))


def driver_identity() -> dict[str, Any]:
    return {"driver_pid": os.getpid(), "driver_host": socket.gethostname()}


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in state.json")
