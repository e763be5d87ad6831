"""The public Python API: everything the CLI does with a study, for notebooks and scripts.

Import it as ``import hpo`` (the names below are re-exported there, loaded on first use, so ``import hpo``
imports neither Ray nor torch)::

    import hpo

    spec = hpo.load_study("search_spaces/demo.yaml")            # parsed and checked like `agvp-hpo validate`
    study = hpo.run(spec, progress=lambda s: print(s.trials, s.best))   # blocks until the study ends
    study.best(k=3)                                              # DataFrame, best first
    hpo.open_study("demo", root="results").rows()               # a finished or running study's rows

Options are keyword-only. Every error we raise on purpose is an :class:`~trainers.errors.AgvpError`
(:class:`~hpo.study.loader.StudyError` for a study file, :class:`~hpo.session.lifecycle.RunError` for a study
that cannot start or resume, :class:`~hpo.store.StoreError` for a study folder), whose ``str()`` is the
one-line message the CLI prints after ``error:``. The CLI (:mod:`hpo.cli.study`, :mod:`hpo.cli.validate`) is a
thin layer over these functions: it parses arguments, calls them and prints.

"Best" ranks trials by the highest fidelity they reached, then by their value there; failed trials and NaN
values never rank (:mod:`hpo.study.analysis`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from hpo.session.lifecycle import StudyOutcome
from hpo.study import loader
from hpo.study.analysis import best_config_yaml, best_trials, failures, rung_table, trial_table
from hpo.study.folder import StudyFolder, find_study, study_status
from hpo.study.folder import list_studies as _list_folders
from hpo.study.spec import StudySpec
from hpo.study.validate import validate_study
from trainers.errors import AgvpError

if TYPE_CHECKING:
    import pandas as pd

    from hpo.session.recorder import StudySummary

__all__ = [
    "NoTrialError",
    "Progress",
    "Study",
    "list_studies",
    "load_study",
    "open_study",
    "resume",
    "run",
    "validate",
]

#: ``progress(summary)``: called about twice a second while a study runs, with a
#: :class:`~hpo.session.recorder.StudySummary` (trials by state, best so far, budget used, rung occupancy).
Progress = Callable[["StudySummary"], None]
#: What names a study to load: a study file (bundled names such as ``"demo.yaml"`` work too), a mapping
#: (the file's content, e.g. from ``yaml.safe_load``), or a :class:`StudySpec`.
StudyLike = StudySpec | Mapping[str, Any] | str | os.PathLike[str]

#: Columns of :meth:`Study.rungs`.
RUNG_COLUMNS = ("bracket", "rung", "resource", "trials", "advanced")


class NoTrialError(AgvpError):
    """A study has no such trial: none reported a value yet (so there is no best), or no trial has that id."""


def _parse(study: StudyLike, *, name: str | None, source: str | None) -> tuple[StudySpec, str | None]:
    """The spec (schema checked, renamed to ``name``) and how messages name it; no trainer checks yet."""
    if isinstance(study, StudySpec):
        # a spec may have been edited with model_copy(update=...), which skips validation: check it again
        spec = loader.parse_study(study.to_dict(), source=source or f"study {study.name!r}")
    elif isinstance(study, Mapping):
        source = source or "<study>"
        spec = loader.parse_study(dict(study), source=source)
    elif isinstance(study, (str, os.PathLike)):
        path = loader.resolve_study_path(study)
        spec = loader.load_study(path)  # a file's messages always name the file
        source = str(path)
    else:
        raise TypeError(f"a study is a file path, a mapping or a StudySpec, not {type(study).__name__}")
    if name is not None and name != spec.name:
        spec = loader.parse_study({**spec.to_dict(), "name": name}, source=source or f"study {name!r}")
    return spec, source


def load_study(study: StudyLike, *, name: str | None = None, source: str | None = None) -> StudySpec:
    """Read a study and check it completely, as ``agvp-hpo validate`` does: the schema, then every trainer
    key and every value the space can produce, the objective metric and the couplings with the fidelity.

    Args:
        study: a study file (a missing ``NAME.yaml`` falls back to the bundled study of that name), a mapping
            with the file's content, or a :class:`StudySpec` (checked again).
        name: run it under this name instead (the folder ``<storage.root>/<name>``).
        source: how error messages name a mapping or spec (default ``<study>`` / ``study 'NAME'``); a
            file's messages always name the file.

    Raises:
        StudyError: one line naming the file, the field path and the rule (what the CLI prints).
    """
    spec, source = _parse(study, name=name, source=source)
    validate_study(spec, source=source or f"study {spec.name!r}")
    return spec


def validate(study: StudyLike, *, source: str | None = None) -> StudySpec:
    """Check a study completely (see :func:`load_study`) and return it; raises :class:`StudyError`."""
    return load_study(study, source=source)


def run(
    study: StudyLike,
    *,
    name: str | None = None,
    address: str | None = None,
    progress: Progress | None = None,
    source: str | None = None,
) -> Study:
    """Run a study on Ray Tune until it ends (blocking), as ``agvp-hpo run`` does; return the study.

    Args:
        study: a study file, mapping or :class:`StudySpec` (checked completely before anything starts).
        name: run it under this name instead of the file's.
        address: join this Ray cluster (``ray://HEAD:10001`` or ``HEAD:6379``); default an embedded local Ray.
        progress: called about twice a second with a :class:`~hpo.session.recorder.StudySummary`.
        source: how error messages name a mapping or spec (see :func:`load_study`).

    The returned :class:`Study` has :attr:`Study.outcome` (status ``finished``, ``stopped`` or ``failed`` -
    every trial failed -, the reason, time and epochs used). Interrupting (Ctrl-C, a notebook's interrupt)
    stops the study resumably: :func:`resume` continues it.

    Raises:
        StudyError: the study is invalid. RunError: it cannot start (the name exists, resources no node has,
            another driver holds it).
    """
    from hpo.ray_backend.runner import run_study

    spec, source = _parse(study, name=name, source=source)
    outcome = run_study(spec, address=address, progress=progress, source=source)
    return Study(outcome.folder, outcome=outcome)


def resume(
    study: Study | str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] = "results",
    address: str | None = None,
    progress: Progress | None = None,
) -> Study:
    """Continue a stopped, interrupted or killed study from its saved state and checkpoints (blocking), as
    ``agvp-hpo resume`` does. ``study`` is a :class:`Study`, a study folder or a name under ``root``; the
    other options are :func:`run`'s.

    Raises:
        StoreError: no study there. RunError: it has finished, is Ray's own scheduler's, or rows are missing.
    """
    from hpo.ray_backend.runner import resume_study

    target = study if isinstance(study, Study) else open_study(study, root=root)
    outcome = resume_study(target.folder, address=address, progress=progress)
    return Study(outcome.folder, outcome=outcome)


def open_study(study: str | os.PathLike[str], *, root: str | os.PathLike[str] = "results") -> Study:
    """A finished, stopped or running study: a study folder (``results/demo``) or a name under ``root``.

    Raises:
        StoreError: no study there (one line naming where it looked).
    """
    return Study(find_study(study, root))


def list_studies(*, root: str | os.PathLike[str] = "results") -> list[Study]:
    """Every study directly under ``root``, by name (none if ``root`` does not exist)."""
    return [Study(folder) for folder in _list_folders(root)]


class Study:
    """One study folder, read on demand: every method reads the files again, so a running study's answers
    follow it. Obtain one from :func:`open_study`, :func:`run` or :func:`resume`."""

    def __init__(self, folder: StudyFolder | str | os.PathLike[str], *, outcome: StudyOutcome | None = None):
        self.folder = folder if isinstance(folder, StudyFolder) else StudyFolder(Path(folder))
        #: How the run or resume that returned this study ended (None for :func:`open_study`).
        self.outcome = outcome
        self._spec: StudySpec | None = None

    def __repr__(self) -> str:
        return f"Study({self.name!r}, status={self.status!r}, path={str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def path(self) -> Path:
        return self.folder.path

    @property
    def spec(self) -> StudySpec:
        """The study as run (its folder's ``study.yaml``); raises :class:`StudyError` if it is unreadable."""
        if self._spec is None:
            self._spec = loader.load_study(self.folder.spec_file)
        return self._spec

    def _metadata(self) -> dict[str, Any]:
        return self.folder.store.read_metadata()

    def _objective(self, metadata: Mapping[str, Any] | None = None) -> tuple[str, str]:
        """(metric, mode): as recorded when the study was created, else from its study file."""
        recorded = (metadata if metadata is not None else self._metadata()).get("spec", {}).get("objective")
        if recorded:
            return str(recorded["metric"]), str(recorded["mode"])
        if self.folder.spec_file.is_file():
            return self.spec.objective.metric, self.spec.objective.mode
        return "value", "max"  # a folder written by hand, with neither: what `status` always assumed

    @property
    def metric(self) -> str:
        """The objective metric (e.g. ``val_map``)."""
        return self._objective()[0]

    @property
    def mode(self) -> str:
        """``max`` or ``min``: the objective's direction."""
        return self._objective()[1]

    @property
    def status(self) -> str:
        """``running`` (a driver holds it), ``finished``, ``stopped``, ``failed``, or ``interrupted`` (marked
        running, but its driver died: resume it)."""
        return study_status(self.folder, self._metadata())

    @property
    def summary(self) -> dict[str, Any]:
        """What ``agvp-hpo status`` lists: ``name``, ``status``, ``reason``, ``error``, ``trials`` (counts by
        state when last recorded), ``best`` (``{value, trial_id, resource}`` or None), ``budget_used``
        (``epochs``, ``fbe``, ``trials``, ``seconds``; None before the first step), ``started`` and
        ``updated`` (Unix times)."""
        metadata = self._metadata()
        return {
            "name": self.name,
            "status": study_status(self.folder, metadata),
            "reason": metadata.get("reason"),
            "error": metadata.get("error"),
            "trials": metadata.get("trials", {}),
            "best": metadata.get("best"),
            "budget_used": metadata.get("budget_used"),
            "started": metadata.get("started"),
            "updated": metadata.get("updated"),
        }

    def rows(self) -> pd.DataFrame:
        """Every result row (one per trial and epoch reported; columns in :mod:`hpo.results`, the
        configuration also as ``param_<name>`` columns), as plain pandas reads ``<study>/results``."""
        return self.folder.store.read()

    def trials(self) -> pd.DataFrame:
        """One row per trial: ``trial_id``, ``status``, ``resource`` (highest epoch reported), ``value``
        there, ``bracket``, ``reports`` and ``params`` (a dict). In a finished study a paused trial counts as
        stopped; in one no driver runs, nothing is running."""
        state = self.status
        return trial_table(self.rows(), finished=state == "finished", live=state == "running")

    def best(self, *, k: int = 1) -> pd.DataFrame:
        """The ``k`` best trials, best first (columns of :meth:`trials`); empty if none reported a value."""
        if k < 1:
            raise ValueError(f"k is {k}, but must be >= 1")
        return best_trials(self.rows(), self.mode, k=k)

    def _best_row(self) -> pd.Series:
        ranked = self.best(k=1)
        if ranked.empty:
            raise NoTrialError(f"study {self.spec.name} has no trial with a value yet")
        return ranked.iloc[0]

    @property
    def best_params(self) -> dict[str, Any]:
        """The best trial's configuration; raises :class:`NoTrialError` if no trial reported a value."""
        return dict(self._best_row()["params"])

    @property
    def best_value(self) -> float:
        """The best trial's value at the highest fidelity it reached (see the module docstring)."""
        return float(self._best_row()["value"])

    def rungs(self) -> pd.DataFrame:
        """The rung table ``agvp-hpo status`` shows: per ``bracket`` and ``rung``, its epochs (``resource``),
        the ``trials`` that reported there and how many ``advanced`` further."""
        import pandas as pd

        return pd.DataFrame(rung_table(self.rows()), columns=list(RUNG_COLUMNS))

    def failures(self, *, limit: int = 5) -> dict[str, Any]:
        """``{"count": failed trials, "errors": [{"message", "trials"}, ...]}``: the first ``limit`` distinct
        error messages."""
        return failures(self.rows(), limit=limit)

    def best_trainer_config_yaml(self, *, trial: int | None = None) -> str:
        """What ``agvp-hpo best --yaml`` prints: the best trial's configuration (or trial ``trial``'s) as a
        file ``agvp-hpo train`` takes (``tfclip``: the full resolved trainer config at the full schedule's
        epochs; other trainers: the study's trainer section and the parameters).

        Raises:
            NoTrialError: no trial reported a value yet, or there is no trial ``trial``.
        """
        if trial is None:
            params = self._best_row()["params"]
        else:
            table = trial_table(self.rows())
            match = table[table["trial_id"] == trial]
            if match.empty:
                raise NoTrialError(f"study {self.spec.name} has no trial {trial}")
            params = match.iloc[0]["params"]
        return best_config_yaml(self.spec, params)

    def best_trainer_config(self, *, trial: int | None = None) -> dict[str, Any]:
        """:meth:`best_trainer_config_yaml` as a mapping (write it with ``yaml.safe_dump`` to train it)."""
        config = yaml.safe_load(self.best_trainer_config_yaml(trial=trial))
        assert isinstance(config, dict)  # best_config_yaml always writes a mapping
        return config

    def export(self, path: str | os.PathLike[str]) -> Path:
        """Every result row in one Parquet file at ``path`` (written atomically); raises
        :class:`StoreError` if the study has no rows."""
        return self.folder.store.export(Path(path))
