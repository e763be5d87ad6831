"""Study files: the YAML a researcher writes (search space, fidelity, scheduler, budget, trainer) as a typed
:class:`StudySpec`, and the loader that reports every mistake as one line naming the file and the field."""

from __future__ import annotations

from hpo.study.loader import (
    StudyError,
    bundled_study_names,
    dump_study,
    load_study,
    loads_study,
    parse_study,
    resolve_study_path,
)
from hpo.study.spec import (
    AshaSpec,
    BudgetSpec,
    ExecutionSpec,
    FidelitySpec,
    FifoSpec,
    HyperbandSpec,
    MfhoHedgeSpec,
    MfhoSpec,
    ObjectiveSpec,
    RayAshaSpec,
    RayHyperbandSpec,
    ResourcesSpec,
    SchedulerSpec,
    SearcherSpec,
    StorageSpec,
    StudySpec,
    TrainerSpec,
    parse_duration,
)

__all__ = [
    "AshaSpec",
    "BudgetSpec",
    "ExecutionSpec",
    "FidelitySpec",
    "FifoSpec",
    "HyperbandSpec",
    "MfhoHedgeSpec",
    "MfhoSpec",
    "ObjectiveSpec",
    "RayAshaSpec",
    "RayHyperbandSpec",
    "ResourcesSpec",
    "SchedulerSpec",
    "SearcherSpec",
    "StorageSpec",
    "StudyError",
    "StudySpec",
    "TrainerSpec",
    "bundled_study_names",
    "dump_study",
    "load_study",
    "loads_study",
    "parse_duration",
    "parse_study",
    "resolve_study_path",
]
