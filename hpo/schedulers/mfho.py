"""MFHO, the seed report's scheduler as it reads (AG-VPReID 2025 challenge report, Appendix A.4): "random
configurations at a low fidelity, compared with the best so far; promising ones re-evaluated at a higher
fidelity", in rounds. (:mod:`hpo.schedulers.mfho_hedge` is a self-hedging asynchronous variant.)

Made precise, with the study's rungs m_0 < ... < m_K = R (:func:`hpo.schedulers.brackets.milestones`):

1. The fidelities of a round are the rungs from ``initial_fidelity`` (f_0, default ``fidelity.min``) up to R.
2. A round starts n = ceil((1 / p)^(L - 1)) new configurations at f_0 (p = ``promote_fraction``, default
   1/eta; L = the number of fidelities), so that about one of them reaches R if the round is as good as the
   rounds before it.
3. When every configuration of the round has reported at fidelity f_l (the round's barrier), each is
   compared with the best so far: it is promoted - resumed from its checkpoint to f_{l+1}, best first - iff
   its value ranks within the best max(1, floor(p N_l)) of the N_l values measured at f_l in *all* rounds so
   far. The others stop. A round whose configurations are all worse than the best so far ends early, which
   is where MFHO saves budget over repeating successive halving.
4. A round ends when no configuration is promoted, or at R; the next round starts, until ``max_rounds``
   rounds or the study's budget.

With one round this is successive halving (SH with eta = 1/p); over rounds it is successive halving whose
rungs remember earlier rounds, so later rounds only spend high fidelities on configurations that beat what
was seen. Its bracket number (Hyperband's s, for the result rows) is L - 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pydantic import Field

from hpo.fields import Count, Real
from hpo.results import TrialStatus
from hpo.schedulers.base import Decision, Job, JobKind, Mode, SchedulerCore, _Proposal
from hpo.schedulers.options import SchedulerOptions
from hpo.searchers.base import Searcher
from hpo.space import FieldError


def round_plan(
    max_resource: int,
    reduction_factor: int = 3,
    min_resource: int = 1,
    initial_fidelity: int | None = None,
    promote_fraction: float | None = None,
) -> list[tuple[int, int]]:
    """One round as successive halving would run it alone: ``(epochs, configurations)`` per fidelity,
    ``ceil((1/p)^(L-1))`` at the first and ``max(1, floor(p n))`` of the ``n`` at each next one. Later rounds
    promote fewer when earlier rounds were better (the comparison is with every round so far)."""
    from hpo.schedulers.brackets import milestones

    rungs = milestones(max_resource, reduction_factor, min_resource)
    start = rungs[0] if initial_fidelity is None else initial_fidelity
    fraction = 1.0 / reduction_factor if promote_fraction is None else promote_fraction
    levels = [m for m in rungs if m >= start]
    n = math.ceil((1.0 / fraction) ** (len(levels) - 1) - 1e-9)
    plan = []
    for level in levels:
        plan.append((level, n))
        n = max(1, math.floor(fraction * n + 1e-9))
    return plan


class MFHOOptions(SchedulerOptions):
    """MFHO's rounds (see :mod:`hpo.schedulers.mfho`).

    - ``initial_fidelity``: the rung at which new configurations are first evaluated (``None`` =
      ``fidelity.min``); one of the study's rungs below ``fidelity.max``.
    - ``promote_fraction``: the share of a fidelity's results (over all rounds) a configuration must rank
      within to be promoted, in (0, 1) (``None`` = 1 / ``fidelity.eta``, successive halving's rate).
    - ``max_rounds``: stop after this many rounds (``None`` = until the budget runs out).
    """

    initial_fidelity: Count | None = Field(None, ge=1)
    promote_fraction: Real | None = Field(None, gt=0.0, lt=1.0)
    max_rounds: Count | None = Field(None, ge=1, le=1_000_000)

    def check_fidelity(self, fidelity: Any) -> None:
        from hpo.schedulers.brackets import milestones

        rungs = milestones(fidelity.max, fidelity.eta, fidelity.min)
        if self.initial_fidelity is not None and self.initial_fidelity not in rungs[:-1]:
            raise FieldError(
                ("scheduler", "initial_fidelity"),
                f"must be one of the rungs below fidelity.max ({', '.join(map(str, rungs[:-1]))}), "
                f"got {self.initial_fidelity}",
            )


class MFHOCore(SchedulerCore):
    """MFHO in rounds; see the module docstring."""

    name = "mfho"
    Options = MFHOOptions

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
        initial_fidelity: int | None = None,
        promote_fraction: float | None = None,
        max_rounds: int | None = None,
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
        start = self.milestones[0] if initial_fidelity is None else initial_fidelity
        if start not in self.milestones[:-1]:
            raise ValueError(f"initial_fidelity is {start}, but must be one of {list(self.milestones[:-1])}")
        fraction = 1.0 / reduction_factor if promote_fraction is None else promote_fraction
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"promote_fraction is {fraction}, but must be in (0, 1)")
        if max_rounds is not None and max_rounds < 1:
            raise ValueError(f"max_rounds is {max_rounds}, but must be >= 1 (or None)")
        self.initial_fidelity = start
        self.promote_fraction = fraction
        self.max_rounds = max_rounds
        plan = round_plan(max_resource, reduction_factor, min_resource, start, fraction)
        self.levels = [level for level, _ in plan]
        self.round_size = plan[0][1]
        self.bracket = len(self.levels) - 1
        # the current round: its number (0 = none yet), level, members at that level, and who awaits a resume
        self._round = 0
        self._level = 0
        self._members: list[int] = []
        self._queue: list[int] = []
        self._size = self.round_size

    # -- proposals -------------------------------------------------------------------------------------

    def _propose(self, can_start: bool) -> _Proposal | None:
        while True:
            if self._round == 0 or self._round_over():
                if self.max_rounds is not None and self._round >= self.max_rounds:
                    return None
                if not can_start:
                    return None
                self._open_round()
            if self._level == 0 and len(self._members) < self._size:
                if can_start:
                    return _Proposal(None, self.levels[0], self.bracket)
                self._size = len(self._members)  # max_trials: the round goes on with what it has
                if not self._members:
                    return None
            if self._queue:
                return _Proposal(self._queue[0], self.levels[self._level], self.bracket)
            if not self._barrier_reached():
                return None  # members still train towards this level
            self._promote()  # then: resume the promoted, or (round over) open the next round

    def _open_round(self) -> None:
        self._round += 1
        self._level = 0
        self._members = []
        self._queue = []
        self._size = self.round_size

    def _round_over(self) -> bool:
        return self._level >= len(self.levels) or (self._level > 0 and not self._members and not self._queue)

    def _barrier_reached(self) -> bool:
        """Every member of the round at the current level has reported there (or failed)."""
        if self._level == 0 and len(self._members) < self._size:
            return False
        level = self.levels[self._level]
        for trial_id in self._members:
            trial = self._trials[trial_id]
            if trial.status is TrialStatus.RUNNING or (
                trial.status is not TrialStatus.FAILED and level not in trial.values
            ):
                return False
        return True

    def _promote(self) -> None:
        """The round's barrier at level l: promote those among the best of all rounds, stop the rest."""
        level = self.levels[self._level]
        if self._level == len(self.levels) - 1:
            self._level += 1  # the round reached R: it is over
            return
        alive = [t for t in self._members if self._trials[t].status is not TrialStatus.FAILED]
        measured = [t for t, trial in self._trials.items() if level in trial.values]
        allowed = max(1, math.floor(self.promote_fraction * len(measured)))
        best = set(self._ranked(measured, level)[:allowed])
        promoted = [t for t in self._ranked(alive, level) if t in best]
        for trial_id in alive:
            if trial_id not in best:
                self._retire(trial_id)
        self._level += 1
        self._members = promoted
        self._queue = list(promoted)

    def _accept(self, job: Job) -> None:
        if job.kind is JobKind.RESUME:
            self._queue.remove(job.trial_id)
        else:
            self._members.append(job.trial_id)

    # -- decisions -------------------------------------------------------------------------------------

    def _decide(self, trial_id: int, resource: int, value: float) -> Decision:
        if resource == self.max_resource:
            return Decision.STOP
        return Decision.PAUSE if resource in self.levels else Decision.CONTINUE

    def _on_failed(self, trial_id: int, target: int | None) -> None:
        if self._level == 0 and trial_id in self._members:
            self._members.remove(trial_id)  # a new configuration takes its place in the round
        # at a later level it stays a member: the barrier counts it as reported (failed), never promoted

    # -- state -----------------------------------------------------------------------------------------

    def _settings(self) -> dict[str, Any]:
        return {
            **super()._settings(),
            "initial_fidelity": self.initial_fidelity,
            "promote_fraction": self.promote_fraction,
            "max_rounds": self.max_rounds,
        }

    def _extra_state(self) -> dict[str, Any]:
        return {
            "round": self._round,
            "level": self._level,
            "members": list(self._members),
            "queue": list(self._queue),
            "size": self._size,
        }

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        self._round = int(state["round"])
        self._level = int(state["level"])
        self._members = [int(t) for t in state["members"]]
        self._queue = [int(t) for t in state["queue"]]
        self._size = int(state["size"])
