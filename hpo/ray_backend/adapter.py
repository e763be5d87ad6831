"""Ray Tune plumbing around the :class:`StudyDriver`: a ``Searcher`` that turns the core's jobs into Ray
trials, a ``TrialScheduler`` that answers each report with the core's decision, and a ``Stopper`` for the
wall-clock budget and stop requests.

How Ray Tune's loop meets the core's (DESIGN principle 1): Ray asks the searcher for a new trial at every
step; :class:`JobSearcher` asks the core only while fewer jobs run than ``concurrency`` (a worker is free),
so the core decides at the moment the simulator would. Each report reaches :class:`CoreScheduler`, which
returns CONTINUE, or STOP for the core's PAUSE and STOP (a pause ends the job's Ray trial; see
:mod:`hpo.session.driver`). ``ray-asha`` / ``ray-hyperband`` use Ray's schedulers unchanged, wrapped
only to record rows (:class:`RecordingScheduler`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray.tune import Callback, Stopper
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from hpo.ray_backend.trainable import prune_epoch_files
from hpo.results import ERROR_KEY
from hpo.schedulers.base import Decision, Job
from hpo.session.driver import StudyDriver
from hpo.session.native import NativeRecorder
from hpo.session.recorder import Recorder, StopReason
from hpo.study.build import max_total_epochs
from hpo.study.spec import RayAshaSpec, StudySpec

#: Builds the Ray trial config of a job: (job, checkpoint to start from) -> config.
Payload = Callable[[Job, "str | None"], dict[str, Any]]


class NotPickled:
    """Tuner pickles its search algorithm, scheduler, stopper and callbacks for ``Tuner.restore``, which
    we never use (the driver's own state file is the resume path). These objects hold the live driver and
    display, which cannot be pickled, so they pickle as empty shells."""

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        pass


class StudyStop:
    """When the study must stop early: a stop requested (the STOP file), the wall-clock budget spent, or
    (for Ray's own schedulers, which know no budget) the epoch budget spent."""

    def __init__(self, recorder: Recorder, spec: StudySpec, stop_file: Path) -> None:
        self.recorder = recorder
        self.wall_clock = spec.budget.wall_clock
        self.epochs = max_total_epochs(spec) if isinstance(recorder, NativeRecorder) else None
        self.stop_file = stop_file
        self.reason: StopReason | None = None
        self.detail = ""  # the reason in words, with its figures

    def check(self) -> bool:
        if self.reason is None:
            if self.stop_file.exists():
                self.reason, self.detail = StopReason.REQUESTED, StopReason.REQUESTED.value
            elif self.wall_clock is not None and self.recorder.elapsed >= self.wall_clock:
                self.reason = StopReason.WALL_CLOCK
                self.detail = f"wall-clock budget of {self.wall_clock:.0f} s spent"
            elif self.epochs is not None and self.recorder.total_resource >= self.epochs:
                self.reason, self.detail = StopReason.BUDGET, f"epoch budget of {self.epochs} spent"
        return self.reason is not None


class StudyStopper(NotPickled, Stopper):
    """Stops the whole experiment when ``check()`` says so (trials are never stopped one by one here)."""

    def __init__(self, check: Callable[[], bool]) -> None:
        self.check = check

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.check()


class StepCallback(NotPickled, Callback):
    """Calls ``on_step()`` after every step of Ray Tune's loop (flushes, metadata, the live view)."""

    def __init__(self, on_step: Callable[[], None]) -> None:
        self.on_step = on_step

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        self.on_step()


def error_text(trial: Trial) -> str:
    """The last line of a failed Ray trial's error (its exception), or a generic message."""
    path = trial.error_file
    if path and Path(path).is_file():
        lines = [
            line for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines() if line
        ]
        if lines:
            return lines[-1]
    return "the trial failed (no error message)"


class JobSearcher(NotPickled, Searcher):
    """Hands the core's jobs to Ray as new trials, one per free worker."""

    def __init__(self, driver: StudyDriver, payload: Payload, concurrency: int, stop: StudyStop) -> None:
        super().__init__(metric=None, mode=None)
        self.driver = driver
        self.payload = payload
        self.concurrency = concurrency
        self.stop = stop
        self.jobs: dict[str, Job] = {}  # Ray trial id -> the job it runs

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.stop.check():
            return Searcher.FINISHED
        if len(self.driver.running) >= self.concurrency:
            return None
        issued = self.driver.next_job()
        if issued is None:
            return Searcher.FINISHED if self.driver.done else None
        job, resume_from = issued
        self.jobs[trial_id] = job
        return self.payload(job, resume_from)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        """Nothing to do: :class:`CoreScheduler` has already told the driver."""


class CoreScheduler(NotPickled, FIFOScheduler):
    """Answers every report with the core's decision (PAUSE and STOP both end the Ray trial)."""

    def __init__(self, driver: StudyDriver, searcher: JobSearcher, stop: StudyStop) -> None:
        super().__init__()
        self.driver = driver
        self.searcher = searcher
        self.stop = stop

    def _current(self, trial: Trial) -> Job | None:
        """The job ``trial`` runs, if the driver still counts it as running."""
        job = self.searcher.jobs.get(trial.trial_id)
        if job is None:
            return None
        running = self.driver.running.get(job.trial_id)
        return job if running is not None and running.job is job else None

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        job = self._current(trial)
        if job is None:
            return TrialScheduler.STOP
        node = str(result.get("node", ""))
        if result.get(ERROR_KEY):
            self.driver.fail(job.trial_id, str(result[ERROR_KEY]), node=node)
            return TrialScheduler.STOP
        decision = self.driver.report(job.trial_id, result, node=node)
        checkpoint = self.driver.trials[job.trial_id].checkpoint
        if decision is not Decision.CONTINUE and checkpoint:
            # the job ends here: once the state naming its last file is durable, it leaves that one file
            self.driver.make_durable()
            prune_epoch_files(self.driver.folder.trial_dir(job.trial_id), keep={Path(checkpoint)})
        return TrialScheduler.CONTINUE if decision is Decision.CONTINUE else TrialScheduler.STOP

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        job = self._current(trial)
        if job is not None:
            self.driver.fail(job.trial_id, error_text(trial))

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> None:
        self._ended_without_decision(trial)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        self._ended_without_decision(trial)

    def _ended_without_decision(self, trial: Trial) -> None:
        job = self._current(trial)
        if job is None:
            return
        if self.stop.check():
            self.driver.abandon(job.trial_id)  # resume relaunches it from its checkpoint
        else:
            self.driver.fail(job.trial_id, f"the trainer returned before epoch {job.resource}")


class ConfigSearcher(NotPickled, Searcher):
    """New configurations from the study's searcher for Ray's own schedulers, up to ``budget.max_trials``."""

    def __init__(
        self, recorder: NativeRecorder, payload: Callable[[int, dict[str, Any]], Any], stop: StudyStop
    ) -> None:
        super().__init__(metric=None, mode=None)
        self.recorder = recorder
        self.payload = payload
        self.stop = stop

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        max_trials = self.recorder.spec.budget.max_trials
        if self.stop.check() or (max_trials is not None and self.recorder.num_trials() >= max_trials):
            return Searcher.FINISHED
        number, config = self.recorder.new_trial(trial_id)
        return self.payload(number, config)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        """Nothing to do: results reach the searcher through :meth:`NativeRecorder.record`."""


def ray_scheduler(spec: StudySpec) -> Any:
    """Ray Tune's own ASHAScheduler / HyperBandScheduler for ``ray-asha`` / ``ray-hyperband``, unchanged."""
    from ray.tune.schedulers import ASHAScheduler, HyperBandScheduler

    fidelity, objective = spec.fidelity, spec.objective
    if isinstance(spec.scheduler, RayAshaSpec):
        return ASHAScheduler(
            time_attr="epoch",
            metric=objective.metric,
            mode=objective.mode,
            max_t=fidelity.max,
            grace_period=spec.scheduler.grace_period or fidelity.min,
            reduction_factor=spec.scheduler.reduction_factor or fidelity.eta,
        )
    return HyperBandScheduler(
        time_attr="epoch",
        metric=objective.metric,
        mode=objective.mode,
        max_t=fidelity.max,
        reduction_factor=fidelity.eta,
    )


class RecordingScheduler(NotPickled, TrialScheduler):
    """Ray's own scheduler, unchanged, with each decision recorded as a result row."""

    def __init__(self, inner: TrialScheduler, record: Callable[[str, dict[str, Any], str], bool]) -> None:
        super().__init__()
        self.inner = inner
        self.record = record

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return self.inner.set_search_properties(metric, mode, **spec)

    @property
    def metric(self) -> str | None:
        return self.inner.metric

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        self.inner.on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        self.inner.on_trial_error(tune_controller, trial)
        self.record(trial.trial_id, {ERROR_KEY: error_text(trial)}, "stop")

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        decision = self.inner.on_trial_result(tune_controller, trial, result)
        failed = self.record(
            trial.trial_id, result, {"CONTINUE": "continue", "PAUSE": "pause"}.get(decision, "stop")
        )
        return TrialScheduler.STOP if failed else decision

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> None:
        self.inner.on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        self.inner.on_trial_remove(tune_controller, trial)

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        return self.inner.choose_trial_to_run(tune_controller)

    def debug_string(self) -> str:
        return self.inner.debug_string()


def throttle(seconds: float) -> Callable[[], bool]:
    """A function that returns True at most once per ``seconds``."""
    last = [0.0]

    def due() -> bool:
        now = time.monotonic()
        if now - last[0] >= seconds:
            last[0] = now
            return True
        return False

    return due
