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
from hpo.schedulers.mfho_hedge import HedgedMFHOCore
from hpo.schedulers.options import SchedulerOptions
from hpo.schedulers.ray_native import RAY_NATIVE_OPTIONS
from hpo.searchers.base import Searcher

__all__ = [
    "SCHEDULERS",
    "ASHACore",
    "Bracket",
    "BracketOrder",
    "Decision",
    "FIFOCore",
    "HedgedMFHOCore",
    "HyperbandCore",
    "HyperbandPlan",
    "Job",
    "JobKind",
    "MFHOCore",
    "Rung",
    "SchedulerCore",
    "SchedulerOptions",
    "make_scheduler",
    "milestones",
    "plan_hyperband",
    "study_scheduler_options",
]

#: Scheduler names a study file (or the benchmark) may use -> (core class, fixed keyword arguments).
#: ``asha-stopping`` is the benchmark's name for ``asha`` with ``mode: stopping``.
SCHEDULERS: dict[str, tuple[type[SchedulerCore], dict[str, Any]]] = {
    "fifo": (FIFOCore, {}),
    "hyperband": (HyperbandCore, {}),
    "asha": (ASHACore, {}),
    "asha-stopping": (ASHACore, {"asha_mode": "stopping"}),
    "mfho": (MFHOCore, {}),
    "mfho-hedge": (HedgedMFHOCore, {}),
}


def study_scheduler_options() -> dict[str, type[SchedulerOptions]]:
    """Every ``scheduler.kind`` a study file may name -> its options, declared beside each scheduler."""
    cores = {name: cls.Options for name, (cls, fixed) in SCHEDULERS.items() if not fixed}
    return {**cores, **RAY_NATIVE_OPTIONS}


def make_scheduler(name: str, searcher: Searcher, **options: Any) -> SchedulerCore:
    """Build the core registered as ``name`` (see :data:`SCHEDULERS`) around ``searcher``."""
    if name not in SCHEDULERS:
        raise ValueError(f"scheduler is {name!r}, but must be one of {', '.join(SCHEDULERS)}")
    cls, fixed = SCHEDULERS[name]
    return cls(searcher, **fixed, **options)
