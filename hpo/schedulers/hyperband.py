"""Synchronous Hyperband with pause/resume (Li et al., JMLR 2018, Algorithm 1).

Each bracket runs successive halving with rung barriers: a configuration that reaches its rung's epochs is
PAUSED; when every configuration of the rung has reported, the best ``keep`` are resumed from their
checkpoints to the next rung (best first) and the others are stopped (:meth:`drain_stopped` lists them).
Bracket sizes come from :func:`hpo.schedulers.brackets.make_bracket` (Algorithm 1, not the paper's printed
table). Brackets repeat in passes until the budget is spent.

Bracket order (:class:`BracketOrder`):

* ``largest-first``: s = s_max .. 0 in every pass (Algorithm 1's order); one bracket at a time;
* ``smallest-first``: s = 0 .. s_max, so the hedge bracket (random search at R) runs first; one at a time;
* ``cyclic``: largest-first, but when every open bracket waits at a rung barrier and a worker is free, the
  next bracket opens instead of leaving the worker idle (brackets overlap; with one worker this is
  largest-first exactly).

Differences from Ray Tune's HyperBandScheduler (REFERENCE_HPO.md): Ray keeps ceil(n/eta) survivors and
fills the smallest bracket first; a paused Ray trial without a checkpoint restarts from scratch. We keep
floor(n/eta) (Algorithm 1) and every resume starts from the checkpoint.

With a prior (the searcher's ``prior`` is set: a study file's ``prior:`` section), the very first job is the
prior's own configuration trained straight to the full budget, alone in a one-configuration bracket s = 0
(the "prior probe"), before bracket s_max opens: a good prior gives a full-fidelity result after one
full-budget equivalent instead of after the first bracket's ~3.4, a bad one costs that one FBE.

When ``max_trials`` stops new configurations, a bracket's first rung closes with the configurations it has,
and each rung then keeps max(1, floor(n / eta)), so the bracket still finishes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

from hpo.results import TrialStatus
from hpo.schedulers.base import Decision, Job, JobKind, Mode, SchedulerCore, _Proposal
from hpo.schedulers.brackets import Bracket, make_bracket
from hpo.schedulers.options import SchedulerOptions, needs_two_rungs
from hpo.searchers.base import Searcher, searcher_prior


class BracketOrder(Enum):
    LARGEST_FIRST = "largest-first"
    SMALLEST_FIRST = "smallest-first"
    CYCLIC = "cyclic"


def bracket_sequence_s(number: int, s_max: int, order: BracketOrder) -> int:
    """Bracket s of the ``number``-th bracket opened (0-based), passes repeating forever."""
    position = number % (s_max + 1)
    return position if order is BracketOrder.SMALLEST_FIRST else s_max - position


@dataclass
class _Run:
    """One open bracket: which rung it is at, who is in it, who waits for a resume."""

    number: int
    s: int
    rung: int = 0
    size: int = 0  # configurations the current rung must hold before it can close
    members: list[int] = field(default_factory=list)
    queue: list[int] = field(default_factory=list)  # survivors not yet resumed into the current rung
    truncated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "s": self.s,
            "rung": self.rung,
            "size": self.size,
            "members": self.members,
            "queue": self.queue,
            "truncated": self.truncated,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> _Run:
        return cls(
            number=int(raw["number"]),
            s=int(raw["s"]),
            rung=int(raw["rung"]),
            size=int(raw["size"]),
            members=[int(t) for t in raw["members"]],
            queue=[int(t) for t in raw["queue"]],
            truncated=bool(raw["truncated"]),
        )


def survivors_count(configs: int, planned_keep: int, reduction_factor: int, truncated: bool) -> int:
    """How many of a closed rung's ``configs`` continue: Algorithm 1's floor(n_i / eta) as planned, or
    max(1, floor(n / eta)) for a rung cut short by ``max_trials`` (so a truncated bracket still finishes)."""
    if not truncated:
        return min(planned_keep, configs)
    return min(configs, max(1, configs // reduction_factor))


class HyperbandOptions(SchedulerOptions):
    """Hyperband with promotions (paused trials resume from their checkpoint, never restart).

    ``bracket_order``: ``largest-first`` runs brackets s = s_max .. 0 as in Algorithm 1 (most exploratory
    first), ``smallest-first`` runs s = 0 .. s_max (Ray Tune's order), ``cyclic`` hands new configurations
    to the brackets in turn so all of them progress at once (useful with many workers).
    """

    bracket_order: Literal["largest-first", "smallest-first", "cyclic"] = "largest-first"

    def check_fidelity(self, fidelity: Any) -> None:
        needs_two_rungs("hyperband", fidelity)


class HyperbandCore(SchedulerCore):
    """Synchronous Hyperband; see the module docstring. ``bracket_order`` is a :class:`BracketOrder` or its
    value (``"largest-first"``, ``"smallest-first"``, ``"cyclic"``)."""

    name = "hyperband"
    Options = HyperbandOptions

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
        bracket_order: BracketOrder | str = BracketOrder.LARGEST_FIRST,
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
        try:
            self.bracket_order = BracketOrder(bracket_order)
        except ValueError:
            options = ", ".join(o.value for o in BracketOrder)
            raise ValueError(f"bracket_order is {bracket_order!r}, but must be one of {options}") from None
        self._brackets = {
            s: make_bracket(s, max_resource, reduction_factor, min_resource) for s in range(self.s_max + 1)
        }
        self._runs: list[_Run] = []
        self._opened = 0
        self._run_of: dict[int, int] = {}

    def plan_of(self, s: int) -> Bracket:
        return self._brackets[s]

    # -- proposals -------------------------------------------------------------------------------------

    def _probe_pending(self) -> bool:
        return searcher_prior(self.searcher) is not None and self.num_trials == 0

    def _propose(self, can_start: bool) -> _Proposal | None:
        if self._probe_pending():
            return _Proposal(None, self._brackets[0].rungs[0].resource, 0) if can_start else None
        for run in list(self._runs):
            proposal = self._propose_in(run, can_start)
            if proposal is not None:
                return proposal
        # The prior probe never holds the first bracket back (other workers start it meanwhile).
        brackets_open = [run for run in self._runs if run.number >= 0]
        may_open = not brackets_open or self.bracket_order is BracketOrder.CYCLIC
        if not (may_open and can_start):
            return None
        s = bracket_sequence_s(self._opened, self.s_max, self.bracket_order)
        return _Proposal(None, self._brackets[s].rungs[0].resource, s)

    def _propose_in(self, run: _Run, can_start: bool) -> _Proposal | None:
        bracket = self._brackets[run.s]
        if run.rung == 0 and len(run.members) < run.size:
            if can_start:
                return _Proposal(None, bracket.rungs[0].resource, run.s)
            # max_trials reached: close the first rung with what it has (housekeeping, not acceptance).
            run.size = len(run.members)
            run.truncated = True
            self._advance(run)
            if run not in self._runs:
                return None
        if run.queue:
            return _Proposal(run.queue[0], bracket.rungs[run.rung].resource, run.s)
        return None

    def _accept(self, job: Job) -> None:
        if job.kind is JobKind.RESUME:
            run = self._run(job.trial_id)
            run.queue.remove(job.trial_id)
            return
        run = next(
            (r for r in self._runs if r.s == job.bracket and r.rung == 0 and len(r.members) < r.size), None
        )
        if run is None and job.trial_id == 0 and searcher_prior(self.searcher) is not None:
            run = _Run(number=-1, s=0, size=1)  # the prior probe: not one of the brackets' sequence
            self._runs.append(run)
        elif run is None:
            bracket = self._brackets[job.bracket]
            run = _Run(number=self._opened, s=job.bracket, size=bracket.configs)
            self._opened += 1
            self._runs.append(run)
        run.members.append(job.trial_id)
        self._run_of[job.trial_id] = run.number

    # -- decisions -------------------------------------------------------------------------------------

    def _decide(self, trial_id: int, resource: int, value: float) -> Decision:
        run = self._run(trial_id)
        if resource < self._brackets[run.s].rungs[run.rung].resource:
            return Decision.CONTINUE
        last_rung = run.rung == run.s
        losers = self._advance(run, just_reported=trial_id)
        # The reporter that closes its rung and loses never runs again: STOP rather than PAUSE.
        return Decision.STOP if last_rung or trial_id in losers else Decision.PAUSE

    def _advance(self, run: _Run, just_reported: int | None = None) -> set[int]:
        """Close the current rung if it is full and every member has reported at its resource: the best
        ``keep`` queue for a resume into the next rung, the others are retired. Returns the losers."""
        bracket = self._brackets[run.s]
        resource = bracket.rungs[run.rung].resource
        if len(run.members) < run.size or run.queue:
            return set()
        for trial_id in run.members:
            trial = self._trials[trial_id]
            waiting = trial.status is TrialStatus.RUNNING and trial_id != just_reported
            if waiting or resource not in trial.values:
                return set()
        if run.rung == run.s or not run.members:
            self._runs.remove(run)
            return set()
        planned = bracket.rungs[run.rung].keep
        keep = survivors_count(len(run.members), planned, self.reduction_factor, run.truncated)
        ranked = self._ranked(run.members, resource)
        losers = set(ranked[keep:])
        for loser in ranked[keep:]:
            if loser != just_reported:
                self._retire(loser)
        run.rung += 1
        run.members = ranked[:keep]
        run.queue = list(run.members)
        run.size = keep
        return losers

    def _on_failed(self, trial_id: int, target: int | None) -> None:
        # Drop it from its bracket. In the first rung a new configuration takes its place; in a later rung
        # the rung shrinks by one, and closes now if it was the last member missing.
        run = self._run(trial_id)
        run.members.remove(trial_id)
        if run.rung == 0:
            return
        run.size -= 1
        if not run.members:
            self._runs.remove(run)
            return
        self._advance(run)

    def _run(self, trial_id: int) -> _Run:
        number = self._run_of[trial_id]
        return next(r for r in self._runs if r.number == number)

    # -- state -----------------------------------------------------------------------------------------

    def _settings(self) -> dict[str, Any]:
        return {**super()._settings(), "bracket_order": self.bracket_order.value}

    def _extra_state(self) -> dict[str, Any]:
        return {
            "runs": [run.to_dict() for run in self._runs],
            "opened": self._opened,
            "run_of": [[t, n] for t, n in self._run_of.items()],
        }

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        self._runs = [_Run.from_dict(raw) for raw in state["runs"]]
        self._opened = int(state["opened"])
        self._run_of = {int(t): int(n) for t, n in state["run_of"]}
