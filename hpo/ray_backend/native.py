"""``ray-asha`` / ``ray-hyperband``: Ray Tune's own ASHAScheduler and HyperBandScheduler, unchanged, as
baselines. Configurations come from the study's searcher; every trial trains towards ``fidelity.max`` and
Ray's scheduler stops (ASHA) or pauses and resumes it (HyperBand, through the same pointer checkpoints as
our cores). Rows are recorded exactly as for our cores; the rung column uses our milestones, the bracket is
-1 (Ray does not expose it). Ray does not persist these schedulers' state, so such a study cannot resume.
"""

from __future__ import annotations

import math
import time
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.search import Searcher

from hpo.faults import fault_point
from hpo.ray_backend.adapter import NotPickled
from hpo.ray_backend.driver import driver_identity, improves, make_row
from hpo.ray_backend.trainable import ERROR_KEY
from hpo.results import TrialStatus
from hpo.schedulers.brackets import milestones
from hpo.searchers.base import finite_loss
from hpo.study.build import max_total_epochs, searcher_from_spec, trainer_settings
from hpo.study.folder import StudyFolder
from hpo.study.spec import RayAshaSpec, StudySpec


class NativeRecorder:
    """Rows, budget and best-so-far for a study run by one of Ray's schedulers."""

    def __init__(self, spec: StudySpec, folder: StudyFolder) -> None:
        self.spec = spec
        self.folder = folder
        self.milestones = milestones(spec.fidelity.max, spec.fidelity.eta, spec.fidelity.min)
        self.searcher = searcher_from_spec(spec)
        self.configs: dict[int, dict[str, Any]] = {}
        self.ray_ids: dict[str, int] = {}
        self.resource: dict[int, int] = {}
        self.status: dict[int, str] = {}
        self.total_resource = 0
        self.best: tuple[float, int, int] | None = None
        self.started = time.time()
        self._pending: list[dict[str, Any]] = []
        self._last_flush = self.started

    @property
    def elapsed(self) -> float:
        return time.time() - self.started

    def record(self, trial: Trial, result: dict[str, Any], decision: str) -> None:
        trial_id = self.ray_ids.get(trial.trial_id)
        if trial_id is None:
            return
        previous = self.resource.get(trial_id, 0)
        error = str(result.get(ERROR_KEY) or "")
        epoch = int(result.get("epoch", previous)) if not error else previous
        value = math.nan if error else float(result.get(self.spec.objective.metric, math.nan))
        self.total_resource += max(0, epoch - previous)
        self.resource[trial_id] = max(previous, epoch)
        if error:
            status = TrialStatus.FAILED.value
            decision = "stop"
        elif epoch >= self.spec.fidelity.max:
            status = TrialStatus.COMPLETED.value
        elif decision == "continue":
            status = TrialStatus.RUNNING.value
        elif decision == "pause":
            status = TrialStatus.PAUSED.value
        else:
            status = TrialStatus.STOPPED.value
        self.status[trial_id] = status
        if epoch in self.milestones and not error:
            loss = -value if self.spec.objective.mode == "max" else value
            self.searcher.observe(trial_id, self.configs[trial_id], epoch, finite_loss(loss))
        if improves(self.best, epoch, value, self.spec.objective.mode):
            self.best = (value, trial_id, epoch)
        self._pending.append(
            make_row(
                self.spec,
                trial_id=trial_id,
                config=self.configs[trial_id],
                resource=epoch,
                value=value,
                time=self.elapsed,
                total_resource=self.total_resource,
                decision=decision,
                bracket=-1,
                rung=self.milestones.index(epoch) if epoch in self.milestones else -1,
                status=status,
                metrics={} if error else result,
                node=str(result.get("node", "")),
                error=error,
                timestamp=time.time(),
            )
        )

    def flush(self, *, force: bool = False) -> None:
        if self._pending and (force or time.time() - self._last_flush >= 1.0):
            self.folder.store.append(self._pending)
            fault_point("part-written")
            self._pending = []
            self._last_flush = time.time()

    def summary(self) -> dict[str, Any]:
        counts = {status.value: 0 for status in TrialStatus}
        for status in self.status.values():
            counts[status] += 1
        counts[TrialStatus.RUNNING.value] += len(self.configs) - len(self.status)  # started, no report yet
        return {
            "study": self.spec.name,
            "counts": counts,
            "trials": len(self.configs),
            "max_trials": self.spec.budget.max_trials,
            "best": self.best,
            "metric": self.spec.objective.metric,
            "total_resource": self.total_resource,
            "max_total_resource": max_total_epochs(self.spec),
            "max_resource": self.spec.fidelity.max,
            "elapsed": self.elapsed,
            "wall_clock": self.spec.budget.wall_clock,
            "rungs": [(m, sum(1 for r in self.resource.values() if r >= m)) for m in self.milestones],
        }


class ConfigSearcher(NotPickled, Searcher):
    """New configurations from the study's searcher, up to ``budget.max_trials``."""

    def __init__(self, recorder: NativeRecorder, payload: Any, limit: Any) -> None:
        super().__init__(metric=None, mode=None)
        self.recorder = recorder
        self.payload = payload
        self.limit = limit

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        recorder = self.recorder
        max_trials = recorder.spec.budget.max_trials
        if self.limit() or (max_trials is not None and len(recorder.configs) >= max_trials):
            return Searcher.FINISHED
        number = len(recorder.configs)
        config = dict(recorder.searcher.suggest(number))
        recorder.configs[number] = config
        recorder.ray_ids[trial_id] = number
        return self.payload(number, config)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        """Nothing to do: results reach the searcher through :meth:`NativeRecorder.record`."""


def ray_scheduler(spec: StudySpec) -> Any:
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


def run_native(spec: StudySpec, folder: StudyFolder, *, address: str | None, progress: Any) -> Any:
    from hpo.ray_backend.adapter import RecordingScheduler, StudyStopper, throttle
    from hpo.ray_backend.runner import (
        StudyOutcome,
        check_inputs,
        cluster_concurrency,
        create_study_folder,
        make_tuner,
        refuse_existing,
        start_ray,
        trial_payload,
        write_best_yaml,
    )

    check_inputs(spec)
    refuse_existing(spec, folder, resumable=False)
    recorder = NativeRecorder(spec, folder)
    settings = trainer_settings(spec)
    budget = max_total_epochs(spec)
    reason: list[str] = []

    def limit() -> bool:
        if not reason:
            if folder.stop_file.exists():
                reason.append("stop requested")
            elif spec.budget.wall_clock is not None and recorder.elapsed >= spec.budget.wall_clock:
                reason.append(f"wall-clock budget of {spec.budget.wall_clock:.0f} s spent")
            elif budget is not None and recorder.total_resource >= budget:
                reason.append(f"epoch budget of {budget} spent")
        return bool(reason)

    def payload(number: int, config: dict[str, Any]) -> dict[str, Any]:
        return trial_payload(
            spec,
            folder,
            settings,
            trial_id=number,
            params=config,
            start=0,
            target=spec.fidelity.max,
            resume_from=None,
        )

    display_due = throttle(0.5)
    error: BaseException | None = None
    import ray

    start_ray(spec, folder, address)
    try:
        concurrency = cluster_concurrency(spec)  # before any file is written
        create_study_folder(spec, folder, status="running", sessions=1, **driver_identity())

        def on_step() -> None:
            recorder.flush()
            if progress is not None and display_due():
                progress({**recorder.summary(), "concurrency": concurrency, "stopping": None})

        tuner = make_tuner(
            spec,
            folder,
            searcher=ConfigSearcher(recorder, payload, limit),
            scheduler=RecordingScheduler(ray_scheduler(spec), recorder.record),
            stopper=StudyStopper(limit),
            on_step=on_step,
            session=1,
        )
        try:
            tuner.fit()
        finally:
            ray.shutdown()
    except BaseException as raised:
        error = raised
        ray.shutdown()
        raise
    finally:
        if folder.exists():
            _close(folder, recorder, reason, error)
    write_best_yaml(spec, folder)
    folder.store.compact()
    return StudyOutcome(
        folder,
        "stopped" if reason and "stop" in reason[0] else "finished",
        reason[0] if reason else "budget spent",
        recorder.elapsed,
        recorder.total_resource,
        len(recorder.configs),
    )


def _close(
    folder: StudyFolder, recorder: NativeRecorder, reason: list[str], error: BaseException | None
) -> None:
    """Flush the rows and write the final metadata (also when the run failed)."""
    from hpo.ray_backend.runner import write_metadata

    recorder.flush(force=True)
    status = "failed" if error is not None else ("stopped" if reason and "stop" in reason[0] else "finished")
    write_metadata(
        folder,
        recorder.summary(),
        status=status,
        reason=reason[0] if reason else ("budget spent" if error is None else None),
        error=None if error is None else f"{type(error).__name__}: {error}",
        ended=time.time(),
    )
