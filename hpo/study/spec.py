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

import math
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_serializer,
    field_validator,
    model_validator,
)

from hpo.space import FieldError, SearchSpace, parse_space

__all__ = [
    "AshaSpec",
    "BudgetSpec",
    "ExecutionSpec",
    "FidelitySpec",
    "FifoSpec",
    "HyperbandSpec",
    "MfhoSpec",
    "ObjectiveSpec",
    "RayAshaSpec",
    "RayHyperbandSpec",
    "ResourcesSpec",
    "SchedulerSpec",
    "SearcherSpec",
    "StorageSpec",
    "StudySpec",
    "TrainerSpec",
    "parse_duration",
]

#: Sanity bounds: a value beyond these is a typo (an exponent too many), not a plan.
MAX_EPOCHS = 100_000
MAX_WALL_CLOCK_S = 366 * 86400.0
SCHEDULER_KINDS = ("hyperband", "asha", "mfho", "ray-asha", "ray-hyperband", "fifo")
SEARCHER_KINDS = ("random", "tpe", "mf-tpe")
_SLUG_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_DURATION_RE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhd])\s*")
_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _no_bool(value: Any) -> Any:
    # pydantic's lax mode reads `true` as 1; a boolean where a number belongs is always a slip.
    if isinstance(value, bool):
        raise ValueError(f"must be a number, got {value}")
    return value


def _whole(value: Any) -> Any:
    """A count: ``3`` or ``3.0``; never a boolean, a fraction or a float too large to be exact."""
    value = _no_bool(value)
    if isinstance(value, float):
        if not math.isfinite(value) or abs(value) > 2**53:
            raise ValueError(f"is too large to be a count, got {value:g}")
        if not value.is_integer():
            raise ValueError(f"must be a whole number (an integer), got {value:g}")
        return int(value)
    return value


_Int = Annotated[int, BeforeValidator(_whole)]
_Float = Annotated[float, AllowInfNan(False), BeforeValidator(_no_bool)]


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


# --- fidelity -----------------------------------------------------------------------------------------------


class FidelitySpec(StrictSpec):
    """The fidelity is the number of training epochs a configuration gets.

    ``min``, ``max`` and ``eta`` are r_min, R and eta of Hyperband (Li et al., JMLR 2018): rung budgets are
    ``min * eta**k`` epochs up to ``max``. ``eta`` must be an integer >= 2 (``3.0`` is read as 3, ``2.5`` is
    rejected) so that every rung budget is a whole number of epochs.
    """

    resource: Literal["epochs"] = "epochs"
    min: _Int = Field(1, ge=1, le=MAX_EPOCHS)
    max: _Int = Field(ge=1, le=MAX_EPOCHS)
    eta: _Int = Field(3, ge=2, le=100)

    @model_validator(mode="after")
    def _order(self) -> FidelitySpec:
        if self.max <= self.min:
            raise FieldError(("max",), f"must be > min ({self.min}), got {self.max}")
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

    def rung_count(self) -> int:
        """How many budgets ``min * eta**k <= max`` exist (s_max + 1); used only to validate options here."""
        count, budget = 1, self.min
        while budget * self.eta <= self.max:
            budget *= self.eta
            count += 1
        return count


# --- schedulers ---------------------------------------------------------------------------------------------


class HyperbandSpec(StrictSpec):
    """Hyperband with promotions (paused trials resume from their checkpoint, never restart).

    ``bracket_order``: ``largest-first`` runs brackets s = s_max .. 0 as in Algorithm 1 (most exploratory
    first), ``smallest-first`` runs s = 0 .. s_max (Ray Tune's order), ``cyclic`` hands new configurations to
    the brackets in turn so all of them progress at once (useful with many workers). ``brackets`` keeps only
    that many brackets, starting from the most exploratory; ``None`` runs all s_max + 1.
    """

    kind: Literal["hyperband"] = "hyperband"
    bracket_order: Literal["largest-first", "smallest-first", "cyclic"] = "largest-first"
    brackets: _Int | None = Field(None, ge=1)


class AshaSpec(StrictSpec):
    """Asynchronous successive halving (Li et al., MLSys 2020).

    ``mode``: ``promotion`` is the paper's rule (a free worker promotes a configuration in the top 1/eta of
    a rung, else starts a new one; trials pause at milestones and resume from checkpoints); ``stopping``
    lets trials run and stops one that falls below the rung's (1 - 1/eta) quantile (what Ray's ASHA does).
    ``brackets``: number of ASHA brackets with increasing minimum budget (1 = plain ASHA).
    """

    kind: Literal["asha"] = "asha"
    mode: Literal["promotion", "stopping"] = "promotion"
    brackets: _Int = Field(1, ge=1)


class MfhoSpec(StrictSpec):
    """Multi-fidelity hyper-parameter optimisation (MFHO), the seed report's scheduler.

    Each round draws new configurations and evaluates them at a low fidelity, compares each with the best
    result seen so far at that fidelity, and re-evaluates the promising ones at the next higher fidelity
    (``fidelity.eta`` times more epochs), resuming from their checkpoints, until ``fidelity.max``.

    - ``initial_fidelity``: epochs at which new configurations are first evaluated (``None`` =
      ``fidelity.min``); must be below ``fidelity.max``.
    - ``promote_fraction``: the fraction of a fidelity's results that move up, in (0, 1] (``None`` =
      ``1 / fidelity.eta``, the successive-halving rate).
    - ``max_rounds``: stop after this many rounds (``None`` = until the budget runs out).
    """

    kind: Literal["mfho"] = "mfho"
    initial_fidelity: _Int | None = Field(None, ge=1)
    promote_fraction: _Float | None = Field(None, gt=0.0, le=1.0)
    max_rounds: _Int | None = Field(None, ge=1)

    def resolved_promote_fraction(self, eta: int) -> float:
        return self.promote_fraction if self.promote_fraction is not None else 1.0 / eta


class RayAshaSpec(StrictSpec):
    """Ray Tune's own ``ASHAScheduler`` (stopping only, no promotion, no persisted state): a baseline.

    ``grace_period`` and ``reduction_factor`` are Ray's names for r_min and eta; ``None`` takes them from
    ``fidelity`` (Ray's own defaults, 1 and 4 with ``max_t=100``, would silently differ from the study).
    """

    kind: Literal["ray-asha"] = "ray-asha"
    grace_period: _Int | None = Field(None, ge=1)
    reduction_factor: _Int | None = Field(None, ge=2)


class RayHyperbandSpec(StrictSpec):
    """Ray Tune's own ``HyperBandScheduler`` (synchronous, state lost on resume): a baseline."""

    kind: Literal["ray-hyperband"] = "ray-hyperband"


class FifoSpec(StrictSpec):
    """Every configuration trains to ``fidelity.max``: plain random or model-based search, no stopping."""

    kind: Literal["fifo"] = "fifo"


SchedulerSpec = Annotated[
    Union[HyperbandSpec, AshaSpec, MfhoSpec, RayAshaSpec, RayHyperbandSpec, FifoSpec],  # noqa: UP007
    Field(discriminator="kind"),
]


# --- searcher, objective, budget, resources, trainer, storage ----------------------------------------------


class SearcherSpec(StrictSpec):
    """Where new configurations come from.

    ``random`` samples the prior; ``tpe`` fits a tree-structured Parzen estimator after ``n_startup`` random
    configurations; ``mf-tpe`` (BOHB-style) fits it on the largest fidelity with enough results and keeps
    ``random_fraction`` of proposals random for robustness (BOHB's rho = 1/3). ``n_startup = None`` lets
    the searcher choose (BOHB: number of searched parameters + 2).
    """

    kind: Literal["random", "tpe", "mf-tpe"] = "random"
    seed: _Int = Field(0, ge=0, le=2**63 - 1)
    random_fraction: _Float = Field(1.0 / 3.0, ge=0.0, le=1.0)
    n_startup: _Int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _applies(self) -> SearcherSpec:
        default_fraction = type(self).model_fields["random_fraction"].default
        if self.kind != "mf-tpe" and self.random_fraction != default_fraction:
            raise FieldError(("random_fraction",), f"applies only to kind 'mf-tpe', not '{self.kind}'")
        if self.kind == "random" and self.n_startup is not None:
            raise FieldError(("n_startup",), "applies only to kinds 'tpe' and 'mf-tpe', not 'random'")
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

    max_trials: _Int | None = Field(None, ge=1, le=10_000_000)
    max_resource: _Float | None = Field(None, gt=0.0, le=1e9)
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
    so CPU-only studies must say ``gpu: 0`` (the default)."""

    cpu: _Float = Field(1.0, gt=0.0, le=1024)
    gpu: _Float = Field(0.0, ge=0.0, le=64)

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

    max_concurrent: _Int | None = Field(None, ge=1, le=100_000)
    max_failures: _Int = Field(1, ge=0, le=100)
    cpus: _Int | None = Field(None, ge=1, le=4096)


class TrainerSpec(StrictSpec):
    """Which trainer, from which preset, on which data. ``name``: ``tfclip`` (the TF-CLIP family) or
    ``synthetic`` (no model: epochs sleep ``overrides.epoch_seconds`` and report a deterministic curve; for
    measuring and testing the engine). ``overrides`` set trainer keys (dotted, e.g.
    ``optim.epochs_per_eval``) for every trial; a key is either searched (``space``) or overridden, not both.
    ``weights`` is a local file of pre-trained weights; ``None`` starts from random initialisation."""

    name: Literal["tfclip", "synthetic"] = "tfclip"
    preset: str = Field("tiny-cpu", min_length=1)
    data: Path | None = None
    weights: Path | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _needs_data(self) -> TrainerSpec:
        if self.name == "tfclip" and self.data is None:
            raise FieldError(("data",), "is required for trainer 'tfclip' (a dataset folder)")
        return self

    @field_validator("data", "weights", mode="before")
    @classmethod
    def _non_empty(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError("must be a path, got an empty string")
        return value


class StorageSpec(StrictSpec):
    """Where results go: ``<root>/<study name>/`` holds the spec, Parquet results and checkpoints."""

    root: Path = Path("results")


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
    objective: ObjectiveSpec = ObjectiveSpec()
    budget: BudgetSpec
    resources: ResourcesSpec = ResourcesSpec()
    execution: ExecutionSpec = ExecutionSpec()
    trainer: TrainerSpec
    storage: StorageSpec = StorageSpec()

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
        _check_scheduler(self.scheduler, self.fidelity)
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready and loadable again (the space in long form, durations in seconds, paths as strings)."""
        return self.model_dump(mode="json")


def _check_scheduler(scheduler: Any, fidelity: FidelitySpec) -> None:
    low, high, eta = fidelity.min, fidelity.max, fidelity.eta
    if isinstance(scheduler, (HyperbandSpec, AshaSpec)) and high < eta * low:
        raise FieldError(
            ("fidelity", "max"),
            f"must be >= eta * min ({eta} * {low} = {eta * low}) for scheduler '{scheduler.kind}' "
            f"(at least two rungs), got {high}",
        )
    brackets = getattr(scheduler, "brackets", None)
    if brackets is not None and brackets > fidelity.rung_count():
        raise FieldError(
            ("scheduler", "brackets"),
            f"must be <= {fidelity.rung_count()}, the number of rungs for min {low}, max {high}, eta {eta}; "
            f"got {brackets}",
        )
    initial = getattr(scheduler, "initial_fidelity", None)
    if initial is not None and not low <= initial < high:
        raise FieldError(
            ("scheduler", "initial_fidelity"),
            f"must be in [fidelity.min, fidelity.max) = [{low}, {high}), got {initial}",
        )
    grace = getattr(scheduler, "grace_period", None)
    if grace is not None and grace >= high:
        raise FieldError(
            ("scheduler", "grace_period"),
            f"must be < fidelity.max ({high}) or nothing is ever stopped, got {grace}",
        )


def _flat_keys(mapping: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """Dotted leaf keys of a nested mapping, so ``{optim: {lr: 1}}`` and ``{optim.lr: 1}`` look alike."""
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        yield dotted
        if isinstance(value, Mapping):
            yield from _flat_keys(value, f"{dotted}.")
