"""The study file as typed, frozen settings: what to search, at which fidelities, how, and within what budget.

Every section rejects unknown keys, so a misspelt option fails loudly instead of silently keeping a default.
The names follow what a Ray Tune or Optuna user already writes (``grace_period``, ``reduction_factor``,
``loguniform``, ``metric``/``mode``); docstrings map them to the papers' symbols.

Relative paths (``trainer.data``, ``trainer.weights``, ``storage.root``) are kept as written and resolve
against the directory ``agvp-hpo`` runs in, not the study file's folder, so the bundled study files work
from a checkout. Nothing is checked on disk here: a study may be validated on a laptop and run on a cluster
that has the data.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    create_model,
    field_serializer,
    field_validator,
    model_validator,
)

from hpo.fields import Count, Real, whole
from hpo.schedulers import SchedulerOptions, study_scheduler_options
from hpo.schedulers.brackets import milestones
from hpo.searchers.mftpe import HIGH_START_LOCAL_FRACTION, LOCAL_FRACTION, RANDOM_FRACTION
from hpo.space import FieldError, SearchSpace, parse_space
from trainers.protocol import Budget, trainer_name_problem

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
    "StudySpec",
    "TrackingSpec",
    "TrainerSpec",
    "parse_duration",
]

#: Sanity bounds: a value beyond these is a typo (an exponent too many), not a plan.
MAX_EPOCHS = 100_000
MAX_WALL_CLOCK_S = 366 * 86400.0
SEARCHER_KINDS = ("random", "tpe", "mf-tpe")
_SLUG_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_DURATION_RE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhd])\s*")
_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> float:
    """Seconds from ``"90s"``, ``"30m"``, ``"2h"``, ``"1d"``, ``"1h30m"``, ``"1.5h"`` or a number of seconds.

    Raises ``ValueError`` naming the value; a duration must be finite and > 0.
    """
    rule = "must be a duration like '90s', '30m', '2h' or '1h30m' (or a number of seconds)"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{rule}, got {value!r}")
    if isinstance(value, str):
        text = value.strip().lower()
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION_RE.findall(text)
            if not parts or "".join(m.group(0) for m in _DURATION_RE.finditer(text)) != text:
                raise ValueError(f"{rule}, got {value!r}") from None
            seconds = sum(float(amount) * _DURATION_UNITS[unit] for amount, unit in parts)
    else:
        seconds = float(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"must be a positive duration, got {value!r}")
    if seconds > MAX_WALL_CLOCK_S:
        raise ValueError(f"must be at most a year ({MAX_WALL_CLOCK_S:.0f} s), got {value!r}")
    return seconds


class StrictSpec(BaseModel):
    """Frozen settings that reject unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)


#: The most trials ``resources.trials_per_gpu`` packs onto one GPU.
MAX_TRIALS_PER_GPU = 16


# --- fidelity -----------------------------------------------------------------------------------------------


class FidelitySpec(StrictSpec):
    """What a rung gives a configuration: epochs, a fraction of the training identities, or both.

    ``min``, ``max`` and ``eta`` are r_min, R and eta of Hyperband (Li et al., JMLR 2018): rung budgets are
    ``min * eta**k`` resource units up to ``max``. ``eta`` must be an integer >= 2 (``3.0`` is read as 3,
    ``2.5`` is rejected) so that every rung budget is a whole number. ``resource`` says what a unit is:

    * ``epochs`` (default): a rung at r trains r epochs on all training identities; a promotion continues
      from the checkpoint (the learning-rate schedule spans ``max`` epochs, so it is one uninterrupted run);
    * ``data_fraction``: a rung at r trains the whole schedule of ``epochs`` epochs on r / max of the training
      identities (nested subsets: the larger contains the smaller). A promotion **retrains from scratch** on
      the larger subset - a checkpoint whose schedule already ended is not a sound start - and is charged
      its whole cost (r units, where R units = one full run);
    * ``epochs+data_fraction`` (a rung sets both): a rung at r trains r epochs in total, the epochs up to it
      on a fraction of the identities that grows geometrically from ``min_data_fraction`` at the first rung
      to 1 at ``max``. A promotion continues from the checkpoint: more data, same schedule.
    """

    resource: Literal["epochs", "data_fraction", "epochs+data_fraction"] = "epochs"
    min: Count = Field(1, ge=1, le=MAX_EPOCHS)
    max: Count = Field(ge=1, le=MAX_EPOCHS)
    eta: Count = Field(3, ge=2, le=100)
    #: ``data_fraction`` only: the epochs every job trains (the schedule's length).
    epochs: Count | None = Field(None, ge=1, le=MAX_EPOCHS)
    #: ``epochs+data_fraction`` only: the data fraction of the first rung.
    min_data_fraction: Real | None = Field(None, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _order(self) -> FidelitySpec:
        if self.max <= self.min:
            raise FieldError(("max",), f"must be > min ({self.min}), got {self.max}")
        if self.resource == "data_fraction" and self.epochs is None:
            raise FieldError(
                ("epochs",), "is required with resource data_fraction (the epochs each job trains)"
            )
        if self.resource != "data_fraction" and self.epochs is not None:
            raise FieldError(("epochs",), f"applies only to resource data_fraction, not {self.resource}")
        if self.resource == "epochs+data_fraction" and self.min_data_fraction is None:
            raise FieldError(("min_data_fraction",), "is required with resource epochs+data_fraction")
        if self.resource != "epochs+data_fraction" and self.min_data_fraction is not None:
            raise FieldError(
                ("min_data_fraction",), f"applies only to resource epochs+data_fraction, not {self.resource}"
            )
        return self

    @property
    def min_resource(self) -> int:
        return self.min

    @property
    def max_resource(self) -> int:
        return self.max

    @property
    def reduction_factor(self) -> int:
        return self.eta

    @property
    def retrains(self) -> bool:
        """Promotions train from scratch (``data_fraction``) instead of continuing from the checkpoint."""
        return self.resource == "data_fraction"

    @property
    def schedule_epochs(self) -> int:
        """Epochs of one full training run (what the trainer's learning-rate schedule spans)."""
        return self.epochs if self.epochs is not None else self.max

    def budget(self, resource: int) -> Budget:
        """What a job that trains a trial up to ``resource`` units gives the trainer."""
        if self.resource == "epochs":
            return Budget(epochs=resource)
        if self.resource == "data_fraction":
            return Budget(epochs=self.schedule_epochs, data_fraction=resource / self.max)
        rungs = milestones(self.max, self.eta, self.min)
        rung = next((k for k, m in enumerate(rungs) if resource <= m), len(rungs) - 1)
        low = float(self.min_data_fraction or 1.0)
        steps = len(rungs) - 1
        fraction = 1.0 if steps == 0 else low ** ((steps - rung) / steps)
        return Budget(epochs=resource, data_fraction=min(1.0, fraction))


# --- schedulers ---------------------------------------------------------------------------------------------


def _scheduler_spec(kind: str, options: type[SchedulerOptions]) -> type[SchedulerOptions]:
    """The study-file section of one scheduler: its declared options plus ``kind`` (nothing else)."""
    name = "".join(part.capitalize() for part in kind.split("-")) + "Spec"
    model = create_model(name, __base__=options, kind=(Literal[kind], kind))  # type: ignore[call-overload]
    model.__doc__ = options.__doc__
    return model


#: One section model per scheduler kind, built from the options each scheduler declares.
SCHEDULER_SPECS: dict[str, type[SchedulerOptions]] = {
    kind: _scheduler_spec(kind, options) for kind, options in study_scheduler_options().items()
}
SCHEDULER_KINDS = tuple(SCHEDULER_SPECS)
HyperbandSpec = SCHEDULER_SPECS["hyperband"]
AshaSpec = SCHEDULER_SPECS["asha"]
MfhoSpec = SCHEDULER_SPECS["mfho"]
MfhoHedgeSpec = SCHEDULER_SPECS["mfho-hedge"]
RayAshaSpec = SCHEDULER_SPECS["ray-asha"]
RayHyperbandSpec = SCHEDULER_SPECS["ray-hyperband"]
FifoSpec = SCHEDULER_SPECS["fifo"]

SchedulerSpec = Annotated[
    Union[tuple(SCHEDULER_SPECS.values())],  # type: ignore[valid-type]  # noqa: UP007
    Field(discriminator="kind"),
]


# --- searcher, objective, budget, resources, trainer, storage ----------------------------------------------


class SearcherSpec(StrictSpec):
    """Where new configurations come from.

    ``mf-tpe`` (the default; BOHB-style) fits a TPE on the largest fidelity with enough results, keeps
    ``random_fraction`` of proposals random for robustness (BOHB's rho = 1/3) and, once its model is on the
    highest fidelity reached, spends ``local_fraction`` of proposals (``high_start_local_fraction`` of those
    that start at >= 30 % of the budget, e.g. Hyperband's small brackets) refining the best configuration;
    ``random`` samples the space; ``tpe`` fits Optuna's TPE on the highest fidelity after ``n_startup``
    random configurations. ``n_startup = None`` lets the searcher choose (mf-tpe: ceil((d + 1) / 0.15), at
    most 27).
    """

    kind: Literal["random", "tpe", "mf-tpe"] = "mf-tpe"
    seed: Count = Field(0, ge=0, le=2**63 - 1)
    random_fraction: Real = Field(RANDOM_FRACTION, ge=0.0, le=1.0)
    local_fraction: Real = Field(LOCAL_FRACTION, ge=0.0, le=1.0)
    high_start_local_fraction: Real = Field(HIGH_START_LOCAL_FRACTION, ge=0.0, le=1.0)
    n_startup: Count | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _applies(self) -> SearcherSpec:
        for option in ("random_fraction", "local_fraction", "high_start_local_fraction"):
            if self.kind != "mf-tpe" and getattr(self, option) != type(self).model_fields[option].default:
                raise FieldError((option,), f"applies only to kind 'mf-tpe', not '{self.kind}'")
        if self.kind == "random" and self.n_startup is not None:
            raise FieldError(("n_startup",), "applies only to kinds 'tpe' and 'mf-tpe', not 'random'")
        return self


class PriorValueSpec(StrictSpec):
    """One parameter's believed-good value, with its own confidence (else the section's)."""

    value: Any
    confidence: Literal["low", "medium", "high"] | None = None


class PriorSpec(StrictSpec):
    """A configuration the user believes is good (e.g. the published recipe), used by the ``mf-tpe``
    searcher and Hyperband's first job (``hpo.searchers.prior``). ``values`` maps searched parameters to a
    value or ``{value, confidence}``; ``from_preset: true`` takes every searched parameter without a value
    from the trainer preset's own configuration; ``confidence`` (``low`` / ``medium`` / ``high``: a
    Gaussian of 0.25 / 0.125 / 0.05 of the range) applies where a value has none."""

    confidence: Literal["low", "medium", "high"] = "medium"
    values: dict[str, PriorValueSpec] = {}
    from_preset: bool = False

    @field_validator("values", mode="before")
    @classmethod
    def _short_values(cls, raw: Any) -> Any:
        if isinstance(raw, Mapping):
            return {k: v if isinstance(v, Mapping) else {"value": v} for k, v in raw.items()}
        return raw

    @model_validator(mode="after")
    def _something(self) -> PriorSpec:
        if not self.values and not self.from_preset:
            raise FieldError((), "names no value: give values or set from_preset: true")
        return self


class ObjectiveSpec(StrictSpec):
    """The reported metric to optimise; ``val_map`` is mAP on the identity-disjoint validation split."""

    metric: str = Field("val_map", min_length=1)
    mode: Literal["max", "min"] = "max"


class BudgetSpec(StrictSpec):
    """When the study stops: whichever limit is reached first (at least one is required).

    ``max_resource`` counts training epochs over all trials (``unit: epochs``) or full-budget equivalents
    (``unit: fbe``: epochs / ``fidelity.max``). ``wall_clock`` accepts ``"90s"``, ``"30m"``, ``"2h"``,
    ``"1h30m"`` or seconds, and holds seconds once parsed.
    """

    max_trials: Count | None = Field(None, ge=1, le=10_000_000)
    max_resource: Real | None = Field(None, gt=0.0, le=1e9)
    unit: Literal["epochs", "fbe"] = "epochs"
    wall_clock: Annotated[float | None, BeforeValidator(lambda v: v if v is None else parse_duration(v))] = (
        None
    )

    @model_validator(mode="after")
    def _some_limit(self) -> BudgetSpec:
        if self.max_trials is None and self.max_resource is None and self.wall_clock is None:
            raise FieldError((), "needs at least one limit: max_trials, max_resource or wall_clock")
        if self.unit != "epochs" and self.max_resource is None:
            raise FieldError(("unit",), "applies to max_resource, which is not set")
        return self


class ResourcesSpec(StrictSpec):
    """What one trial reserves on a Ray node. A GPU request on a CPU-only node leaves trials pending forever,
    so CPU-only studies must say ``gpu: 0`` (the default).

    ``trials_per_gpu`` packs several trials onto one GPU instead of a ``gpu`` fraction: ``N`` reserves
    ``1/N`` GPU per trial; ``auto`` measures first - two training steps and one evaluation batch of the
    largest-memory candidate, in a Ray task on a GPU node (:mod:`hpo.ray_backend.packing`) - and picks N from
    their peak memory and the device's total (at most :data:`MAX_TRIALS_PER_GPU`). It replaces ``gpu``, which
    must then stay 0."""

    cpu: Real = Field(1.0, gt=0.0, le=1024)
    gpu: Real = Field(0.0, ge=0.0, le=64)
    trials_per_gpu: Literal["auto"] | int | None = None

    @field_validator("trials_per_gpu", mode="before")
    @classmethod
    def _packing(cls, value: Any) -> Any:
        if value is None or value == "auto":
            return value
        if isinstance(value, str | bool) or not isinstance(value, int | float):
            raise ValueError(f"must be auto or a whole number of trials, got {value!r}")
        count = whole(value)
        if not 1 <= count <= MAX_TRIALS_PER_GPU:
            raise ValueError(f"must be auto or a whole number in [1, {MAX_TRIALS_PER_GPU}], got {count}")
        return count

    @model_validator(mode="after")
    def _one_gpu_request(self) -> ResourcesSpec:
        if self.trials_per_gpu is not None and self.gpu > 0:
            raise FieldError(
                ("gpu",), f"is {self.gpu:g} but trials_per_gpu is set: give one or the other (gpu: 0)"
            )
        return self

    @field_validator("gpu")
    @classmethod
    def _gpu_shape(cls, gpu: float) -> float:
        # Ray packs fractional GPUs onto one device but cannot split a request across devices.
        if gpu > 1 and not gpu.is_integer():
            raise ValueError(f"must be a fraction in [0, 1] or a whole number of GPUs, got {gpu}")
        return gpu


class ExecutionSpec(StrictSpec):
    """How the Ray backend runs trials.

    - ``max_concurrent``: trials that train at once (``None`` = as many as the Ray cluster fits with
      ``resources`` per trial);
    - ``max_failures``: times a crashed trial is restarted from its latest checkpoint before it is recorded
      as failed (Ray Tune's ``FailureConfig.max_failures``; a non-finite loss is never retried);
    - ``cpus``: CPUs of the embedded local Ray (``None`` = every CPU of this machine); ignored with
      ``--address``, where the cluster's own resources count.
    """

    max_concurrent: Count | None = Field(None, ge=1, le=100_000)
    max_failures: Count = Field(1, ge=0, le=100)
    cpus: Count | None = Field(None, ge=1, le=4096)


class TrainerSpec(StrictSpec):
    """Which trainer, from which preset, on which data. ``name``: ``tfclip`` (the TF-CLIP family),
    ``synthetic`` (no model: epochs sleep ``overrides.epoch_seconds`` and report a deterministic curve; for
    measuring and testing the engine), or your own trainer: an entry point of group ``agvp_hpo.trainers`` or
    an import path ``module:attribute`` (only the syntax is checked here; :mod:`hpo.study.validate` resolves
    it: :func:`trainers.protocol.get_trainer`). ``overrides`` set trainer keys (dotted, e.g.
    ``optim.epochs_per_eval``) for every trial; a key is either searched (``space``) or overridden, not both.
    ``weights`` is a local file of pre-trained weights, or one file per backbone (``{ViT-B-16: a.pt,
    EVA02-L-14: b.pt}``) when the space searches ``model.backbone``; ``None`` starts from random
    initialisation."""

    name: str = "tfclip"
    preset: str = Field("tiny-cpu", min_length=1)
    data: Path | None = None
    weights: Path | dict[str, Path] | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _needs_data(self) -> TrainerSpec:
        if self.name == "tfclip" and self.data is None:
            raise FieldError(("data",), "is required for trainer 'tfclip' (a dataset folder)")
        return self

    @field_validator("name")
    @classmethod
    def _name_syntax(cls, value: str) -> str:
        problem = trainer_name_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("data", "weights", mode="before")
    @classmethod
    def _non_empty(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError("must be a path, got an empty string")
        if isinstance(value, dict):
            if not value:
                raise ValueError("must name at least one backbone's file")
            for backbone, path in value.items():
                if not isinstance(path, str | Path) or not str(path).strip():
                    raise ValueError(f"{backbone}: must be a path, got {path!r}")
        return value


class StorageSpec(StrictSpec):
    """Where results go: ``<root>/<study name>/`` holds the spec, Parquet results and checkpoints."""

    root: Path = Path("results")


class MlflowSpec(StrictSpec):
    """``uri``: MLflow's tracking URI - a server (``http://host:5000``), a database
    (``sqlite:///mlflow.db``) or a file store (``file:///abs/mlruns``; MLflow 3 wants
    ``MLFLOW_ALLOW_FILE_STORE=true`` for it)."""

    uri: str = Field(min_length=1)


class TensorboardSpec(StrictSpec):
    """``dir``: TensorBoard's log folder; the study's runs go to ``<dir>/<study name>/trial-00007/``."""

    dir: Path

    @field_validator("dir", mode="before")
    @classmethod
    def _non_empty(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError("must be a folder, got an empty string")
        return value


class TrackingSpec(StrictSpec):
    """Experiment tracking, off by default: each trial one MLflow run (``mlflow: {uri: ...}``, needs
    ``pip install 'agvp-hpo[tracking]'``) and/or one TensorBoard run (``tensorboard: {dir: ...}``) with its
    parameters, every metric per epoch, the scheduler's decisions and the best configuration
    (:mod:`hpo.tracking`)."""

    mlflow: MlflowSpec | None = None
    tensorboard: TensorboardSpec | None = None


def _kind_shorthand(value: Any) -> Any:
    """``scheduler: asha`` means ``scheduler: {kind: asha}``."""
    return {"kind": value} if isinstance(value, str) else value


# --- the study ----------------------------------------------------------------------------------------------


class StudySpec(StrictSpec):
    """A whole study file. Cross-field rules are checked here; see ``hpo.study.loader`` for reading YAML."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    name: str
    description: str = ""
    space: SearchSpace
    fidelity: FidelitySpec
    scheduler: SchedulerSpec
    searcher: SearcherSpec = SearcherSpec()
    prior: PriorSpec | None = None
    objective: ObjectiveSpec = ObjectiveSpec()
    budget: BudgetSpec
    resources: ResourcesSpec = ResourcesSpec()
    execution: ExecutionSpec = ExecutionSpec()
    trainer: TrainerSpec
    storage: StorageSpec = StorageSpec()
    tracking: TrackingSpec = TrackingSpec()

    @field_validator("name")
    @classmethod
    def _slug(cls, name: str) -> str:
        # The name becomes a folder under storage.root and a path segment of the REST API.
        if not _SLUG_RE.match(name):
            raise ValueError(f"must be 1-64 letters, digits, '-' or '_' (it names a folder), got {name!r}")
        return name

    @field_validator("space", mode="before")
    @classmethod
    def _parse_space(cls, raw: Any) -> SearchSpace:
        space = parse_space(raw)
        if space.dimensions == 0:
            raise FieldError((), "must have at least one searched (not fixed) parameter")
        return space

    @field_validator("scheduler", "searcher", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return _kind_shorthand(value)

    @field_serializer("space")
    def _dump_space(self, space: SearchSpace) -> dict[str, Any]:
        return space.to_dict()

    @model_validator(mode="after")
    def _cross_fields(self) -> StudySpec:
        for key in _flat_keys(self.trainer.overrides):
            if key in self.space:
                raise FieldError(
                    ("trainer", "overrides", key),
                    "is also in space: a key is either searched (space) or fixed (overrides), not both",
                )
        self.scheduler.check_fidelity(self.fidelity)
        if self.fidelity.resource != "epochs" and self.scheduler.kind in ("ray-asha", "ray-hyperband"):
            raise FieldError(
                ("fidelity", "resource"),
                f"is {self.fidelity.resource}, but Ray's own {self.scheduler.kind} counts only epochs: "
                "use asha or hyperband",
            )
        stops_midway = self.scheduler.kind == "mfho-hedge" or (
            self.scheduler.kind == "asha" and getattr(self.scheduler, "mode", "") == "stopping"
        )
        if self.fidelity.retrains and stops_midway:
            raise FieldError(
                ("fidelity", "resource"),
                "is data_fraction, whose jobs report only when their schedule ends, but this scheduler stops "
                "trials in the middle of a job: use hyperband, asha (promotion), mfho or fifo",
            )
        if self.prior is not None:
            self._check_prior(self.prior)
        return self

    def _check_prior(self, prior: PriorSpec) -> None:
        if self.searcher.kind != "mf-tpe":
            raise FieldError(
                ("prior",),
                f"is used by searcher kind 'mf-tpe' only, but searcher.kind is '{self.searcher.kind}'",
            )
        for key, entry in prior.values.items():
            if key not in self.space.names:
                close = difflib.get_close_matches(key, self.space.names, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise FieldError(("prior", "values", key), f"is not a searched parameter of space{hint}")
            if key not in self.space.unit_names:
                raise FieldError(("prior", "values", key), "is fixed in space: a prior is for searched ones")
            try:
                self.space.check_value(key, entry.value)
            except FieldError as error:
                raise FieldError(("prior", "values", key), error.rule) from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready and loadable again (the space in long form, durations in seconds, paths as strings)."""
        return self.model_dump(mode="json")


def _flat_keys(mapping: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """Dotted leaf keys of a nested mapping, so ``{optim: {lr: 1}}`` and ``{optim.lr: 1}`` look alike."""
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        yield dotted
        if isinstance(value, Mapping):
            yield from _flat_keys(value, f"{dotted}.")
