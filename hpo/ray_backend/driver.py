"""The study driver: the scheduler core, the result rows and the persisted state, with no Ray import.

The Ray adapter (:mod:`hpo.ray_backend.adapter`) turns Ray Tune events into calls here; everything that
must survive a kill of the driver lives here, so it is tested without Ray.

Jobs and Ray trials: every job of the core (start a configuration, or resume a paused one up to a target
epoch) runs as one Ray trial. A PAUSE ends that Ray trial after its checkpoint is written; a promotion
starts a new Ray trial that restores the checkpoint at the exact epoch the trial paused at. One path thus
serves promotions within a session and after a driver restart (Ray keeps PAUSED trials only in the memory
of the driver that paused them, and ``Tuner.restore`` does not restore scheduler state).

Persistence (DESIGN principle 3). After every decision ``state.json`` is rewritten atomically with the
core's state (searcher included), each trial's latest checkpoint, and the *journal*: result rows not yet in
the Parquet store. Rows move to the store in batches (one part file per ``flush_seconds``), because each
part file costs an fsync (benchmarks/store_speed.py: ~200 one-row parts/s). The state names the part
number its journal will be written as, so after a crash between writing that part and rewriting the state,
resume sees the part and does not write the rows twice. A report the driver had not yet snapshotted when it
was killed is simply trained again: the trial restarts from the checkpoint the snapshot names.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpo.faults import fault_point
from hpo.results import (
    BRACKET,
    CHECKPOINT,
    CONFIG,
    DECISION,
    ERROR,
    METRIC,
    METRIC_PREFIX,
    MODE,
    NODE,
    RESOURCE,
    RUNG,
    STATUS,
    STUDY,
    TIME,
    TIMESTAMP,
    TOTAL_RESOURCE,
    TRIAL_ID,
    VALUE,
    TrialStatus,
    config_json,
)
from hpo.schedulers.base import Decision, Job, JobKind, SchedulerCore
from hpo.store import atomic_write_bytes
from hpo.study.folder import StudyFolder
from hpo.study.spec import StudySpec

STATE_VERSION = 1
#: Merge the part files once there are more than this many (a reader opens every file).
COMPACT_AFTER_PARTS = 64


class DriverError(RuntimeError):
    """The driver was asked something inconsistent with its state (a bug, not bad user input)."""


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


class StudyDriver:
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
        self.spec = spec
        self.folder = folder
        self.core = core
        self.flush_seconds = flush_seconds
        self.clock = clock
        self.trials: dict[int, TrialInfo] = {}
        self.running: dict[int, RunningJob] = {}
        self.relaunch: list[Job] = []  # jobs that were running when a previous driver died
        self.total_resource = 0
        self.elapsed_before = 0.0  # seconds of earlier sessions
        self.session = 1
        self.best: tuple[float, int, int] | None = None  # (value, trial, resource) at the highest fidelity
        self._pending: list[dict[str, Any]] = []
        self._session_start = clock()
        self._last_flush = self._session_start

    # -- time -----------------------------------------------------------------------------------------

    def start_clock(self) -> None:
        """Trials are about to start (Ray is up): the session's time counts from now."""
        self._session_start = self.clock()
        self._last_flush = self._session_start

    @property
    def elapsed(self) -> float:
        """Seconds the study has run, over all sessions."""
        return self.elapsed_before + (self.clock() - self._session_start)

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
        resume_from = self.trials[job.trial_id].checkpoint if job.kind is JobKind.RESUME else None
        if job.kind is JobKind.RESUME and resume_from is None:
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
        info = self.trials[trial_id]
        previous = self.core.resource_of(trial_id)
        decision = self.core.report(trial_id, epoch, value)
        self.total_resource += epoch - previous
        info.checkpoint = str(metrics.get("checkpoint") or "") or info.checkpoint
        info.node = node or info.node
        status = self.core.status(trial_id)
        self._row(running.job, epoch, value, decision, status, metrics, node=info.node)
        self._update_best(trial_id, epoch, value)
        if status in (TrialStatus.STOPPED, TrialStatus.FAILED):
            self._release(trial_id)
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
        self._release(trial_id)
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

    def _update_best(self, trial_id: int, epoch: int, value: float) -> None:
        if improves(self.best, epoch, value, self.spec.objective.mode):
            self.best = (value, trial_id, epoch)

    # -- rows -----------------------------------------------------------------------------------------

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
        rung = self.core.rung_of(resource)
        self._pending.append(
            make_row(
                self.spec,
                trial_id=job.trial_id,
                config=job.config,
                resource=resource,
                value=value,
                time=self.elapsed,
                total_resource=self.total_resource,
                decision=decision.value,
                bracket=job.bracket,
                rung=-1 if rung is None else rung,
                status=status.value,
                metrics=metrics,
                node=node,
                error=error,
                timestamp=self.clock(),
            )
        )

    def _after_decision(self) -> None:
        for retired in self.core.drain_stopped():
            self._release(retired)
        self.snapshot()
        self.maybe_flush()

    def _release(self, trial_id: int) -> None:
        """A trial that will never run again: delete its checkpoints (they can be large)."""
        shutil.rmtree(self.folder.trial_dir(trial_id), ignore_errors=True)
        fault_point("released")
        self.trials[trial_id].checkpoint = None

    def maybe_flush(self, *, force: bool = False) -> None:
        """Move the journal into the store if ``flush_seconds`` passed since the last flush (or ``force``)."""
        now = self.clock()
        if not self._pending or (not force and now - self._last_flush < self.flush_seconds):
            return
        self.folder.store.append(self._pending)
        fault_point("part-written")
        self._pending = []
        self._last_flush = now
        self.snapshot()
        if len(self.folder.store.files()) > COMPACT_AFTER_PARTS:
            self.folder.store.compact()

    # -- state ----------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "study": self.spec.name,
            "core": self.core.state_dict(),
            "trials": [[tid, info.to_dict()] for tid, info in self.trials.items()],
            "total_resource": self.total_resource,
            "elapsed": self.elapsed,
            "session": self.session,
            "best": list(self.best) if self.best is not None else None,
            "journal": {"part": self.folder.store.last_number() + 1, "rows": self._pending},
        }

    def snapshot(self) -> None:
        data = json.dumps(self.state_dict(), separators=(",", ":"), default=_json_default)
        atomic_write_bytes(self.folder.state_file, data.encode())
        fault_point("state-written")

    def restore(self, state: Mapping[str, Any]) -> None:
        """Continue a study from its ``state.json`` (see the module docstring for what a resume does)."""
        if state.get("version") != STATE_VERSION:
            raise DriverError(f"state.json has version {state.get('version')}, expected {STATE_VERSION}")
        self.core.load_state_dict(state["core"])
        self.trials = {
            int(tid): TrialInfo(raw.get("checkpoint"), raw.get("node", ""), raw.get("error", ""))
            for tid, raw in state["trials"]
        }
        self.total_resource = int(state["total_resource"])
        self.elapsed_before = float(state["elapsed"])
        self.session = int(state["session"]) + 1
        self._session_start = self.clock()
        self.best = tuple(state["best"]) if state.get("best") else None  # type: ignore[assignment]
        journal = state["journal"]
        if journal["rows"] and self.folder.store.last_number() < int(journal["part"]):
            self.folder.store.append(journal["rows"])  # the crash came before the journal reached the store
        self.running = {}
        self.relaunch = []
        for trial_id in range(self.core.num_trials):
            target = self.core.target_of(trial_id)
            if self.core.status(trial_id) is TrialStatus.RUNNING and target is not None:
                start = self.core.resource_of(trial_id)
                kind = JobKind.RESUME if start > 0 else JobKind.START
                config = self.core.config(trial_id)
                self.relaunch.append(
                    Job(kind, trial_id, config, start, target, self.core.bracket_of(trial_id))
                )
        self.snapshot()

    # -- summary for displays -------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Trials by state (running = a job in flight)."""
        counts = {status.value: 0 for status in TrialStatus}
        for trial_id in range(self.core.num_trials):
            counts[self.core.status(trial_id).value] += 1
        counts["running"] = len(self.running)
        return counts

    def summary(self) -> dict[str, Any]:
        """What a progress display shows: trials by state, best so far, budget used, rung occupancy."""
        return {
            "study": self.spec.name,
            "counts": self.counts(),
            "trials": self.core.num_trials,
            "max_trials": self.spec.budget.max_trials,
            "best": self.best,
            "metric": self.spec.objective.metric,
            "total_resource": self.total_resource,
            "max_total_resource": self.core.max_total_resource,
            "max_resource": self.core.max_resource,
            "elapsed": self.elapsed,
            "wall_clock": self.spec.budget.wall_clock,
            "rungs": self.rung_occupancy(),
        }

    def rung_occupancy(self) -> list[tuple[int, int]]:
        """(milestone epochs, trials that reported there) for every milestone."""
        reached = [self.core.resource_of(t) for t in range(self.core.num_trials)]
        return [(m, sum(1 for r in reached if r >= m)) for m in self.core.milestones]


def improves(best: tuple[float, int, int] | None, epoch: int, value: float, mode: str) -> bool:
    """Whether ``value`` after ``epoch`` epochs beats ``best`` = (value, trial, epoch): the best is the best
    value at the highest fidelity reached so far (more epochs always win; NaN never does)."""
    if math.isnan(value):
        return False
    if best is None or epoch > best[2]:
        return True
    if epoch < best[2]:
        return False
    return value > best[0] if mode == "max" else value < best[0]


def make_row(
    spec: StudySpec,
    *,
    trial_id: int,
    config: Mapping[str, Any],
    resource: int,
    value: float,
    time: float,
    total_resource: int,
    decision: str,
    bracket: int,
    rung: int,
    status: str,
    metrics: Mapping[str, Any],
    node: str,
    error: str,
    timestamp: float,
) -> dict[str, Any]:
    """One result row (:data:`hpo.results.ROW_COLUMNS` + the Ray backend's columns and metrics)."""
    row: dict[str, Any] = {
        STUDY: spec.name,
        TRIAL_ID: trial_id,
        CONFIG: config_json(config),
        RESOURCE: resource,
        VALUE: value,
        METRIC: spec.objective.metric,
        MODE: spec.objective.mode,
        TIME: round(time, 3),
        TOTAL_RESOURCE: total_resource,
        DECISION: decision,
        BRACKET: bracket,
        RUNG: rung,
        STATUS: status,
        TIMESTAMP: timestamp,
        NODE: node,
        CHECKPOINT: str(metrics.get("checkpoint") or ""),
        ERROR: error,
    }
    for name, metric_value in metrics.items():
        if name in ("checkpoint", "epoch") or name.startswith("agvp_"):
            continue
        if isinstance(metric_value, (int, float)) and not isinstance(metric_value, bool):
            row[f"{METRIC_PREFIX}{name}"] = float(metric_value)
    return row


def load_state(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DriverError(f"{path}: no scheduler state to resume from") from None


def driver_identity() -> dict[str, Any]:
    return {"driver_pid": os.getpid(), "driver_host": socket.gethostname()}


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in state.json")
