"""Asynchronous successive halving (ASHA; Li et al., "A System for Massively Parallel Hyperparameter
Tuning", MLSys 2020), in its two flavours.

Rungs are the shared milestones floor(R eta^-k), k = s_max .. 0 (1, 3, 11, 33, 100 for R = 100, eta = 3).

* ``mode="promotion"`` (the paper's Algorithm 2): whenever a worker is free, scan the rungs top-down and
  PROMOTE (resume from its checkpoint to the next rung) the best configuration that is in the top
  floor(|rung_k| / eta) of rung k and has not been promoted yet; if no rung has one, start a new
  configuration at rung 0. Trials PAUSE at every rung. No barriers, so it scales with workers.
* ``mode="stopping"`` (what Ray Tune's ASHAScheduler and Optuna's SuccessiveHalvingPruner do): every trial
  is started towards R; at each rung it is STOPPED if its value is worse than the (1 - 1/eta) quantile of
  the values its rung has seen (itself included), else it continues. It never pauses or promotes.

ASHA's bracket is Hyperband's s = s_max (it starts every configuration at the smallest milestone).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from hpo.results import TrialStatus
from hpo.schedulers.base import Decision, Job, JobKind, Mode, SchedulerCore, _Proposal
from hpo.schedulers.options import SchedulerOptions, needs_two_rungs
from hpo.searchers.base import Searcher

AshaMode = Literal["promotion", "stopping"]


def promotable(losses: Sequence[float], reduction_factor: int) -> int:
    """How many of a rung's configurations are promotable: floor(|rung| / eta) (ASHA, Algorithm 2)."""
    return len(losses) // reduction_factor


def stops_at_rung(loss: float, sorted_losses: Sequence[float], reduction_factor: int) -> bool:
    """Stopping ASHA's rule: is ``loss`` worse (higher) than the 1/eta quantile of the rung's losses
    (``sorted_losses``, ascending, ``loss`` itself included), i.e. outside the best 1/eta? The first
    configuration at a rung always continues. This is Ray Tune's cutoff (its (1 - 1/eta) percentile of
    the metric, for losses instead of metrics), with numpy's linear interpolation between order
    statistics, computed from the sorted list in O(1)."""
    position = (len(sorted_losses) - 1) / reduction_factor
    low = math.floor(position)
    high = min(low + 1, len(sorted_losses) - 1)
    cutoff = sorted_losses[low] + (position - low) * (sorted_losses[high] - sorted_losses[low])
    return loss > cutoff


class ASHAOptions(SchedulerOptions):
    """Asynchronous successive halving (Li et al., MLSys 2020).

    ``mode``: ``promotion`` is the paper's rule (a free worker promotes a configuration in the top 1/eta
    of a rung, else starts a new one; trials pause at milestones and resume from checkpoints); ``stopping``
    lets trials run and stops one that falls below the rung's (1 - 1/eta) quantile (what Ray's ASHA does).
    """

    mode: AshaMode = "promotion"

    def core_options(self) -> dict[str, Any]:
        return {"asha_mode": self.mode}  # the core's own `mode` is the objective's max/min

    def check_fidelity(self, fidelity: Any) -> None:
        needs_two_rungs("asha", fidelity)


class ASHACore(SchedulerCore):
    """ASHA; ``asha_mode`` is ``"promotion"`` (default, the paper) or ``"stopping"`` (Ray Tune's)."""

    name = "asha"
    Options = ASHAOptions

    def __init__(
        self,
        searcher: Searcher,
        *,
        max_resource: int,
        reduction_factor: int = 3,
        min_resource: int = 1,
        mode: Mode = "max",
        max_trials: int | None = None,
        max_total_resource: int | None = None,
        retrain: bool = False,
        asha_mode: AshaMode = "promotion",
    ) -> None:
        super().__init__(
            searcher,
            max_resource=max_resource,
            reduction_factor=reduction_factor,
            min_resource=min_resource,
            mode=mode,
            max_trials=max_trials,
            max_total_resource=max_total_resource,
            retrain=retrain,
        )
        if asha_mode not in ("promotion", "stopping"):
            raise ValueError(f"asha_mode is {asha_mode!r}, but must be 'promotion' or 'stopping'")
        self.asha_mode: AshaMode = asha_mode
        # rungs[k]: trial ids that reported at milestones[k], in arrival order (the top rung is not kept:
        # nothing is promoted from it). The sorted views are derived data, rebuilt on load.
        self._rungs: list[list[int]] = [[] for _ in self.milestones[:-1]]
        self._promoted: list[set[int]] = [set() for _ in self.milestones[:-1]]
        self._rebuild_views()

    def _rebuild_views(self) -> None:
        # (loss, trial id) ascending = best first, ties to the older trial, as SchedulerCore._ranked.
        # _sorted ranks the configurations that hold or may take a promotion slot: a trial that failed after
        # being promoted from rung k gives its slot back (see _on_failed), so it leaves rung k's ranking.
        self._sorted: list[list[tuple[float, int]]] = []
        self._waiting: list[list[tuple[float, int]]] = []  # not yet promoted
        self._sorted_losses: list[list[float]] = []
        for k, members in enumerate(self._rungs):
            keyed = [(self.loss(self._trials[t].values[self.milestones[k]]), t) for t in members]
            self._sorted_losses.append(sorted(loss for loss, _ in keyed))
            self._sorted.append(sorted(e for e in keyed if not self._burned(e[1], k)))
            self._waiting.append(sorted(e for e in keyed if e[1] not in self._promoted[k]))

    def _last_promotion(self, trial_id: int) -> int | None:
        """The rung ``trial_id`` was last promoted out of (None: never promoted)."""
        promoted = [k for k, members in enumerate(self._promoted) if trial_id in members]
        return promoted[-1] if promoted else None

    def _burned(self, trial_id: int, k: int) -> bool:
        """Trial ``trial_id`` was promoted out of rung ``k`` and failed before reaching the next rung."""
        failed = self._trials[trial_id].status is TrialStatus.FAILED
        return failed and self._last_promotion(trial_id) == k

    def rung_members(self, k: int) -> list[int]:
        """Trial ids recorded at rung ``k``, in arrival order."""
        return list(self._rungs[k])

    def promoted(self, k: int) -> set[int]:
        """Trial ids already promoted out of rung ``k``."""
        return set(self._promoted[k])

    def _propose(self, can_start: bool) -> _Proposal | None:
        if self.asha_mode == "stopping":
            return _Proposal(None, self.max_resource, self.s_max) if can_start else None
        for k in range(len(self._rungs) - 1, -1, -1):
            # The best configuration not yet promoted is promotable iff it is within the top
            # floor(|rung| / eta): compare it with the entry at that position.
            top = min(promotable(self._rungs[k], self.reduction_factor), len(self._sorted[k]))
            if top and self._waiting[k] and self._waiting[k][0] <= self._sorted[k][top - 1]:
                return _Proposal(self._waiting[k][0][1], self.milestones[k + 1], self.s_max)
        return _Proposal(None, self.milestones[0], self.s_max) if can_start else None

    def _accept(self, job: Job) -> None:
        if job.kind is JobKind.RESUME:
            k = self.milestones.index(job.start)
            self._promoted[k].add(job.trial_id)
            self._waiting[k].pop(0)  # _propose always promotes the best waiting configuration

    def _decide(self, trial_id: int, resource: int, value: float) -> Decision:
        k = self.milestones.index(resource)
        if k == len(self.milestones) - 1:
            return Decision.STOP
        loss = self.loss(value)
        self._rungs[k].append(trial_id)
        bisect.insort(self._sorted_losses[k], loss)
        bisect.insort(self._sorted[k], (loss, trial_id))
        if self.asha_mode == "promotion":
            bisect.insort(self._waiting[k], (loss, trial_id))
            return Decision.PAUSE
        return (
            Decision.STOP
            if stops_at_rung(loss, self._sorted_losses[k], self.reduction_factor)
            else Decision.CONTINUE
        )

    def _on_failed(self, trial_id: int, target: int | None) -> None:
        """A promoted trial that failed gives its promotion slot back: it leaves the ranking of the rung it
        was promoted from (the slot count, floor(|rung| / eta), keeps counting it), so the next best waiting
        configuration becomes promotable. Without this, crashing trials use up every slot and no healthy
        trial gets past the rung."""
        k = self._last_promotion(trial_id)
        if k is None:
            return  # failed before any promotion: it holds no slot
        self._sorted[k].remove((self.loss(self._trials[trial_id].values[self.milestones[k]]), trial_id))

    def _settings(self) -> dict[str, Any]:
        return {**super()._settings(), "asha_mode": self.asha_mode}

    def _extra_state(self) -> dict[str, Any]:
        return {"rungs": self._rungs, "promoted": [sorted(p) for p in self._promoted]}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        self._rungs = [[int(t) for t in rung] for rung in state["rungs"]]
        self._promoted = [{int(t) for t in p} for p in state["promoted"]]
        self._rebuild_views()
