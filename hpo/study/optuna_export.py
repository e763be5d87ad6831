"""A study's result rows as an Optuna study, so Optuna's tools (``optuna-dashboard``,
``optuna.visualization``, ``optuna.importance``) work on our results.

One Optuna trial per trial of ours, added in trial-id order (so Optuna's trial number is our trial id when ids
run 0, 1, 2, ...):

* ``params`` / ``distributions``: the trial's searched parameters with the distribution of the study's search
  space - float -> ``FloatDistribution(low, high, log)``, int -> ``IntDistribution(low, high, log)``,
  categorical -> ``CategoricalDistribution(choices)``. A conditional parameter that was inactive is absent,
  as in the configuration. Fixed parameters are not searched: they go to the user attribute ``fixed``.
* ``intermediate_values``: ``{resource: value}`` for every report (resource = epochs, or the data-fraction
  units of ``fidelity.resource``);
* ``value``: the value at the highest fidelity the trial reached (None for a failed trial);
* ``state``: ``COMPLETE`` if the trial reached ``fidelity.max``; ``FAIL`` if it failed (value None);
  otherwise ``PRUNED`` - the scheduler stopped it earlier, **or it is paused or running in a study that is
  not finished** (an export is a snapshot that is never completed later, and a ``RUNNING`` Optuna trial
  would look alive for ever): the user attributes ``status`` (``paused`` / ``running``) and ``resumable``
  say so.
* ``user_attrs``: ``trial_id``, ``status`` (ours, as ``agvp-hpo status`` shows it), ``bracket``, ``rung``
  (the highest milestone index reached, -1 if none), ``resource`` (the highest fidelity reached), ``node``,
  ``error`` (failed trials), ``resumable``, ``fixed``.

The study's direction is the objective's mode (``max`` -> maximize). :func:`export_to_optuna` writes into any
Optuna storage URL; a ``sqlite:///FILE`` is written to a temporary copy beside ``FILE`` and renamed over it,
so a failed export leaves the file as it was. For other URLs (PostgreSQL, MySQL) a failed export deletes
the half-added study.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from hpo.results import NODE, RESOURCE, RUNG, TIMESTAMP, TRIAL_ID, VALUE, TrialStatus
from hpo.space import CategoricalParam, FixedParam, FloatParam, IntParam, SearchSpace
from hpo.store import StoreError
from hpo.study.analysis import trial_table
from hpo.study.spec import StudySpec

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution
    from optuna.trial import FrozenTrial

__all__ = ["OptunaExportError", "build_trials", "export_to_optuna", "optuna_distribution", "to_memory_study"]

SQLITE_PREFIX = "sqlite:///"


class OptunaExportError(StoreError):
    """The rows cannot be written as an Optuna study (a name taken, a storage that cannot be opened, ...)."""


def optuna_distribution(param: FloatParam | IntParam | CategoricalParam) -> BaseDistribution:
    """The Optuna distribution that samples what ``param`` samples."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(param, FloatParam):
        return FloatDistribution(float(param.low), float(param.high), log=param.log)
    if isinstance(param, IntParam):
        return IntDistribution(int(param.low), int(param.high), log=param.log)
    return CategoricalDistribution(list(param.choices))


def _distributions(space: SearchSpace) -> dict[str, BaseDistribution]:
    return {
        name: optuna_distribution(param)
        for name, param in space.params.items()
        if not isinstance(param, FixedParam)
    }


def _when(timestamp: Any) -> dt.datetime | None:
    if isinstance(timestamp, (int, float)) and math.isfinite(timestamp) and timestamp > 0:
        return dt.datetime.fromtimestamp(float(timestamp))
    return None


def build_trials(
    rows: pd.DataFrame, spec: StudySpec, *, finished: bool, live: bool, fidelity: int | None = None
) -> list[FrozenTrial]:
    """Our rows as Optuna trials (see the module docstring), in trial-id order.

    ``finished`` / ``live`` are as in :func:`hpo.study.analysis.trial_table` (a finished study's paused
    trials are stopped; a study no driver runs has no running trial). With ``fidelity`` set, a *view at one
    fidelity*: only the trials that reported a value there, each ``COMPLETE`` with its value at that
    fidelity and its reports up to it - so Optuna's per-parameter plots compare trials on equal budgets.
    """
    from optuna.trial import TrialState, create_trial

    if rows.empty:
        return []
    distributions = _distributions(spec.space)
    fixed_names = {n for n, p in spec.space.params.items() if isinstance(p, FixedParam)}
    table = trial_table(rows, finished=finished, live=live).set_index("trial_id")
    trials: list[FrozenTrial] = []
    for trial_id, own in rows.groupby(TRIAL_ID, sort=True):
        info = table.loc[trial_id]
        scored = own[own[VALUE].notna()]
        curve = {int(r): float(v) for r, v in zip(scored[RESOURCE], scored[VALUE], strict=True)}
        status = str(info["status"])
        if fidelity is not None:
            if fidelity not in curve:
                continue
            curve = {r: v for r, v in curve.items() if r <= fidelity}
            state, value = TrialState.COMPLETE, curve[fidelity]
        elif status == TrialStatus.FAILED.value:
            state, value = TrialState.FAIL, None
        else:
            top = max(curve) if curve else 0
            state = TrialState.COMPLETE if top >= spec.fidelity.max else TrialState.PRUNED
            value = curve[top] if curve else None
        params: dict[str, Any] = {}
        fixed: dict[str, Any] = {}
        for name, raw in info["params"].items():
            if name in fixed_names:
                fixed[name] = raw
            elif name in distributions:
                params[name] = float(raw) if isinstance(spec.space.params[name], FloatParam) else raw
            else:
                raise OptunaExportError(
                    f"trial {trial_id}: parameter {name!r} is not in the study's search space "
                    f"({', '.join(spec.space.names)})"
                )
        rungs = own[RUNG][own[RUNG] >= 0]
        nodes = [str(n) for n in own[NODE].dropna() if str(n)] if NODE in own else []
        errors = [str(e) for e in own["error"].dropna() if str(e)] if "error" in own else []
        attrs: dict[str, Any] = {
            "trial_id": int(trial_id),
            "status": status,
            "bracket": int(info["bracket"]),
            "rung": int(rungs.max()) if not rungs.empty else -1,
            "resource": max(curve) if curve else int(own[RESOURCE].max()),
            "node": nodes[-1] if nodes else "",
            "resumable": status in (TrialStatus.PAUSED.value, TrialStatus.RUNNING.value),
            "fixed": fixed,
        }
        if errors:
            attrs["error"] = errors[-1]
        trial = create_trial(
            state=state,
            value=value,
            params=params,
            distributions={name: distributions[name] for name in params},
            user_attrs=attrs,
            intermediate_values=curve,
        )
        started = _when(own[TIMESTAMP].min()) if TIMESTAMP in own else None
        ended = _when(own[TIMESTAMP].max()) if TIMESTAMP in own else None
        if started is not None and ended is not None:
            trial.datetime_start, trial.datetime_complete = started, ended
        trials.append(trial)
    return trials


def direction(spec: StudySpec) -> str:
    return "maximize" if spec.objective.mode == "max" else "minimize"


def _fill(study: optuna.Study, spec: StudySpec, trials: list[FrozenTrial]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental in Optuna 3.2-5: the dashboard shows the name
        study.set_metric_names([spec.objective.metric])
    study.set_user_attr("agvp_study", spec.name)
    study.set_user_attr("fidelity", spec.fidelity.model_dump(mode="json"))
    study.set_user_attr("scheduler", spec.scheduler.kind)
    study.add_trials(trials)


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna logs every study it creates at INFO; an export says what it did itself."""
    import optuna

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


def to_memory_study(
    rows: pd.DataFrame, spec: StudySpec, *, finished: bool, live: bool, fidelity: int | None = None
) -> optuna.Study:
    """The rows as an Optuna study in an ``InMemoryStorage`` (what ``agvp-hpo plot`` draws from)."""
    import optuna

    trials = build_trials(rows, spec, finished=finished, live=live, fidelity=fidelity)
    with _quiet_optuna():
        study = optuna.create_study(
            storage=optuna.storages.InMemoryStorage(),
            study_name=spec.name if fidelity is None else f"{spec.name}@{fidelity}",
            direction=direction(spec),  # type: ignore[arg-type]
        )
        _fill(study, spec, trials)
    return study


def export_to_optuna(
    rows: pd.DataFrame,
    spec: StudySpec,
    url: str,
    *,
    study_name: str | None = None,
    overwrite: bool = False,
    finished: bool,
    live: bool,
) -> int:
    """Write the rows as Optuna study ``study_name`` (default: our study's name) into storage ``url``;
    returns the number of trials written. An existing study of that name is an error unless ``overwrite``."""
    if rows.empty:
        raise OptunaExportError(f"study {spec.name} has no results to export")
    name = study_name or spec.name
    trials = build_trials(rows, spec, finished=finished, live=live)
    if url.startswith(SQLITE_PREFIX) and url[len(SQLITE_PREFIX) :] not in ("", ":memory:"):
        target = Path(url[len(SQLITE_PREFIX) :])
        if not target.parent.is_dir():
            raise OptunaExportError(f"{url}: folder {target.parent} does not exist")
        if target.exists() and not target.is_file():
            raise OptunaExportError(f"{url}: {target} is not a file")
        handle, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(handle)
        try:
            if target.is_file():
                shutil.copyfile(target, temp)
            else:
                os.unlink(temp)  # a fresh database: let Optuna create it
            _write(f"{SQLITE_PREFIX}{temp}", url, name, spec, trials, overwrite=overwrite)
            os.replace(temp, target)
        finally:
            Path(temp).unlink(missing_ok=True)
        return len(trials)
    _write(url, url, name, spec, trials, overwrite=overwrite, clean_up=True)
    return len(trials)


def _write(
    url: str,
    shown: str,
    name: str,
    spec: StudySpec,
    trials: list[FrozenTrial],
    *,
    overwrite: bool,
    clean_up: bool = False,
) -> None:
    import optuna

    with _quiet_optuna():
        try:
            storage = optuna.storages.get_storage(url)
            existing = optuna.get_all_study_names(storage=storage)
        except Exception as error:  # an unknown dialect, a missing driver, a locked or corrupt file, ...
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise OptunaExportError(f"{shown}: cannot open the Optuna storage ({first})") from None
        if name in existing:
            if not overwrite:
                raise OptunaExportError(
                    f"{shown}: an Optuna study named {name!r} exists already "
                    "(--overwrite replaces it, --study-name picks another name)"
                )
            optuna.delete_study(study_name=name, storage=storage)
        study = optuna.create_study(storage=storage, study_name=name, direction=direction(spec))  # type: ignore[arg-type]
        try:
            _fill(study, spec, trials)
        except BaseException:
            if clean_up:
                optuna.delete_study(study_name=name, storage=storage)
            raise
        engine = getattr(getattr(storage, "_backend", storage), "engine", None)
        if engine is not None:
            engine.dispose()  # close the database file before it is renamed
