"""The study driver: a scheduler core, the result rows and the persisted state, with no Ray import.

The Ray adapter (:mod:`hpo.ray_backend.adapter`) turns Ray Tune events into calls here; everything that
must survive a kill of the driver lives here, so it is tested without Ray.

Jobs and Ray trials: every job of the core (start a configuration, or resume a paused one up to a target
epoch) runs as one Ray trial. A PAUSE ends that Ray trial after its checkpoint is written; a promotion
starts a new Ray trial that restores the checkpoint at the exact epoch the trial paused at. One path thus
serves promotions within a session and after a driver restart (Ray keeps PAUSED trials only in the memory
of the driver that paused them, and ``Tuner.restore`` does not restore scheduler state).

Persistence (DESIGN principle 3). Every decision appends one event to ``state.events.jsonl``
(:mod:`hpo.session.statelog`): a job the core issued, a report and the decision it got, a failure, a part
of rows stored. The full state - the core's (searcher included), each trial's latest checkpoint, and the
*journal* of result rows not yet in the Parquet store with the part number they will be stored as
(:class:`hpo.session.recorder.Recorder`) - is written only when the log has grown as large as the last
snapshot, at the start of every session and at its end, so persistence costs O(1) per decision on average
and the files stay linear in the study's size. A resume loads the snapshot and replays the events through
the same core calls (the cores are deterministic; a replayed decision that differs from the logged one is
an error, never a silent divergence). Two copies of the snapshot are written, ``state.backup.json`` first,
then ``state.json``, each with a sequence number; :func:`load_state` takes the newest readable one, so a
state file damaged from outside (or cut short by a full disk) still resumes from the last decision. Rules
that keep the state, the rows and the checkpoints consistent at every moment a kill can land:

- rows reach the store only as the part number the saved journal names (idempotent, see the recorder),
  and only once the events that journal them are durable (the log is fsynced first);
- a trial that never runs again is marked released in the state *before* its checkpoints are deleted (a
  resume after a kill in between deletes them; it never resumes from a deleted checkpoint);
- a report the driver had not yet logged when it was killed is simply trained again: the trial restarts
  from the checkpoint the saved state names.
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
from hpo.session.statelog import StateLog, StateLogError, read_events
from hpo.study.folder import StudyFolder
from hpo.study.spec import StudySpec
from trainers.atomic import atomic_write_text
from trainers.errors import AgvpError

STATE_VERSION = 1
BACKUP_SUFFIX = ".backup.json"
EVENTS_SUFFIX = ".events.jsonl"
#: A snapshot is due once the event log is as large as the last snapshot, and not before this many bytes.
MIN_LOG_BYTES = 64 * 1024


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


def events_file(folder: StudyFolder) -> Path:
    return folder.state_file.with_name(folder.state_file.stem + EVENTS_SUFFIX)


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
        self._log = StateLog(events_file(folder), default=_json_default)
        self._snapshot_bytes = 0

    # -- jobs -----------------------------------------------------------------------------------------

    def next_job(self) -> tuple[Job, str | None] | None:
        """The next job for a free worker and the checkpoint it starts from, or None (nothing now)."""
        if self.relaunch:
            job = self.relaunch.pop(0)  # the saved state already runs it: nothing to log
        else:
            job = self.core.suggest()
            if job is None:
                return None
            self.trials.setdefault(job.trial_id, TrialInfo())
            self._record({"e": "job", "trial": job.trial_id, "start": job.start, "target": job.resource})
        resumes = job.kind is JobKind.RESUME and not job.retrain
        resume_from = self.trials[job.trial_id].checkpoint if resumes else None
        if resumes and resume_from is None:
            raise DriverError(f"trial {job.trial_id} is resumed at epoch {job.start} but has no checkpoint")
        self.running[job.trial_id] = RunningJob(job, resume_from)
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
        checkpoint = str(metrics.get("checkpoint") or "")
        decision, row = self._apply_report(
            trial_id, epoch, value, checkpoint, node, job=running.job, metrics=metrics
        )
        if decision is not Decision.CONTINUE:
            del self.running[trial_id]
        self._record(
            {
                "e": "report",
                "trial": trial_id,
                "epoch": epoch,
                "value": value,
                "checkpoint": checkpoint,
                "node": node,
                "decision": decision.value,
                "row": row,
                "part": self._journal_part,
                "elapsed": self.elapsed,
            }
        )
        self._after_decision()
        return decision

    def fail(self, trial_id: int, error: str, *, node: str = "") -> None:
        """Trial ``trial_id`` failed for good (retries exhausted, or a non-finite loss)."""
        running = self._running(trial_id)
        text = error.strip().splitlines()[-1][:500] if error.strip() else "failed"
        row = self._apply_fail(trial_id, text, node, job=running.job)
        del self.running[trial_id]
        self._record(
            {
                "e": "fail",
                "trial": trial_id,
                "error": text,
                "node": node,
                "row": row,
                "part": self._journal_part,
                "elapsed": self.elapsed,
            }
        )
        self._after_decision()

    def _apply_report(
        self,
        trial_id: int,
        epoch: int,
        value: float,
        checkpoint: str,
        node: str,
        *,
        job: Job | None = None,
        metrics: Mapping[str, Any] | None = None,
        row: dict[str, Any] | None = None,
        part: int | None = None,
    ) -> tuple[Decision, dict[str, Any]]:
        """A report's effect on the core, the trial and the journal: live (``job``: the row is made) or
        replayed from the log (``row`` and its ``part`` as logged)."""
        info = self.trials[trial_id]
        previous = self.core.used_resource
        decision = self.core.report(trial_id, epoch, value)
        self.total_resource += self.core.used_resource - previous  # a retrained promotion pays it all
        info.checkpoint = checkpoint or info.checkpoint
        info.node = node or info.node
        status = self.core.status(trial_id)
        if row is None:
            assert job is not None
            row = self._row(job, epoch, value, decision, status, metrics or {}, node=info.node)
        else:
            self.journal_row(row, part)
        if status in (TrialStatus.STOPPED, TrialStatus.FAILED):
            self._mark_released(trial_id)
        self._retire_stopped()
        return decision, row

    def _apply_fail(
        self,
        trial_id: int,
        error: str,
        node: str,
        *,
        job: Job | None = None,
        row: dict[str, Any] | None = None,
        part: int | None = None,
    ) -> dict[str, Any]:
        info = self.trials[trial_id]
        info.error = error
        info.node = node or info.node
        self.core.fail(trial_id)
        if row is None:
            assert job is not None
            resource = self.core.resource_of(trial_id)
            row = self._row(
                job, resource, math.nan, Decision.STOP, TrialStatus.FAILED, {}, node=info.node, error=error
            )
        else:
            self.journal_row(row, part)
        self._mark_released(trial_id)
        self._retire_stopped()
        return row

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
    ) -> dict[str, Any]:
        return self.add_row(
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

    def _retire_stopped(self) -> None:
        for retired in self.core.drain_stopped():
            self._mark_released(retired)

    def _after_decision(self) -> None:
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
        """Write the whole state (backup copy first, then ``state.json``) and start a new event log."""
        self._sequence += 1
        text = json.dumps(self.state_dict(), separators=(",", ":"), default=_json_default)
        atomic_write_text(backup_file(self.folder), text)  # first: never older than state.json
        atomic_write_text(self.folder.state_file, text)
        self._snapshot_bytes = len(text)
        fault_point("state-written")
        self._log.start(self._sequence)

    def _record(self, event: dict[str, Any]) -> None:
        """Log one change of the state (already made in memory); a full snapshot instead when no log is
        open yet (a driver that never saved a snapshot) or once the log is as large as the last one."""
        if not self._log.open:
            self.snapshot()
            return
        self._log.append(event)
        fault_point("state-written")
        if self._log.bytes >= max(self._snapshot_bytes, MIN_LOG_BYTES):
            self.snapshot()

    def make_durable(self) -> None:
        """Make every logged decision survive a power loss (before deleting a file the older state names)."""
        self._log.sync()

    def before_store(self) -> None:
        self.make_durable()

    def stored(self, part: int) -> None:
        self._record({"e": "stored", "part": part})

    def close(self, *, clean: bool) -> None:
        """End of a session: after a clean end one full snapshot, so ``state.json`` alone holds the state
        (after an exception the log, complete up to the last decision, is left as it is)."""
        if clean:
            self.snapshot()
        self._log.close()

    def restore(self, state: Mapping[str, Any]) -> None:
        """Continue a study from its saved state (see the module docstring for what a resume does)."""
        self.load(state)
        self.session += 1
        self._session_start = self.clock()
        journal = self.journal()
        self._pending, self._journal_part = [], None
        self.restore_journal(journal)
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
        self.tracking.resume()  # continue the trials' tracking runs, never open second ones

    def load(self, state: Mapping[str, Any]) -> None:
        """The state a saved snapshot and its logged events describe, in memory only (nothing is written,
        stored or deleted): what :meth:`restore` continues from and ``agvp-hpo check`` inspects."""
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
        self.session = int(state["session"])
        self._sequence = int(state.get("sequence", 0))
        self.best = tuple(state["best"]) if state.get("best") else None  # type: ignore[assignment]
        journal = state["journal"]
        self._pending = list(journal.get("rows") or [])
        self._journal_part = int(journal["part"]) if self._pending else None
        for number, event in enumerate(state.get("events", ()), start=2):
            self._replay(event, number)
        self._release.clear()  # what a replay released is deleted by restore, not here

    def _replay(self, event: Mapping[str, Any], number: int) -> None:
        where = f"{events_file(self.folder)} line {number}"
        kind = event.get("e")
        if kind == "job":
            job = self.core.suggest()
            logged = (event["trial"], event["start"], event["target"])
            if job is None or (job.trial_id, job.start, job.resource) != logged:
                got = None if job is None else (job.trial_id, job.start, job.resource)
                raise StateError(f"{where}: the scheduler issues {got} on replay, the log says {logged}")
            self.trials.setdefault(job.trial_id, TrialInfo())
        elif kind == "report":
            decision, _ = self._apply_report(
                int(event["trial"]),
                int(event["epoch"]),
                float(event["value"]),
                str(event["checkpoint"]),
                str(event["node"]),
                row=dict(event["row"]),
                part=event["part"],
            )
            if decision.value != event["decision"]:
                raise StateError(
                    f"{where}: the scheduler decides {decision.value} on replay, the log says "
                    f"{event['decision']} (trial {event['trial']}, epoch {event['epoch']})"
                )
        elif kind == "fail":
            self._apply_fail(
                int(event["trial"]),
                str(event["error"]),
                str(event["node"]),
                row=dict(event["row"]),
                part=event["part"],
            )
        elif kind == "stored":
            self._pending, self._journal_part = [], None
        else:
            raise StateError(f"{where}: unknown event {kind!r}")
        if "elapsed" in event:
            self.elapsed_before = float(event["elapsed"])

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
    """The newest readable saved state of ``folder`` (``state.json`` or its backup, by sequence number),
    with the events logged after it under ``events`` (:meth:`StudyDriver.load` replays them)."""
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
    state = max(found, key=lambda state: int(state.get("sequence", 0)))
    try:
        state["events"] = read_events(events_file(folder), int(state.get("sequence", 0)))
    except StateLogError as error:
        raise StateError(str(error)) from None
    return state


def replayed_state(
    folder: StudyFolder, state: Mapping[str, Any], *, spec: StudySpec | None = None
) -> dict[str, Any]:
    """``state`` (from :func:`load_state`) with its logged events applied, as one full state: the study's
    own scheduler core replays them (``spec``: the study's, read from the folder by default)."""
    if not state.get("events"):
        return dict(state)
    from hpo.study.build import core_from_spec
    from hpo.study.loader import load_study

    spec = spec or load_study(folder.spec_file)
    driver = StudyDriver(spec, folder, core_from_spec(spec))
    driver.load(state)
    return driver.state_dict()


def driver_identity() -> dict[str, Any]:
    return {"driver_pid": os.getpid(), "driver_host": socket.gethostname()}


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in state.json")
