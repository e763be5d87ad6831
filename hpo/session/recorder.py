"""What every study session records, whoever schedules it: result rows, the journal of rows not yet stored,
the clock, the budget used, the best so far, and the live summary.

Two kinds of session share it: :class:`hpo.session.driver.StudyDriver` (our scheduler cores, with a
persisted scheduler state) and :class:`hpo.session.native.NativeRecorder` (Ray Tune's own schedulers,
recorded only). Rows are built by :func:`hpo.results.make_row` (the simulator's too), the journal is
flushed here (idempotently: see :meth:`Recorder.maybe_flush`), and the best so far follows one rule
(:func:`hpo.study.analysis.improves`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from hpo.faults import fault_point
from hpo.results import TrialStatus, make_row
from hpo.schedulers.brackets import milestones
from hpo.study.analysis import best_config_yaml, best_trials, improves
from hpo.study.folder import StudyFolder
from hpo.study.spec import StudySpec
from hpo.tracking import tracking_from_spec

log = logging.getLogger(__name__)

#: Merge the part files once there are more than this many (a reader opens every file).
COMPACT_AFTER_PARTS = 64


class StopReason(Enum):
    """Why a session ended. ``finished`` studies spent their budget; ``stopped`` ones can resume."""

    BUDGET = "budget spent"
    WALL_CLOCK = "wall-clock budget spent"
    REQUESTED = "stop requested"
    INTERRUPTED = "interrupted"
    BACKEND_ENDED = "Ray Tune ended before the scheduler did"

    @property
    def status(self) -> str:
        return "finished" if self in (StopReason.BUDGET, StopReason.WALL_CLOCK) else "stopped"


@dataclass(frozen=True)
class StudySummary:
    """What the live view, ``study.json`` and the service show of a running study."""

    study: str
    counts: dict[str, int]  # trials by state (running = a job in flight)
    trials: int
    max_trials: int | None
    best: tuple[float, int, int] | None  # (value, trial, epochs) at the highest fidelity reached
    metric: str
    total_resource: int  # epochs trained in all
    max_total_resource: int | None
    max_resource: int  # epochs of one full-budget run (FBE = total_resource / max_resource)
    elapsed: float
    wall_clock: float | None
    rungs: tuple[tuple[int, int], ...]  # (milestone epochs, trials that reached it)
    concurrency: int | None = None
    stopping: str | None = None  # why the study is stopping early, while it does

    def with_session(self, *, concurrency: int, stopping: str | None) -> StudySummary:
        return replace(self, concurrency=concurrency, stopping=stopping)


def occupancy(milestone_epochs: Iterable[int], reached: Iterable[int]) -> tuple[tuple[int, int], ...]:
    """(milestone, how many trials reached it) for every milestone, from each trial's epochs reached."""
    reached = list(reached)
    return tuple((m, sum(1 for r in reached if r >= m)) for m in milestone_epochs)


class Recorder:
    """Rows, journal, clock, budget used and best so far of one study session (see the module docstring).

    Subclasses say how many trials there are, their states and the epochs each reached
    (:meth:`counts`, :meth:`num_trials`, :meth:`reached`), and may persist more (:meth:`snapshot`).
    """

    def __init__(
        self, spec: StudySpec, folder: StudyFolder, *, flush_seconds: float = 1.0, clock: Any = time.time
    ) -> None:
        self.spec = spec
        self.folder = folder
        self.flush_seconds = flush_seconds
        self.clock = clock
        self.milestones = milestones(spec.fidelity.max, spec.fidelity.eta, spec.fidelity.min)
        self.total_resource = 0
        self.elapsed_before = 0.0  # seconds of earlier sessions
        self.best: tuple[float, int, int] | None = None
        self._pending: list[dict[str, Any]] = []
        self._journal_part: int | None = None  # the part number the pending rows will be stored as
        self._session_start = clock()
        self._last_flush = self._session_start
        self.tracking = tracking_from_spec(spec)  # MLflow / TensorBoard runs; none unless the spec asks

    # -- time -----------------------------------------------------------------------------------------

    def start_clock(self) -> None:
        """Trials are about to start (Ray is up): the session's time counts from now."""
        self._session_start = self.clock()
        self._last_flush = self._session_start

    @property
    def elapsed(self) -> float:
        """Seconds the study has run, over all sessions."""
        return self.elapsed_before + (self.clock() - self._session_start)

    # -- rows -----------------------------------------------------------------------------------------

    def add_row(
        self,
        *,
        trial_id: int,
        config: Mapping[str, Any],
        resource: int,
        value: float,
        decision: str,
        bracket: int,
        status: TrialStatus | str,
        metrics: Mapping[str, Any],
        node: str,
        error: str = "",
    ) -> dict[str, Any]:
        """Journal one row (it reaches the store at the next flush), update the best so far; returns it."""
        rung = self.milestones.index(resource) if resource in self.milestones else -1
        row = make_row(
            study=self.spec.name,
            metric=self.spec.objective.metric,
            mode=self.spec.objective.mode,
            trial_id=trial_id,
            config=config,
            resource=resource,
            value=value,
            time=self.elapsed,
            total_resource=self.total_resource,
            decision=decision,
            bracket=bracket,
            rung=rung,
            status=status.value if isinstance(status, TrialStatus) else status,
            metrics=metrics,
            node=node,
            error=error,
            timestamp=self.clock(),
        )
        self.journal_row(row)
        self.tracking.row(row, config)  # here, not in journal_row: rows replayed on resume are not tracked
        return row

    def journal_row(self, row: dict[str, Any], part: int | None = None) -> None:
        """Add a row made earlier to the journal (``part``: the part number it was journaled for)."""
        if self._journal_part is None:
            self._journal_part = part if part is not None else self.folder.store.last_number() + 1
        self._pending.append(row)
        value, resource = float(row["value"]), int(row["resource"])
        if not math.isnan(value) and improves(self.best, resource, value, self.spec.objective.mode):
            self.best = (value, int(row["trial_id"]), resource)

    def journal(self) -> dict[str, Any]:
        """The rows not yet stored and the part number they will be stored as (for ``state.json``)."""
        part = self._journal_part if self._journal_part is not None else self.folder.store.last_number() + 1
        return {"part": part, "rows": self._pending}

    def restore_journal(self, journal: Mapping[str, Any]) -> None:
        """Store a saved journal unless its part already is (the crash came after it was written)."""
        if journal.get("rows"):
            self.folder.store.append(journal["rows"], number=int(journal["part"]))

    def maybe_flush(self, *, force: bool = False) -> None:
        """Move the journal into the store if ``flush_seconds`` passed since the last flush (or ``force``).

        Idempotent: the rows go out as the part number the journal names, and a part that is already stored
        is not written again, so a signal landing between storing the part and forgetting the rows (and a
        handler that flushes once more) cannot store them twice.
        """
        now = self.clock()
        if not self._pending or (not force and now - self._last_flush < self.flush_seconds):
            return
        assert self._journal_part is not None  # set with the first pending row
        self.before_store()
        self.folder.store.append(self._pending, number=self._journal_part)
        fault_point("part-written")
        part = self._journal_part
        self._pending = []
        self._journal_part = None
        self._last_flush = now
        self.stored(part)
        if len(self.folder.store.files()) > COMPACT_AFTER_PARTS:
            self.folder.store.compact()
        self.tracking.flush()

    def end_tracking(self, *, finished: bool) -> None:
        """The session ends (after its last rows are stored): close the trials' tracking runs, with the best
        configuration (``best.yaml``'s text) as an artifact of the best trial's run."""
        if not self.tracking.enabled:
            return
        best: tuple[int, str] | None = None
        try:
            top = best_trials(self.folder.store.read(), self.spec.objective.mode, k=1)
            if not top.empty:
                best = (int(top.iloc[0]["trial_id"]), best_config_yaml(self.spec, top.iloc[0]["params"]))
        except Exception as error:  # tracking must never break a study
            log.warning("tracking: no best configuration to store (%s: %s)", type(error).__name__, error)
        self.tracking.close(finished=finished, best=best)

    def snapshot(self) -> None:  # optional hook: sessions with persisted state save it
        """Persist what a resume needs (nothing for a recorded-only session)."""

    def close(self, *, clean: bool) -> None:  # optional hook
        """The session ends (``clean``: normally, its state consistent; else by an exception)."""

    def before_store(self) -> None:  # optional hook
        """The journal is about to reach the store: what journals it must be durable first."""

    def stored(self, part: int) -> None:  # optional hook
        """The journal was stored as ``part`` and emptied: persist that."""
        self.snapshot()

    # -- what subclasses know -------------------------------------------------------------------------

    def num_trials(self) -> int:
        raise NotImplementedError

    def counts(self) -> dict[str, int]:
        raise NotImplementedError

    def reached(self) -> Iterable[int]:
        """Epochs each trial has reached."""
        raise NotImplementedError

    def max_total_resource(self) -> int | None:
        raise NotImplementedError

    # -- summary --------------------------------------------------------------------------------------

    def summary(self) -> StudySummary:
        return StudySummary(
            study=self.spec.name,
            counts=self.counts(),
            trials=self.num_trials(),
            max_trials=self.spec.budget.max_trials,
            best=self.best,
            metric=self.spec.objective.metric,
            total_resource=self.total_resource,
            max_total_resource=self.max_total_resource(),
            max_resource=self.spec.fidelity.max,
            elapsed=self.elapsed,
            wall_clock=self.spec.budget.wall_clock,
            rungs=occupancy(self.milestones, self.reached()),
        )
