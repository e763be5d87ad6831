"""A study file's scheduler and searcher sections -> the scheduler core (with its seeded searcher) that a
backend drives. ``ray-asha`` / ``ray-hyperband`` have no core: the Ray backend uses Ray's own schedulers."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from hpo.schedulers import SchedulerCore, make_scheduler
from hpo.searchers import Searcher, make_searcher
from hpo.searchers.prior import Prior
from hpo.space import FieldError
from hpo.study.spec import StudySpec

RAY_NATIVE = ("ray-asha", "ray-hyperband")


def prior_from_spec(spec: StudySpec) -> Prior | None:
    """The study's prior (``prior:``), with ``from_preset`` resolved through the trainer's own configuration:
    every searched parameter without a value takes the preset's, when the space can hold it."""
    section = spec.prior
    if section is None:
        return None
    values = {key: spec.space.check_value(key, entry.value) for key, entry in section.values.items()}
    confidence = {key: entry.confidence or section.confidence for key, entry in section.values.items()}
    if section.from_preset:
        for key, value in preset_values(spec).items():
            if key not in values:
                values[key] = value
                confidence[key] = section.confidence
    return Prior(values=values, confidence=confidence)


def preset_values(spec: StudySpec) -> dict[str, Any]:
    """The trainer preset's value of each searched parameter (``trainer.overrides`` applied); raises
    :class:`hpo.space.FieldError` naming ``prior.from_preset`` when the space cannot hold one. A preset value
    of None ("the default", e.g. ``model.stride`` = the patch size) gives that parameter no prior value."""
    from trainers.protocol import get_trainer

    resolved = get_trainer(spec.trainer.name).resolved_config(trainer_settings(spec), {})
    out: dict[str, Any] = {}
    for key in spec.space.unit_names:
        if key not in resolved or resolved[key] is None:
            continue
        try:
            out[key] = spec.space.check_value(key, resolved[key])
        except FieldError as error:
            raise FieldError(
                ("prior", "from_preset"),
                f"takes {key} = {resolved[key]!r} from the trainer preset, but space.{key} {error.rule}",
            ) from None
    return out


def searcher_from_spec(spec: StudySpec) -> Searcher:
    options: dict[str, Any] = {}
    if spec.searcher.kind == "tpe" and spec.searcher.n_startup is not None:
        options["n_startup_trials"] = spec.searcher.n_startup
    if spec.searcher.kind == "mf-tpe":
        options["random_fraction"] = spec.searcher.random_fraction
        options["local_fraction"] = spec.searcher.local_fraction
        options["high_start_local_fraction"] = spec.searcher.high_start_local_fraction
        if spec.searcher.n_startup is not None:
            options["min_points"] = spec.searcher.n_startup
        options["prior"] = prior_from_spec(spec)
    rng = np.random.default_rng(spec.searcher.seed)
    return make_searcher(spec.searcher.kind, spec.space, rng, **options)


def max_total_epochs(spec: StudySpec) -> int | None:
    """``budget.max_resource`` in epochs (full-budget equivalents times ``fidelity.max``), or None."""
    budget = spec.budget.max_resource
    if budget is None:
        return None
    epochs = budget * spec.fidelity.max if spec.budget.unit == "fbe" else budget
    return max(1, math.floor(epochs))


def core_from_spec(spec: StudySpec) -> SchedulerCore:
    """The scheduler core of a study (not for ``ray-asha`` / ``ray-hyperband``), with the options its study
    file set (each scheduler declares them beside its core: ``Core.Options``)."""
    scheduler = spec.scheduler
    if scheduler.kind in RAY_NATIVE:
        raise ValueError(f"scheduler {scheduler.kind!r} is Ray's own and has no core")
    return make_scheduler(
        scheduler.kind,
        searcher_from_spec(spec),
        max_resource=spec.fidelity.max,
        reduction_factor=spec.fidelity.eta,
        min_resource=spec.fidelity.min,
        mode=spec.objective.mode,
        max_trials=spec.budget.max_trials,
        max_total_resource=max_total_epochs(spec),
        retrain=spec.fidelity.retrains,
        **scheduler.core_options(),
    )


def trainer_settings(spec: StudySpec) -> dict[str, Any]:
    """The trainer section as the trials receive it: absolute paths (the data, weights and a
    ``runtime.cache_dir`` override: Ray runs trials in other folders),
    and for ``tfclip`` the LR schedule spanning ``fidelity.max`` epochs (``fidelity.epochs`` for a data
    fraction) and torch threads = the trial's CPUs, unless the study sets them."""
    settings = spec.trainer.model_dump(mode="json")
    for key in ("data", "weights"):
        value = settings.get(key)
        if isinstance(value, dict):
            settings[key] = {name: str(Path(path).resolve()) for name, path in value.items()}
        elif value is not None:
            settings[key] = str(Path(value).resolve())
    if spec.trainer.name == "tfclip":
        from trainers.tfclip.config import flatten_dotted

        overrides = flatten_dotted(settings.get("overrides") or {})
        if "optim.epochs" not in overrides and "optim.epochs" not in spec.space:
            overrides["optim.epochs"] = spec.fidelity.schedule_epochs
        if "runtime.threads" not in overrides and "runtime.threads" not in spec.space:
            overrides["runtime.threads"] = max(1, math.floor(spec.resources.cpu))
        cache_dir = overrides.get("runtime.cache_dir")
        if isinstance(cache_dir, str):  # like the data paths: relative to where agvp-hpo runs
            overrides["runtime.cache_dir"] = str(Path(cache_dir).expanduser().resolve())
        settings["overrides"] = overrides
    return settings
