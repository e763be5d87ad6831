"""The one interface of every scheduler core, and the bookkeeping they share.

A scheduler core decides *what runs next and for how long*; a backend (the Ray adapter or the simulator)
decides *where*. The loop that connects them (Syne Tune's design) is:

* a worker is free -> :meth:`SchedulerCore.suggest` returns a :class:`Job` (start a new configuration, or
  resume a paused trial from its checkpoint, up to ``job.resource`` epochs) or ``None`` (nothing to do now:
  wait for running trials, or the study is over when nothing runs);
* the trial reports after some epoch -> :meth:`SchedulerCore.report` returns a :class:`Decision`;
* paused trials the core gives up on (synchronous Hyperband's rung losers) are listed once by
  :meth:`SchedulerCore.drain_stopped`, so the backend can release their checkpoints.

Every core is a deterministic state machine: the same reports in the same order give the same jobs and
decisions, and :meth:`SchedulerCore.state_dict` / :meth:`SchedulerCore.load_state_dict` (JSON-ready) let a
restored core continue exactly where the saved one was. Ray Tune does not persist scheduler state
(ray-project/ray#30838); we do.

Budgets: no new configuration starts after ``max_trials`` trials, and no job is issued whose epochs would
take the *committed* resource (epochs reported so far plus the epochs still promised to running jobs) above
``max_total_resource``. A trial stopped early gives its unused promise back. Resources are epochs counted
as the core sees them: a resumed trial costs only its extra epochs (DESIGN principle 2) - unless the core
``retrains`` (a fidelity whose promotions train from scratch, e.g. a data fraction with a whole schedule per
rung): then a promotion is a RESUME job in the core's bookkeeping that runs without a checkpoint and costs
its whole target.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar, Literal

from hpo.results import TrialStatus
from hpo.schedulers.brackets import check_resources, max_bracket_index, milestones
from hpo.schedulers.options import SchedulerOptions
from hpo.searchers.base import Searcher, objective_loss

Mode = Literal["max", "min"]


class Decision(Enum):
    """What the trial that just reported does next."""

    CONTINUE = "continue"  # keep training towards its job's target
    PAUSE = "pause"  # stop now, keep the checkpoint: the core may resume it later
    STOP = "stop"  # never runs again (stopped early, or completed at the maximum resource)


class JobKind(Enum):
    START = "start"  # a new configuration trains from scratch
    RESUME = "resume"  # a paused trial continues from its checkpoint


@dataclass(frozen=True)
class Job:
    """Train ``trial_id`` from ``start`` epochs (its checkpoint; 0 for a new trial) up to ``resource``.

    ``bracket`` uses Hyperband's numbering everywhere: bracket s starts configurations at R eta^-s epochs
    (s = s_max: the most aggressive, s = 0: plain random search at R)."""

    kind: JobKind
    trial_id: int
    config: dict[str, Any] = field(hash=False)
    start: int
    resource: int
    bracket: int
    #: The job trains from scratch although the trial has results (``start`` > 0): no checkpoint to resume.
    retrain: bool = False

    def __post_init__(self) -> None:
        if self.trial_id < 0:
            raise ValueError(f"trial_id is {self.trial_id}, but must be >= 0")
        if not 0 <= self.start < self.resource:
            raise ValueError(
                f"job trains from {self.start} to {self.resource} epochs; start must be < resource"
            )
        if (self.kind is JobKind.START) != (self.start == 0):
            raise ValueError(f"a {self.kind.value} job cannot start at epoch {self.start}")

    @property
    def cost(self) -> int:
        """Resource this job trains (a resumed trial pays only the extra epochs; a retrained one all)."""
        return self.resource - (0 if self.retrain else self.start)


@dataclass(frozen=True)
class _Proposal:
    """What a subclass wants to run next; the base class checks the budget before accepting it."""

    trial_id: int | None  # None: a new configuration
    resource: int
    bracket: int


@dataclass
class _Trial:
    config: dict[str, Any]
    bracket: int
    resource: int = 0  # epochs reported so far (= the checkpoint a resume starts from)
    target: int | None = None  # the running job's target; None when not running
    charged: int = 0  # resource the running job has been charged up to (its start, or 0 when it retrains)
    status: TrialStatus = TrialStatus.RUNNING
    values: dict[int, float] = field(default_factory=dict)  # milestone epoch -> reported value

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "bracket": self.bracket,
            "resource": self.resource,
            "target": self.target,
            "charged": self.charged,
            "status": self.status.value,
            "values": [[epoch, value] for epoch, value in self.values.items()],
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> _Trial:
        return cls(
            config=dict(raw["config"]),
            bracket=int(raw["bracket"]),
            resource=int(raw["resource"]),
            target=None if raw["target"] is None else int(raw["target"]),
            charged=int(raw.get("charged", raw["resource"])),
            status=TrialStatus(raw["status"]),
            values={int(epoch): float(value) for epoch, value in raw["values"]},
        )


class SchedulerCore(ABC):
    """Base of every scheduler core. Parameters (names as in Optuna, symbols as in Li et al. 2018):

    * ``max_resource`` (R): epochs of a full training run;
    * ``reduction_factor`` (eta, default 3): rungs keep the best 1/eta;
    * ``min_resource`` (r, default 1): the first milestone is at least r epochs;
    * ``mode``: ``"max"`` or ``"min"`` for the objective value;
    * ``max_trials`` / ``max_total_resource``: the budgets described in the module docstring.

    Milestones (the epochs where decisions happen) are :func:`hpo.schedulers.brackets.milestones`:
    floor(R eta^-k) for k = s_max .. 0.
    """

    name: ClassVar[str]
    #: What a study file's ``scheduler:`` section may set for this core (beside its ``kind``).
    Options: ClassVar[type[SchedulerOptions]] = SchedulerOptions

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
    ) -> None:
        check_resources(max_resource, reduction_factor, min_resource)
        if mode not in ("max", "min"):
            raise ValueError(f"mode is {mode!r}, but must be 'max' or 'min'")
        if max_trials is not None and max_trials < 1:
            raise ValueError(f"max_trials is {max_trials}, but must be >= 1 (or None)")
        if max_total_resource is not None and max_total_resource < 1:
            raise ValueError(f"max_total_resource is {max_total_resource}, but must be >= 1 (or None)")
        self.searcher = searcher
        self.max_resource = max_resource
        self.reduction_factor = reduction_factor
        self.min_resource = min_resource
        self.mode: Mode = mode
        self.max_trials = max_trials
        self.max_total_resource = max_total_resource
        self.retrain = retrain
        self.milestones = milestones(max_resource, reduction_factor, min_resource)
        self.s_max = max_bracket_index(max_resource, reduction_factor, min_resource)
        self._trials: dict[int, _Trial] = {}
        self._used = 0
        self._stopped: list[int] = []

    # -- the interface ---------------------------------------------------------------------------------

    def suggest(self) -> Job | None:
        """The next job for a free worker, or ``None`` if there is nothing to run now (or ever again)."""
        can_start = self.max_trials is None or len(self._trials) < self.max_trials
        proposal = self._propose(can_start)
        if proposal is None:
            return None
        if proposal.trial_id is None:
            if not can_start:
                raise RuntimeError(f"{type(self).__name__} proposed a new trial past max_trials")
            start = 0
        else:
            trial = self._trials[proposal.trial_id]
            if trial.status is not TrialStatus.PAUSED:
                raise RuntimeError(f"trial {proposal.trial_id} is {trial.status.value}, cannot resume it")
            start = trial.resource
        retrain = self.retrain and start > 0
        cost = proposal.resource - (0 if retrain else start)
        if self.max_total_resource is not None and self.committed_resource + cost > self.max_total_resource:
            return None
        if proposal.trial_id is None:
            trial_id = len(self._trials)
            config = dict(self.searcher.suggest(trial_id, proposal.resource / self.max_resource))
            trial = _Trial(config=config, bracket=proposal.bracket)
            self._trials[trial_id] = trial
            kind = JobKind.START
        else:
            trial_id = proposal.trial_id
            trial = self._trials[trial_id]
            trial.status = TrialStatus.RUNNING
            kind = JobKind.RESUME
        trial.target = proposal.resource
        trial.charged = 0 if retrain else start
        job = Job(kind, trial_id, dict(trial.config), start, proposal.resource, proposal.bracket, retrain)
        self._accept(job)
        return job

    def report(self, trial_id: int, resource: int, value: float) -> Decision:
        """Trial ``trial_id`` measured ``value`` after ``resource`` epochs in total.

        Reports may come every epoch; decisions happen at milestones and at the job's target (elsewhere the
        answer is CONTINUE). Only milestone values reach the searcher, so it sees a few well-populated
        fidelities rather than one sparse fidelity per epoch."""
        trial = self._trials.get(trial_id)
        if trial is None:
            raise ValueError(f"trial_id is {trial_id}, but no such trial was started")
        if trial.status is not TrialStatus.RUNNING or trial.target is None:
            raise ValueError(f"trial {trial_id} is {trial.status.value}, but only running trials may report")
        if not trial.resource < resource <= trial.target:
            raise ValueError(
                f"resource is {resource}, but trial {trial_id} must report in "
                f"({trial.resource}, {trial.target}]"
            )
        value = float(value)
        self._used += resource - trial.charged
        trial.resource = trial.charged = resource
        at_milestone = resource in self.milestones
        if at_milestone:
            trial.values[resource] = value
            self.searcher.observe(trial_id, trial.config, resource, self.loss(value))
        decision = Decision.CONTINUE
        if at_milestone or resource == trial.target:
            decision = self._decide(trial_id, resource, value)
        if resource == self.max_resource:
            decision = Decision.STOP
        if decision is Decision.CONTINUE and resource == trial.target:
            raise RuntimeError(f"{type(self).__name__} continued trial {trial_id} past its job's target")
        if decision is not Decision.CONTINUE:
            trial.target = None
            if resource == self.max_resource:
                trial.status = TrialStatus.COMPLETED
            elif decision is Decision.PAUSE:
                trial.status = TrialStatus.PAUSED
            else:
                trial.status = TrialStatus.STOPPED
        return decision

    def fail(self, trial_id: int) -> None:
        """Running trial ``trial_id`` failed (the trainer raised, or its loss became non-finite): it never
        runs again, its unused promise goes back to the budget, and rung bookkeeping stops waiting for it
        (:meth:`_on_failed`). The epochs it reported stay counted."""
        trial = self._trials.get(trial_id)
        if trial is None:
            raise ValueError(f"trial_id is {trial_id}, but no such trial was started")
        if trial.status is not TrialStatus.RUNNING:
            raise ValueError(f"trial {trial_id} is {trial.status.value}, but only a running trial can fail")
        target = trial.target
        trial.target = None
        trial.status = TrialStatus.FAILED
        self._on_failed(trial_id, target)

    def drain_stopped(self) -> list[int]:
        """Paused trials given up on since the last call (each is listed once); they never run again."""
        stopped, self._stopped = self._stopped, []
        return stopped

    def state_dict(self) -> dict[str, Any]:
        """The core's whole state, its searcher's included, as JSON-ready data."""
        return {
            "scheduler": self.name,
            "settings": self._settings(),
            "used": self._used,
            "trials": [[trial_id, trial.to_dict()] for trial_id, trial in self._trials.items()],
            "stopped": list(self._stopped),
            "searcher": self.searcher.state_dict(),
            "extra": self._extra_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s output; the settings must equal this core's settings."""
        if state.get("scheduler") != self.name:
            raise ValueError(
                f"state is for scheduler {state.get('scheduler')!r}, but this one is {self.name!r}"
            )
        settings = self._settings()
        if state.get("settings") != settings:
            raise ValueError(f"state has settings {state.get('settings')}, but this core has {settings}")
        self._used = int(state["used"])
        self._trials = {int(tid): _Trial.from_dict(raw) for tid, raw in state["trials"]}
        self._stopped = [int(t) for t in state["stopped"]]
        self.searcher.load_state_dict(state["searcher"])
        self._load_extra_state(state["extra"])

    # -- read-only views -------------------------------------------------------------------------------

    @property
    def used_resource(self) -> int:
        """Epochs reported so far, over all trials."""
        return self._used

    @property
    def committed_resource(self) -> int:
        """Epochs reported plus epochs promised to running jobs: what the budget is checked against."""
        return self._used + sum(t.target - t.charged for t in self._trials.values() if t.target is not None)

    @property
    def num_trials(self) -> int:
        return len(self._trials)

    def status(self, trial_id: int) -> TrialStatus:
        return self._trials[trial_id].status

    def config(self, trial_id: int) -> dict[str, Any]:
        return dict(self._trials[trial_id].config)

    def resource_of(self, trial_id: int) -> int:
        """Epochs trial ``trial_id`` has reported so far (where its checkpoint is)."""
        return self._trials[trial_id].resource

    def target_of(self, trial_id: int) -> int | None:
        """The epoch the running job of ``trial_id`` trains to; None when it is not running."""
        return self._trials[trial_id].target

    def bracket_of(self, trial_id: int) -> int:
        return self._trials[trial_id].bracket

    def rung_of(self, resource: int) -> int | None:
        """Index of ``resource`` in :attr:`milestones` (the "rung level"), or None between milestones."""
        try:
            return self.milestones.index(resource)
        except ValueError:
            return None

    def loss(self, value: float) -> float:
        """The value as "lower is better" (searchers minimise); NaN ranks last."""
        return objective_loss(value, self.mode)

    # -- what subclasses write -------------------------------------------------------------------------

    @abstractmethod
    def _propose(self, can_start: bool) -> _Proposal | None:
        """The job the core wants next (no side effect that depends on its acceptance)."""

    def _accept(self, job: Job) -> None:  # noqa: B027  # optional hook
        """The proposal became ``job`` (budget permitting): update rung/bracket bookkeeping."""

    @abstractmethod
    def _decide(self, trial_id: int, resource: int, value: float) -> Decision:
        """Decision for a report at a milestone or at the job's target."""

    def _settings(self) -> dict[str, Any]:
        return {
            "max_resource": self.max_resource,
            "reduction_factor": self.reduction_factor,
            "min_resource": self.min_resource,
            "mode": self.mode,
            "max_trials": self.max_trials,
            "max_total_resource": self.max_total_resource,
            **({"retrain": True} if self.retrain else {}),
        }

    def _on_failed(self, trial_id: int, target: int | None) -> None:  # noqa: B027  # optional hook
        """A running trial that was training towards ``target`` failed: release what waits for it."""

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:  # noqa: B027  # optional hook
        """Restore :meth:`_extra_state`."""

    def _retire(self, trial_id: int) -> None:
        """A paused trial will never run again: mark it stopped and list it for :meth:`drain_stopped`."""
        trial = self._trials[trial_id]
        if trial.status is TrialStatus.PAUSED:
            trial.status = TrialStatus.STOPPED
            self._stopped.append(trial_id)

    def _ranked(self, trial_ids: list[int], resource: int) -> list[int]:
        """Best first by the value each trial reported at ``resource``; ties go to the older trial."""
        return sorted(trial_ids, key=lambda t: (self.loss(self._trials[t].values[resource]), t))
