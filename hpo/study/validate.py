"""A study checked against its trainer before a GPU is spent: every key, every value the space can produce,
the couplings with the fidelity, the objective.

The study file's own schema (:mod:`hpo.study.spec`) knows nothing of the trainer; this module asks the
trainer itself (``Trainer.check`` / ``Trainer.metric_names``, :mod:`trainers.protocol`), with the settings
the trials will really get (:func:`hpo.study.build.trainer_settings`: e.g. the learning-rate schedule spans
``fidelity.max`` epochs). It probes:

- both corners of the space (every parameter at its low end / first choice, and at its high end / last);
- from each corner, every parameter at each of its extremes (low and high bound, every choice);
- a few seeded random points (conditions and mixed values).

A refusal becomes one :class:`~hpo.study.loader.StudyError` naming the study file, the field the user
wrote (``space.<key>``, ``trainer.overrides.<key>``, ``trainer.preset`` or ``objective.metric``) and the
rule; for an integer range it names exactly the values that fail, so the user knows how to narrow it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from hpo.space import CategoricalParam, FieldError, FixedParam, FloatParam, IntParam, SearchSpace
from hpo.study.build import prior_from_spec, trainer_settings
from hpo.study.loader import StudyError
from hpo.study.spec import StudySpec
from trainers.protocol import Trainer, TrainerConfigError, TrainerLoadError, get_trainer

#: Random points probed besides the corners and extremes.
RANDOM_PROBES = 16
#: Integer ranges up to this size are scanned value by value to say exactly which values fail.
SCAN_LIMIT = 512


def validate_study(spec: StudySpec, *, source: str = "<study>") -> None:
    """Raise :class:`StudyError` for anything the study's trainer would refuse (see the module docstring)."""
    check_tracking(spec, source=source)
    try:
        trainer = get_trainer(spec.trainer.name)  # an entry point or import path is resolved only here
    except TrainerLoadError as error:
        raise StudyError(source, f"trainer.name: {error}", field="trainer.name", rule=str(error)) from None
    settings = trainer_settings(spec)
    overrides = set(_flat(spec.trainer.overrides))
    metrics = trainer.metric_names(settings)
    if spec.objective.metric not in metrics:
        import difflib

        close = difflib.get_close_matches(spec.objective.metric, metrics, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise StudyError(
            source,
            f"objective.metric is {spec.objective.metric!r}, but trainer {spec.trainer.name!r} reports "
            f"{', '.join(metrics)}{hint}",
            field="objective.metric",
        )
    for params, varied in probe_points(spec.space):
        try:
            trainer.check(settings, params)
        except TrainerConfigError as error:
            raise _explain(spec, trainer, settings, error, params, varied, overrides, source) from None
    if spec.prior is not None:
        try:
            prior = prior_from_spec(spec)
        except FieldError as error:
            raise StudyError(source, error.message, field=error.field) from None
        assert prior is not None
        # exactly the configuration the study trains first (the searcher's generator, fresh)
        first = prior.configuration(spec.space, np.random.default_rng(spec.searcher.seed))
        try:
            trainer.check(settings, first)
        except TrainerConfigError as error:
            raise StudyError(
                source, f"prior: the trainer refuses the prior's configuration: {error}", field="prior"
            ) from None


def check_tracking(spec: StudySpec, *, source: str = "<study>") -> None:
    """``tracking:`` needs its packages (and MLflow 3 refuses a file store unless allowed): say so now,
    before Ray starts, in one line naming the key, the package and the command."""
    import importlib.util
    import os

    if spec.tracking.mlflow is not None:
        if importlib.util.find_spec("mlflow") is None:
            raise StudyError(
                source,
                "tracking.mlflow: needs the package mlflow-skinny: pip install 'agvp-hpo[tracking]' "
                "(or pip install mlflow-skinny)",
                field="tracking.mlflow",
            )
        uri = spec.tracking.mlflow.uri
        file_store = uri.startswith("file:") or ("://" not in uri and not uri.startswith("databricks"))
        allowed = os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").strip().lower() in ("true", "1")
        if file_store and not allowed and _mlflow_refuses_file_store():
            raise StudyError(
                source,
                f"tracking.mlflow.uri: {uri!r} is a file store, which this MLflow refuses unless "
                "MLFLOW_ALLOW_FILE_STORE=true is set; use sqlite:///PATH/mlflow.db or a server instead",
                field="tracking.mlflow.uri",
            )
    if spec.tracking.tensorboard is not None and importlib.util.find_spec("tensorboardX") is None:
        raise StudyError(
            source,
            "tracking.tensorboard: needs the package tensorboardX: pip install tensorboardX",
            field="tracking.tensorboard",
        )


def _mlflow_refuses_file_store() -> bool:
    """MLflow 3.x (``MLFLOW_ALLOW_FILE_STORE`` exists) refuses ``file:`` stores unless allowed."""
    try:
        from mlflow import environment_variables
    except ImportError:  # pragma: no cover - checked by the caller
        return False
    return hasattr(environment_variables, "MLFLOW_ALLOW_FILE_STORE")


def probe_points(space: SearchSpace) -> Iterator[tuple[dict[str, Any], str | None]]:
    """(configuration, the parameter set to one of its extremes or None) for every probe."""
    corners = [space.from_unit(np.zeros(space.dimensions)), space.from_unit(np.ones(space.dimensions))]
    yield corners[0], None
    yield corners[1], None
    for name in space.names:
        param = space[name]
        if isinstance(param, FixedParam):
            continue
        for base in corners:
            if name not in base:
                continue  # inactive in this corner
            for value in _extremes(param):
                yield space.with_value(base, name, value), name
    rng = np.random.default_rng(0)
    for _ in range(RANDOM_PROBES):
        yield space.sample(rng), None


def _extremes(param: FloatParam | IntParam | CategoricalParam) -> list[Any]:
    if isinstance(param, CategoricalParam):
        return list(param.choices)
    return [param.low, param.high]


def _explain(
    spec: StudySpec,
    trainer: Trainer,
    settings: Mapping[str, Any],
    error: TrainerConfigError,
    params: dict[str, Any],
    varied: str | None,
    overrides: set[str],
    source: str,
) -> StudyError:
    key = error.key
    rule = str(error)
    if rule.startswith("unknown key") and key is not None:
        hint = rule.removeprefix(f"unknown key {key}").strip()
        for field, names in (("space", set(spec.space.names)), ("trainer.overrides", overrides)):
            if key in names:
                message = f"{field}.{key}: is not a key of trainer {spec.trainer.name!r}"
                return StudyError(source, f"{message} {hint}".rstrip(), field=f"{field}.{key}", rule=rule)
    if key is not None:
        under_key = [k for k in spec.space.names if k == key or k.startswith(f"{key}.")]
        if under_key and rule.startswith("unknown key"):
            return StudyError(
                source,
                f"space.{under_key[0]}: {key} is not a section or key of trainer {spec.trainer.name!r} "
                f"{rule.removeprefix(f'unknown key {key}').strip()}".rstrip(),
                field=f"space.{under_key[0]}",
                rule=rule,
            )
        if key in spec.space:
            varied = key
    if varied is None:
        varied = _culprit(trainer, settings, params, spec.space)
    if varied is not None:
        refused = _refused_values(trainer, settings, params, spec.space, varied)
        described = _describe(spec.space[varied], refused)
        return StudyError(
            source,
            f"space.{varied}: the trainer refuses {described} ({rule}); narrow the range or drop the choice",
            field=f"space.{varied}",
            rule=rule,
        )
    if key is not None and key not in overrides:
        # a rule of a whole section (e.g. optim's milestones): the override under it that the rule names
        under = [k for k in sorted(overrides) if k.startswith(f"{key}.")]
        named = [k for k in under if k.rsplit(".", 1)[-1] in rule]
        if named or under:
            key = (named or under)[0]
    if key is not None and key in overrides:
        field = f"trainer.overrides.{key}"
        return StudyError(source, f"{field}: {rule}", field=field, rule=rule)
    if rule.startswith("preset "):
        return StudyError(source, f"trainer.preset: {rule}", field="trainer.preset", rule=rule)
    # A rule between keys the study does not name (or a key set from the fidelity): say whose settings.
    where = "trainer.overrides" if overrides else "trainer"
    return StudyError(
        source, f"{where}: the trainer refuses the study's settings ({rule})", field=where, rule=rule
    )


def _culprit(
    trainer: Trainer, settings: Mapping[str, Any], params: dict[str, Any], space: SearchSpace
) -> str | None:
    """A searched parameter some value of which makes ``params`` acceptable (narrowing it is the fix)."""
    for name in space.names:
        if name not in params or isinstance(space[name], FixedParam):
            continue
        refused = _refused_values(trainer, settings, params, space, name)
        if len(refused) < len(_candidates(space[name])):
            return name
    return None


def _refused_values(
    trainer: Trainer, settings: Mapping[str, Any], params: dict[str, Any], space: SearchSpace, name: str
) -> list[Any]:
    """Which values of parameter ``name`` the trainer refuses, the other parameters as in ``params``."""
    refused = []
    for value in _candidates(space[name]):
        try:
            trainer.check(settings, space.with_value(params, name, value) if name in params else params)
        except TrainerConfigError:
            refused.append(value)
    return refused or [params.get(name)]


def _candidates(param: Any) -> list[Any]:
    """The values of a parameter that are tried one by one: every integer of a small range, else the
    extremes (bounds, every choice)."""
    if isinstance(param, IntParam) and param.high - param.low < SCAN_LIMIT:
        return list(range(param.low, param.high + 1))
    if isinstance(param, (FloatParam, IntParam, CategoricalParam)):
        return _extremes(param)
    return [param.value]


def _describe(param: Any, refused: list[Any]) -> str:
    if isinstance(param, IntParam):
        spans, start = [], refused[0]
        for previous, value in zip(refused, [*refused[1:], None], strict=True):
            if value != previous + 1:
                spans.append(str(start) if start == previous else f"{start}..{previous}")
                start = value
        every = len(refused) == param.high - param.low + 1
        return f"{'every value' if every else 'values ' + ', '.join(spans)} of [{param.low}, {param.high}]"
    if isinstance(param, FloatParam):
        ends = {param.low: "low", param.high: "high"}
        named = [f"{ends.get(v, 'value')} {v:g}" for v in refused]
        return f"{' and '.join(named)} of [{param.low:g}, {param.high:g}]"
    if isinstance(param, CategoricalParam):
        return f"choice{'s' if len(refused) > 1 else ''} {', '.join(repr(v) for v in refused)}"
    return f"value {refused[0]!r}"


def _flat(mapping: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"
