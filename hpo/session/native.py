"""The record of a study run by one of Ray Tune's own schedulers (``ray-asha``, ``ray-hyperband``): rows,
budget, best so far and the study's searcher, kept exactly as for our cores (the rung column uses our
milestones; the bracket is -1, Ray does not expose it). Ray does not persist these schedulers' state, so
such a study records, but cannot resume.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from hpo.results import ERROR_KEY, TrialStatus
from hpo.searchers.base import objective_loss
from hpo.session.recorder import Recorder
from hpo.study.build import max_total_epochs, searcher_from_spec
from hpo.study.folder import StudyFolder
from hpo.study.spec import StudySpec


class NativeRecorder(Recorder):
    """Rows, budget and best-so-far for a study run by one of Ray's schedulers."""

    def __init__(self, spec: StudySpec, folder: StudyFolder, **kwargs: Any) -> None:
        super().__init__(spec, folder, **kwargs)
        self.searcher = searcher_from_spec(spec)
        self.configs: dict[int, dict[str, Any]] = {}
        self.ray_ids: dict[str, int] = {}
        self.resource: dict[int, int] = {}
        self.status: dict[int, str] = {}

    def new_trial(self, ray_trial_id: str) -> tuple[int, dict[str, Any]]:
        """Number and configuration of the next trial (the study's searcher chooses)."""
        number = len(self.configs)
        config = dict(self.searcher.suggest(number))
        self.configs[number] = config
        self.ray_ids[ray_trial_id] = number
        return number, config

    def record(self, ray_trial_id: str, result: dict[str, Any], decision: str) -> bool:
        """Ray's scheduler answered ``decision`` (continue / pause / stop) to ``result``. Returns whether the
        trial failed (an error, or a non-finite objective): it must stop, whatever Ray's scheduler said."""
        trial_id = self.ray_ids.get(ray_trial_id)
        if trial_id is None or self.status.get(trial_id) == TrialStatus.FAILED.value:
            return True
        previous = self.resource.get(trial_id, 0)
        metric = self.spec.objective.metric
        error = str(result.get(ERROR_KEY) or "")
        value = math.nan if error else float(result.get(metric, math.nan))
        if not error and not math.isfinite(value):
            error = f"the objective {metric} is {value} at epoch {result.get('epoch')}"
        epoch = int(result.get("epoch", previous)) if not error else previous
        self.total_resource += max(0, epoch - previous)
        self.resource[trial_id] = max(previous, epoch)
        if error:
            status = TrialStatus.FAILED
            decision = "stop"
        elif epoch >= self.spec.fidelity.max:
            status = TrialStatus.COMPLETED
        elif decision == "continue":
            status = TrialStatus.RUNNING
        elif decision == "pause":
            status = TrialStatus.PAUSED
        else:
            status = TrialStatus.STOPPED
        self.status[trial_id] = status.value
        if epoch in self.milestones and not error:
            loss = objective_loss(value, self.spec.objective.mode)
            self.searcher.observe(trial_id, self.configs[trial_id], epoch, loss)
        self.add_row(
            trial_id=trial_id,
            config=self.configs[trial_id],
            resource=epoch,
            value=value,
            decision=decision,
            bracket=-1,
            status=status,
            metrics={} if error else result,
            node=str(result.get("node", "")),
            error=error,
        )
        return bool(error)

    def num_trials(self) -> int:
        return len(self.configs)

    def counts(self) -> dict[str, int]:
        counts = {status.value: 0 for status in TrialStatus}
        for status in self.status.values():
            counts[status] += 1
        counts[TrialStatus.RUNNING.value] += len(self.configs) - len(self.status)  # started, no report yet
        return counts

    def reached(self) -> Iterable[int]:
        return self.resource.values()

    def max_total_resource(self) -> int | None:
        return max_total_epochs(self.spec)
