"""Run a scheduler core and its searcher against a learning-curve function in simulated time.

The simulator is a backend like the Ray adapter (Syne Tune's simulator backend is the model): ``workers``
simulated workers train trials whose value after ``resource`` epochs is ``curve(config, resource)``; one
epoch of a configuration takes ``epoch_cost`` simulated seconds (a number, or a function of the
configuration). A resumed trial continues from its checkpoint and pays only the extra epochs; with
``checkpoints=False`` a resumed trial retrains from epoch 0 (the epochs it redoes are counted, but it does
not report them again). A core that ``retrains`` (a data-fraction fidelity) gets one report per job, at its
target, and every job pays its whole target. Trials report at every milestone they pass and at their job's
target (or every epoch with ``report_every_epoch=True``), and every report becomes one result row with
exactly the columns of :data:`hpo.results.ROW_COLUMNS`, as the real backend writes them. Events at equal
times are processed in the order they were scheduled, so a run is a pure function of the core, the curve
and the settings. ``fails(config, resource)`` injects crashes: a trial for which it is true fails instead of
reporting at ``resource`` (one row with status ``failed`` and a NaN value).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hpo.results import ROW_COLUMNS, TrialStatus, make_row
from hpo.schedulers.base import Decision, Job, SchedulerCore

#: ``curve(config, resource)``: the objective after ``resource`` epochs of training ``config``.
LearningCurve = Callable[[Mapping[str, Any], int], float]


@dataclass(frozen=True)
class SimulationResult:
    """The rows written, each trial's final status, and the totals (epochs trained, simulated seconds)."""

    rows: tuple[dict[str, Any], ...]
    final_status: dict[int, TrialStatus]
    total_resource: int
    time: float


@dataclass
class _Running:
    job: Job
    points: list[int]  # the epochs this job reports at
    index: int
    trained: int  # epochs trained so far in this job's run (from 0 when retraining without checkpoint)


def simulate(
    core: SchedulerCore,
    curve: LearningCurve,
    *,
    workers: int = 1,
    epoch_cost: float | Callable[[Mapping[str, Any]], float] = 1.0,
    checkpoints: bool = True,
    report_every_epoch: bool = False,
    study: str = "simulation",
    metric: str = "value",
    fails: Callable[[Mapping[str, Any], int], bool] | None = None,
) -> SimulationResult:
    """Run ``core`` until it has nothing more to run; see the module docstring."""
    if workers < 1:
        raise ValueError(f"workers is {workers}, but must be >= 1")
    if not callable(epoch_cost) and not (math.isfinite(epoch_cost) and epoch_cost > 0):
        raise ValueError(f"epoch_cost is {epoch_cost}, but must be a finite number > 0 (or a function)")

    def seconds_per_epoch(config: Mapping[str, Any]) -> float:
        cost = float(epoch_cost(config)) if callable(epoch_cost) else float(epoch_cost)
        if not (math.isfinite(cost) and cost > 0):
            raise ValueError(
                f"epoch_cost returned {cost} for {dict(config)}, but must be a finite number > 0"
            )
        return cost

    rows: list[dict[str, Any]] = []
    final: dict[int, TrialStatus] = {}
    running: dict[int, _Running] = {}
    events: list[tuple[float, int, int]] = []  # (time, sequence number, trial id)
    sequence = 0
    clock = 0.0
    total = 0
    free = workers

    def schedule(trial_id: int, state: _Running) -> None:
        nonlocal sequence
        epochs = state.points[state.index] - state.trained
        heapq.heappush(events, (clock + epochs * seconds_per_epoch(state.job.config), sequence, trial_id))
        sequence += 1

    while True:
        while free > 0:
            job = core.suggest()
            if job is None:
                break
            free -= 1
            if core.retrain:  # a fidelity whose jobs train a whole schedule: one report, at the end
                points = [job.resource]
            elif report_every_epoch:
                points = list(range(job.start + 1, job.resource + 1))
            else:
                points = [m for m in core.milestones if job.start < m < job.resource] + [job.resource]
            state = _Running(job, points, 0, job.start if checkpoints and not job.retrain else 0)
            running[job.trial_id] = state
            schedule(job.trial_id, state)
        if not events:
            break
        clock, _, trial_id = heapq.heappop(events)
        state = running[trial_id]
        resource = state.points[state.index]
        total += resource - state.trained
        state.trained = resource
        if fails is not None and fails(state.job.config, resource):
            # The trainer crashed before reporting this epoch: the core releases the trial.
            core.fail(trial_id)
            value, decision = float("nan"), Decision.STOP
        else:
            value = float(curve(state.job.config, resource))
            decision = core.report(trial_id, resource, value)
        status = core.status(trial_id)
        rung = core.rung_of(resource)
        row = make_row(
            study=study,
            metric=metric,
            mode=core.mode,
            trial_id=trial_id,
            config=state.job.config,
            resource=resource,
            value=value,
            time=clock,
            total_resource=total,
            decision=decision.value,
            bracket=state.job.bracket,
            rung=-1 if rung is None else rung,
            status=status.value,
            metrics={},
            node="",
            error="",
            timestamp=clock,
        )
        rows.append({column: row[column] for column in ROW_COLUMNS})
        if decision is Decision.CONTINUE:
            state.index += 1
            schedule(trial_id, state)
        else:
            del running[trial_id]
            free += 1
        for stopped in core.drain_stopped():
            final[stopped] = TrialStatus.STOPPED
    for trial_id in range(core.num_trials):
        status = core.status(trial_id)
        # A study that ends leaves paused trials behind; they will never run again.
        final[trial_id] = TrialStatus.STOPPED if status is TrialStatus.PAUSED else status
    return SimulationResult(tuple(rows), final, total, clock)
