"""The HPO engine: study specs, schedulers, searchers, backends, results store and the CLI.

The public Python API (:mod:`hpo.api`) is re-exported here: ``hpo.load_study``, ``hpo.validate``,
``hpo.run``, ``hpo.resume``, ``hpo.open_study``, ``hpo.list_studies``, :class:`hpo.Study`, and the errors to
catch (``hpo.AgvpError``, the root of every error raised on purpose, and its kinds ``StudyError``,
``RunError``, ``StoreError``, ``NoTrialError``). The names load on first use, so ``import hpo`` itself
imports neither Ray, torch nor pandas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hpo.api import (
        NoTrialError,
        Progress,
        Study,
        list_studies,
        load_study,
        open_study,
        resume,
        run,
        validate,
    )
    from hpo.session.lifecycle import RunError, StudyOutcome
    from hpo.session.recorder import StudySummary
    from hpo.store import StoreError
    from hpo.study.loader import StudyError
    from hpo.study.spec import StudySpec
    from trainers.errors import AgvpError

__all__ = [
    "AgvpError",
    "NoTrialError",
    "Progress",
    "RunError",
    "StoreError",
    "Study",
    "StudyError",
    "StudyOutcome",
    "StudySpec",
    "StudySummary",
    "list_studies",
    "load_study",
    "open_study",
    "resume",
    "run",
    "validate",
]

#: public name -> the module that defines it (the API's own names: hpo.api)
_HOMES = {
    "AgvpError": "trainers.errors",
    "RunError": "hpo.session.lifecycle",
    "StoreError": "hpo.store",
    "StudyError": "hpo.study.loader",
    "StudyOutcome": "hpo.session.lifecycle",
    "StudySpec": "hpo.study.spec",
    "StudySummary": "hpo.session.recorder",
}


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'hpo' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES.get(name, "hpo.api")), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
