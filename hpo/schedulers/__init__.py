"""Scheduler cores: pure, seeded-by-their-searcher state machines that decide what trains next and for how
long. No Ray import: the Ray Tune adapter and the simulator both drive these (DESIGN principle 1)."""

from __future__ import annotations

from typing import Any

from hpo.schedulers.asha import ASHACore
from hpo.schedulers.base import Decision, Job, JobKind, SchedulerCore
from hpo.schedulers.brackets import Bracket, HyperbandPlan, Rung, milestones, plan_hyperband
from hpo.schedulers.fifo import FIFOCore
from hpo.schedulers.hyperband import BracketOrder, HyperbandCore
from hpo.schedulers.mfho import MFHOCore
from hpo.searchers.base import Searcher

__all__ = [
    "SCHEDULERS",
    "ASHACore",
    "Bracket",
    "BracketOrder",
    "Decision",
    "FIFOCore",
    "HyperbandCore",
    "HyperbandPlan",
    "Job",
    "JobKind",
    "MFHOCore",
    "Rung",
    "SchedulerCore",
    "make_scheduler",
    "milestones",
    "plan_hyperband",
]

#: Scheduler names a study file (or the benchmark) may use -> (core class, fixed keyword arguments).
SCHEDULERS: dict[str, tuple[type[SchedulerCore], dict[str, Any]]] = {
    "fifo": (FIFOCore, {}),
    "hyperband": (HyperbandCore, {}),
    "asha": (ASHACore, {"asha_mode": "promotion"}),
    "asha-stopping": (ASHACore, {"asha_mode": "stopping"}),
    "mfho": (MFHOCore, {}),
}


def make_scheduler(name: str, searcher: Searcher, **options: Any) -> SchedulerCore:
    """Build the core registered as ``name`` (see :data:`SCHEDULERS`) around ``searcher``."""
    if name not in SCHEDULERS:
        raise ValueError(f"scheduler is {name!r}, but must be one of {', '.join(SCHEDULERS)}")
    cls, fixed = SCHEDULERS[name]
    return cls(searcher, **fixed, **options)
