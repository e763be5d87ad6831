"""Every configuration trains to the maximum resource: with a random searcher, plain random search (the
baseline every multi-fidelity method must beat; Bergstra & Bengio, JMLR 2012). Hyperband's bracket s = 0."""

from __future__ import annotations

from hpo.schedulers.base import Decision, SchedulerCore, _Proposal


class FIFOCore(SchedulerCore):
    """No early stopping, no pausing: start configurations towards R until a budget ends."""

    name = "fifo"

    def _propose(self, can_start: bool) -> _Proposal | None:
        return _Proposal(None, self.max_resource, 0) if can_start else None

    def _decide(self, trial_id: int, resource: int, value: float) -> Decision:
        return Decision.STOP if resource == self.max_resource else Decision.CONTINUE
