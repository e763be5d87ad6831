"""The search space at run time: parameter kinds, sampling, the unit-cube encoding and validation.

This module has no Ray and no Optuna import: schedulers, searchers, the simulator and the results store all
work with :class:`SearchSpace`, and the Ray backend translates it at the edge.

Parameter kinds (frozen pydantic models with a ``type`` discriminator):

- :class:`FloatParam` - a real number in ``[low, high]``, uniform or log-uniform (``log=True``).
- :class:`IntParam` - an integer in ``[low, high]`` (both bounds inclusive, as in Optuna's ``suggest_int``;
  Ray's ``tune.randint`` excludes ``high``), uniform or log-uniform.
- :class:`CategoricalParam` - one of ``choices`` (strings, numbers or booleans).
- :class:`FixedParam` - a constant; recorded with every configuration, never searched.

Any parameter may carry a :class:`Condition`: it exists only when its parent parameter takes one of the
listed values (e.g. an attention-head count that only matters with attention pooling). Inactive parameters
are *omitted* from configurations, never filled with a placeholder, so a configuration says exactly what the
trainer will use.

The unit-cube encoding (:meth:`SearchSpace.to_unit` / :meth:`SearchSpace.from_unit`) lets model-based
searchers (TPE, multi-fidelity TPE) treat every space as ``[0, 1]^d`` without knowing parameter kinds.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import numpy as np
from pydantic import (
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from trainers.errors import AgvpError

__all__ = [
    "CategoricalParam",
    "Condition",
    "FieldError",
    "FixedParam",
    "FloatParam",
    "IntParam",
    "Param",
    "Scalar",
    "SearchSpace",
    "field_error_from_validation",
    "parse_space",
]

#: Short forms accepted by :func:`parse_space`, named after Ray Tune's sampling functions.
SHORT_FORMS = ("loguniform", "uniform", "randint", "lograndint", "choice")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class FieldError(AgvpError, ValueError):
    """A value that breaks a rule, located by its field path (``("lr", "low")`` -> ``lr.low``).

    A ``ValueError`` so that pydantic validators may raise it (the study loader then finds it in the error's
    context and puts the enclosing path in front), and an :class:`AgvpError` so the CLI reports it as one
    line. ``unknown_key=True`` marks a key that should not be there: the message then leads with the path,
    ``unknown key 'scheduler.mode' (did you mean ...)``.
    """

    def __init__(self, path: Sequence[str | int], rule: str, *, unknown_key: bool = False) -> None:
        self.path = tuple(path)
        self.rule = rule
        self.unknown_key = unknown_key
        if unknown_key:
            self.message = f"unknown key '{_dotted(self.path)}'" + (f" {rule}" if rule else "")
        else:
            self.message = f"{_dotted(self.path)} {rule}" if self.path else rule
        super().__init__(self.message)

    @property
    def field(self) -> str:
        """The dotted field path, e.g. ``space.optim.lr.low`` (list items as ``choices[2]``)."""
        return _dotted(self.path)

    def under(self, *prefix: str | int) -> FieldError:
        """The same error seen from an enclosing structure (``under("space")``)."""
        return FieldError((*prefix, *self.path), self.rule, unknown_key=self.unknown_key)


def _dotted(path: Sequence[str | int]) -> str:
    """Join a field path for messages: names with ``.``, list positions as ``[i]``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- value types --------------------------------------------------------------------------------------------


def _plain_scalar(value: Any) -> Any:
    """Unwrap numpy scalars, so ``np.int64(3)`` from a searcher compares and serialises like ``3``."""
    return value.item() if isinstance(value, np.generic) else value


def _check_scalar(value: Any) -> bool | int | float | str:
    value = _plain_scalar(value)
    if not isinstance(value, (bool, int, float, str)):
        raise ValueError(
            f"must be a string, number or boolean, got {type(value).__name__} {_short_repr(value)}"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"must be finite, got {value}")
    return value


def _reject_bool(value: Any) -> Any:
    # pydantic's lax mode reads True as 1; a boolean bound is always a mistake in a study file.
    if isinstance(value, bool):
        raise ValueError(f"must be a number, got {value}")
    return _plain_scalar(value)


#: A categorical choice, a fixed value or a condition value: string, number or boolean, kept as given.
Scalar = Annotated[Union[bool, int, float, str], PlainValidator(_check_scalar)]  # noqa: UP007
_Number = Annotated[float, AllowInfNan(False), BeforeValidator(_reject_bool)]
_Integer = Annotated[int, BeforeValidator(_reject_bool)]


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "booleans"
    return "numbers" if isinstance(value, (int, float)) else "strings"


def _same(a: Any, b: Any) -> bool:
    """Equality that keeps booleans apart from numbers (``True == 1`` in Python, not in a search space)."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def _index_of(choices: Sequence[Any], value: Any) -> int | None:
    value = _plain_scalar(value)
    for i, choice in enumerate(choices):
        if _same(choice, value):
            return i
    return None


# --- parameter kinds ----------------------------------------------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Condition(_Frozen):
    """Active only when ``config[parent]`` is one of ``values`` (and the parent is itself active)."""

    parent: str
    values: list[Scalar] = Field(min_length=1)

    def holds(self, value: Any) -> bool:
        return _index_of(self.values, value) is not None


class _ParamBase(_Frozen):
    condition: Condition | None = None


class FloatParam(_ParamBase):
    """A real number in ``[low, high]``; ``log=True`` samples ``log(x)`` uniformly (needs ``low > 0``)."""

    type: Literal["float"] = "float"
    low: _Number
    high: _Number
    log: bool = False

    @model_validator(mode="after")
    def _bounds(self) -> FloatParam:
        _check_bounds(self.low, self.high, self.log)
        return self


class IntParam(_ParamBase):
    """An integer in ``[low, high]`` (both inclusive); ``log=True`` favours small values (``low >= 1``)."""

    type: Literal["int"] = "int"
    low: _Integer
    high: _Integer
    log: bool = False

    @model_validator(mode="after")
    def _bounds(self) -> IntParam:
        _check_bounds(self.low, self.high, self.log)
        return self

    @property
    def size(self) -> int:
        return self.high - self.low + 1


def _check_bounds(low: float, high: float, log: bool) -> None:
    if not low < high:
        raise FieldError(("low",), f"must be < high, got low={_num(low)} and high={_num(high)}")
    if log and low <= 0:
        raise FieldError(("low",), f"must be > 0 for log scale, got {_num(low)}")


def _num(value: float) -> str:
    """A bound as the user likely wrote it: ``0`` rather than ``0.0``, ``1e-06`` as Python prints it."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else repr(value)


class CategoricalParam(_ParamBase):
    """One of ``choices``; the order matters only for the unit encoding (``index / (n - 1)``)."""

    type: Literal["categorical"] = "categorical"
    choices: list[Scalar] = Field(min_length=1)

    @field_validator("choices")
    @classmethod
    def _unique(cls, choices: list[Any]) -> list[Any]:
        kinds = {_kind_of(choice) for choice in choices}
        if len(kinds) > 1:
            raise FieldError(
                (),
                f"mix {' and '.join(sorted(kinds))}: all choices must be strings, all numbers or all "
                f"booleans (the results store keeps one type per column), got {_short_repr(choices)}",
            )
        for i, choice in enumerate(choices):
            first = _index_of(choices, choice)
            if first is not None and first < i:
                raise FieldError((i,), f"repeats choice {choice!r}; choices must be unique")
        return choices


class FixedParam(_ParamBase):
    """A constant recorded with every configuration (so results say what the trainer used)."""

    type: Literal["fixed"] = "fixed"
    value: Scalar


Param = Annotated[Union[FloatParam, IntParam, CategoricalParam, FixedParam], Field(discriminator="type")]  # noqa: UP007
PARAM_TYPES = ("float", "int", "categorical", "fixed")
_PARAM_ADAPTER: TypeAdapter[Any] = TypeAdapter(Param)


# --- the space ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchSpace:
    """Named parameters in insertion order, with conditions checked at construction.

    Construction checks that every condition names an existing parent that is categorical, int or fixed,
    that its values are possible values of the parent, and that conditions form no cycle.
    """

    params: dict[str, FloatParam | IntParam | CategoricalParam | FixedParam]
    _order: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _unit_names: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        params = dict(self.params)
        for name, param in params.items():
            if not isinstance(name, str) or not _NAME_RE.match(name):
                raise FieldError(
                    (),
                    f"parameter name {name!r} is invalid: use letters, digits and '_', "
                    "dotted for nested trainer keys (e.g. optim.lr)",
                )
            if not isinstance(param, (FloatParam, IntParam, CategoricalParam, FixedParam)):
                raise FieldError(
                    (name,), f"must be a FloatParam, IntParam, CategoricalParam or FixedParam, got {param!r}"
                )
        object.__setattr__(self, "params", params)
        for name, param in params.items():
            if param.condition is not None:
                _check_condition(name, param.condition, params)
        object.__setattr__(self, "_order", _parents_first(params))
        unit_names = tuple(n for n, p in params.items() if not isinstance(p, FixedParam))
        object.__setattr__(self, "_unit_names", unit_names)

    # -- shape --

    @property
    def names(self) -> tuple[str, ...]:
        """Parameter names in the order they were defined."""
        return tuple(self.params)

    @property
    def unit_names(self) -> tuple[str, ...]:
        """The parameters behind each coordinate of :meth:`to_unit` (every parameter that is not fixed)."""
        return self._unit_names

    @property
    def dimensions(self) -> int:
        """Number of searched (non-fixed) parameters: the length of a unit vector."""
        return len(self._unit_names)

    def __getitem__(self, name: str) -> FloatParam | IntParam | CategoricalParam | FixedParam:
        return self.params[name]

    def __contains__(self, name: object) -> bool:
        return name in self.params

    def __iter__(self) -> Iterator[str]:
        return iter(self.params)

    def __len__(self) -> int:
        return len(self.params)

    # -- conditions --

    def is_active(self, name: str, config: Mapping[str, Any]) -> bool:
        """Whether ``name`` exists in ``config``'s world: its parent chain is active and matches."""
        param = self._param(name)
        while param.condition is not None:
            parent = param.condition.parent
            if parent not in config or not param.condition.holds(config[parent]):
                return False
            param = self.params[parent]
        return True

    # -- sampling --

    def sample(self, rng: np.random.Generator, fixed: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A random configuration: each active parameter drawn from its own prior, inactive ones omitted.

        Parents are drawn before children so a child's condition sees its parent's value; the result is in
        definition order. Ints are uniform over ``low..high`` (log ints uniform in log space, then rounded).
        ``fixed`` values (e.g. a prior's) replace the draws of their parameters - the draws still happen,
        so the generator advances exactly as without - and decide which children are active.
        """
        fixed = fixed or {}
        values: dict[str, Any] = {}
        for name in self._order:
            if self.is_active(name, values):
                values[name] = _draw(self.params[name], rng)
                if name in fixed:
                    values[name] = fixed[name]
        return {name: values[name] for name in self.params if name in values}

    # -- unit cube --

    def with_value(self, config: Mapping[str, Any], name: str, value: Any) -> dict[str, Any]:
        """``config`` with parameter ``name`` set to ``value``; parameters that this activates take their
        lowest value (first choice), those it deactivates are dropped."""
        vector = np.nan_to_num(self.to_unit(config), nan=0.0)
        vector[self.unit_names.index(name)] = _encode(self.params[name], value)
        return self.from_unit(vector)

    def to_unit(self, config: Mapping[str, Any]) -> np.ndarray:
        """Encode a valid configuration as floats in ``[0, 1]``, one per :attr:`unit_names`, NaN if inactive.

        Floats map linearly (log params in log space). Ints map the widened interval
        ``[low - 0.5, high + 0.5]`` so every integer owns an equal slice of the unit interval (Optuna's TPE
        does the same). Categoricals map ``index / (n - 1)``, or 0.5 when there is one choice.
        """
        config = self.validate_config(config)
        out = np.full(self.dimensions, np.nan, dtype=np.float64)
        for i, name in enumerate(self.unit_names):
            if name in config:
                out[i] = _encode(self.params[name], config[name])
        return out

    def from_unit(self, vector: Sequence[float] | np.ndarray) -> dict[str, Any]:
        """Decode a unit vector into a valid configuration (the inverse of :meth:`to_unit`).

        Coordinates are clipped to ``[0, 1]``; ints are rounded, categoricals take the nearest index; then
        parameters made inactive by the decoded parents are dropped. A NaN coordinate is allowed only for a
        parameter that ends up inactive.
        """
        vec = np.asarray(vector, dtype=np.float64)
        if vec.shape != (self.dimensions,):
            raise ValueError(f"unit vector has shape {vec.shape}, but must be ({self.dimensions},)")
        coords = dict(zip(self.unit_names, vec.tolist(), strict=True))
        values: dict[str, Any] = {}
        for name in self._order:
            if not self.is_active(name, values):
                continue
            param = self.params[name]
            if isinstance(param, FixedParam):
                values[name] = param.value
                continue
            u = coords[name]
            if math.isnan(u):
                raise FieldError((name,), "is active but its unit coordinate is NaN")
            values[name] = _decode(param, min(max(u, 0.0), 1.0))
        return {name: values[name] for name in self.params if name in values}

    # -- validation --

    def check_value(self, name: str, value: Any) -> Any:
        """One value of parameter ``name`` checked against its range or choices, normalised; raises
        :class:`FieldError` naming the parameter."""
        return _check_value(name, self.params[name], value)

    def validate_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Check a configuration against the space and return it normalised (plain Python types, in order).

        Raises :class:`FieldError` (a ``ValueError``) naming the parameter: an unknown key, a missing active
        parameter, an inactive parameter that is present, or a value outside its range or choices.
        """
        if not isinstance(config, Mapping):
            raise FieldError((), f"a configuration must be a mapping, got {type(config).__name__}")
        for key in config:
            if key not in self.params:
                close = difflib.get_close_matches(str(key), self.names, n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(self.names)}"
                raise FieldError((str(key),), f"is not a parameter of the search space ({hint})")
        out: dict[str, Any] = {}
        for name in self._order:
            if not self.is_active(name, out):
                cond = self.params[name].condition
                if name in config and cond is not None:  # only conditional parameters can be inactive
                    raise FieldError(
                        (name,),
                        f"is present but inactive: it applies only when {cond.parent} is in {cond.values}",
                    )
                continue
            if name not in config:
                raise FieldError((name,), "is missing (the parameter is active)")
            out[name] = _check_value(name, self.params[name], config[name])
        return {name: out[name] for name in self.params if name in out}

    # -- serialisation --

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Long-form, JSON-ready description; also a valid ``space:`` section of a study file."""
        out: dict[str, dict[str, Any]] = {}
        for name, param in self.params.items():
            entry = param.model_dump(exclude_none=True)
            if "condition" in entry:
                entry["condition"] = entry.pop("condition")  # after the definition, as people write it
            out[name] = entry
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchSpace:
        """Rebuild a space from :meth:`to_dict` output (or any ``space:`` section of a study file)."""
        return parse_space(data)

    def _param(self, name: str) -> FloatParam | IntParam | CategoricalParam | FixedParam:
        try:
            return self.params[name]
        except KeyError:
            raise FieldError((name,), "is not a parameter of the search space") from None


def _check_condition(name: str, cond: Condition, params: Mapping[str, Any]) -> None:
    where = (name, "condition", "parent")
    if cond.parent not in params:
        close = difflib.get_close_matches(cond.parent, list(params), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise FieldError(where, f"refers to unknown parameter '{cond.parent}'{hint}")
    parent = params[cond.parent]
    if isinstance(parent, FloatParam):
        raise FieldError(
            where,
            f"'{cond.parent}' is a float parameter; a condition needs a categorical, int or fixed parent",
        )
    chain = [name]
    current = name
    while (step := params[current].condition) is not None and step.parent in params:
        current = step.parent
        chain.append(current)
        if current == name:
            raise FieldError(where, f"forms a cycle: {' -> '.join(chain)}")
        if current in chain[:-1]:
            break  # a cycle that does not pass through `name`: reported when its members are checked
    for i, value in enumerate(cond.values):
        if isinstance(parent, CategoricalParam) and _index_of(parent.choices, value) is None:
            raise FieldError(
                (name, "condition", "values", i),
                f"is {value!r}, not a choice of '{cond.parent}' ({', '.join(map(str, parent.choices))})",
            )
        if isinstance(parent, IntParam) and not (
            isinstance(value, int) and not isinstance(value, bool) and parent.low <= value <= parent.high
        ):
            raise FieldError(
                (name, "condition", "values", i),
                f"is {value!r}, which '{cond.parent}' never takes (integers {parent.low}..{parent.high})",
            )
        if isinstance(parent, FixedParam) and not _same(parent.value, value):
            raise FieldError(
                (name, "condition", "values", i),
                f"is {value!r}, but '{cond.parent}' is fixed to {parent.value!r}",
            )


def _parents_first(params: Mapping[str, Any]) -> tuple[str, ...]:
    """Definition order, except that every parent comes before its children (conditions form a forest)."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        cond = params[name].condition
        if cond is not None:
            visit(cond.parent)
        order.append(name)

    for name in params:
        visit(name)
    return tuple(order)


# --- per-kind arithmetic ------------------------------------------------------------------------------------


def _int_span(param: IntParam) -> tuple[float, float]:
    """The widened interval ``[low - 0.5, high + 0.5]`` (log space for log ints) that ints are drawn from."""
    low, high = param.low - 0.5, param.high + 0.5
    return (math.log(low), math.log(high)) if param.log else (low, high)


def _round_int(param: IntParam, x: float) -> int:
    return min(max(math.floor(x + 0.5), param.low), param.high)


def _draw(param: FloatParam | IntParam | CategoricalParam | FixedParam, rng: np.random.Generator) -> Any:
    if isinstance(param, FloatParam):
        if param.log:
            x = math.exp(rng.uniform(math.log(param.low), math.log(param.high)))
            return min(max(x, param.low), param.high)
        return float(rng.uniform(param.low, param.high))
    if isinstance(param, IntParam):
        if param.log:
            lo, hi = _int_span(param)
            return _round_int(param, math.exp(rng.uniform(lo, hi)))
        return int(rng.integers(param.low, param.high + 1))
    if isinstance(param, CategoricalParam):
        return param.choices[int(rng.integers(len(param.choices)))]
    return param.value


def _encode(param: FloatParam | IntParam | CategoricalParam, value: Any) -> float:
    if isinstance(param, FloatParam):
        if param.log:
            lo, hi, x = math.log(param.low), math.log(param.high), math.log(value)
        else:
            lo, hi, x = param.low, param.high, value
        return (x - lo) / (hi - lo)
    if isinstance(param, IntParam):
        lo, hi = _int_span(param)
        x = math.log(value) if param.log else value
        return (x - lo) / (hi - lo)
    n = len(param.choices)
    index = _index_of(param.choices, value) or 0  # validated before encoding, so always found
    return 0.5 if n == 1 else index / (n - 1)


def _decode(param: FloatParam | IntParam | CategoricalParam, u: float) -> Any:
    if isinstance(param, FloatParam):
        if param.log:
            x = math.exp(math.log(param.low) + u * (math.log(param.high) - math.log(param.low)))
        else:
            x = param.low + u * (param.high - param.low)
        return min(max(x, param.low), param.high)
    if isinstance(param, IntParam):
        lo, hi = _int_span(param)
        x = lo + u * (hi - lo)
        return _round_int(param, math.exp(x) if param.log else x)
    n = len(param.choices)
    return param.choices[min(math.floor(u * (n - 1) + 0.5), n - 1)]


def _check_value(name: str, param: FloatParam | IntParam | CategoricalParam | FixedParam, value: Any) -> Any:
    value = _plain_scalar(value)
    if isinstance(param, (FloatParam, IntParam)):
        scale = " (log scale)" if param.log else ""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise FieldError((name,), f"must be a number, got {_short_repr(value)}")
        if isinstance(param, IntParam):
            if isinstance(value, float) and not value.is_integer():
                raise FieldError((name,), f"must be an integer, got {value}")
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise FieldError((name,), f"must be finite, got {value}")
        if not param.low <= value <= param.high:
            raise FieldError((name,), f"must be in [{param.low}, {param.high}]{scale}, got {value}")
        return value
    if isinstance(param, CategoricalParam):
        index = _index_of(param.choices, value)
        if index is None:
            raise FieldError(
                (name,), f"must be one of {', '.join(map(repr, param.choices))}, got {_short_repr(value)}"
            )
        return param.choices[index]
    if not _same(param.value, value):
        raise FieldError((name,), f"is fixed to {param.value!r}, got {_short_repr(value)}")
    return param.value


# --- parsing the YAML forms ---------------------------------------------------------------------------------


def parse_space(raw: Mapping[str, Any] | SearchSpace) -> SearchSpace:
    """Build a :class:`SearchSpace` from a study file's ``space:`` mapping (name -> definition).

    Each definition is one of

    - the long form ``{type: float|int|categorical|fixed, ...}`` (the fields of the param models);
    - a short form named after Ray Tune's samplers: ``{loguniform: [low, high]}``, ``{uniform: [low, high]}``,
      ``{randint: [low, high]}`` and ``{lograndint: [low, high]}`` (integers, **both bounds inclusive**,
      unlike Ray's ``tune.randint``), ``{choice: [a, b, ...]}``;
    - a bare string, number or boolean: a fixed value.

    Any mapping form may add ``condition: {parent: NAME, values: [...]}`` or its shorthand
    ``when: {NAME: value}`` / ``when: {NAME: [value, ...]}``. Errors are :class:`FieldError` with a path
    relative to the space (``lr.low``).
    """
    if isinstance(raw, SearchSpace):
        return raw
    if not isinstance(raw, Mapping):
        raise FieldError((), f"must be a mapping of parameter name -> definition, got {_type_name(raw)}")
    params: dict[str, Any] = {}
    for name, entry in raw.items():
        if not isinstance(name, str):
            raise FieldError((), f"parameter name {name!r} must be a string")
        long_form = _long_form(name, entry)
        try:
            params[name] = _PARAM_ADAPTER.validate_python(long_form)
        except ValidationError as error:
            raise field_error_from_validation(error, Param).under(name) from None
    return SearchSpace(params)


def _type_name(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", type(None): "nothing (null)"}
    return names.get(type(value), f"{type(value).__name__} {_short_repr(value)}")


def _long_form(name: str, entry: Any) -> dict[str, Any]:
    if entry is None:
        raise FieldError((name,), "has no definition (null): give a value, a short form or a long form")
    if isinstance(entry, (list, tuple)):
        raise FieldError(
            (name,),
            "is a bare list, which is ambiguous: write {choice: [...]} for a categorical parameter "
            "or {type: fixed, value: ...} for a constant",
        )
    if not isinstance(entry, Mapping):
        return {"type": "fixed", "value": entry}
    shorts = [key for key in entry if key in SHORT_FORMS]
    if len(shorts) > 1:
        raise FieldError((name,), f"uses several short forms ({', '.join(shorts)}); use exactly one")
    condition = _condition_of(name, entry)
    if shorts:
        key = shorts[0]
        for other in entry:
            if other not in (key, "condition", "when"):
                raise FieldError(
                    (name, other),
                    f"(a '{key}' short form takes only 'condition' or 'when')",
                    unknown_key=True,
                )
        out = _expand_short(name, key, entry[key])
    elif "type" in entry:
        out = {key: value for key, value in entry.items() if key not in ("condition", "when")}
    else:
        raise FieldError(
            (name,),
            f"needs a 'type' ({', '.join(PARAM_TYPES)}) or one short form ({', '.join(SHORT_FORMS)}), "
            f"got keys {', '.join(map(str, entry))}",
        )
    if condition is not None:
        out["condition"] = condition
    return out


def _condition_of(name: str, entry: Mapping[str, Any]) -> Any:
    if "when" not in entry:
        return entry.get("condition")
    if "condition" in entry:
        raise FieldError((name, "when"), "cannot be combined with 'condition'; use one of them")
    when = entry["when"]
    if not isinstance(when, Mapping) or len(when) != 1:
        raise FieldError(
            (name, "when"),
            f"must name exactly one parent, e.g. {{model.temporal_pool: attention}}, got {_short_repr(when)}",
        )
    ((parent, values),) = when.items()
    return {"parent": parent, "values": list(values) if isinstance(values, (list, tuple)) else [values]}


def _expand_short(name: str, key: str, args: Any) -> dict[str, Any]:
    if key == "choice":
        if not isinstance(args, (list, tuple)):
            raise FieldError((name, key), f"must be a list of choices, got {_short_repr(args)}")
        return {"type": "categorical", "choices": list(args)}
    if not isinstance(args, (list, tuple)) or len(args) != 2:
        raise FieldError((name, key), f"must be a list [low, high], got {_short_repr(args)}")
    kind = "int" if key.endswith("randint") else "float"
    return {"type": kind, "low": args[0], "high": args[1], "log": key.startswith("log")}


# --- pydantic errors -> FieldError --------------------------------------------------------------------------


def field_error_from_validation(error: ValidationError, root: Any) -> FieldError:
    """The first error of a pydantic ``ValidationError`` as a :class:`FieldError` a person can act on.

    ``root`` is the type that was validated (a model or a union); it is walked along the error's location
    so union tags (``'float'``, ``'hyperband'``) are dropped from the path, unknown keys get the closest
    valid key as a suggestion, and discriminator errors list the valid kinds.
    """
    errors = error.errors(include_url=False)
    # A misspelt key also makes its intended key "missing"; the misspelling is the useful report.
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    kind = first["type"]
    loc = tuple(first["loc"])
    ctx = first.get("ctx") or {}
    value = first.get("input")
    path, end = _walk(root, loc)
    if kind in ("value_error", "assertion_error"):
        cause = ctx.get("error")
        if isinstance(cause, FieldError):
            return cause.under(*path)
        return FieldError(path, str(cause) if cause is not None else first["msg"])
    if kind == "extra_forbidden":
        parent_path, model = _walk(root, loc[:-1])
        return FieldError((*parent_path, loc[-1]), _key_hint(str(loc[-1]), model), unknown_key=True)
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        discriminator = str(ctx.get("discriminator", "kind")).strip("'")
        tags = _union_tags(end, discriminator)
        if kind == "union_tag_not_found":
            return FieldError((*path, discriminator), f"is required (one of {', '.join(tags)})")
        tag = ctx.get("tag")
        return FieldError((*path, discriminator), _one_of(tags, tag))
    if kind == "missing":
        return FieldError(path, "is required")
    if kind == "literal_error":
        literal = _unwrap(end)
        choices = [str(c) for c in get_args(literal)] if get_origin(literal) is Literal else []
        if choices:
            return FieldError(path, _one_of(choices, value))
    if kind in _COMPARISONS:
        symbol, key = _COMPARISONS[kind]
        return FieldError(path, f"must be {symbol} {_num(ctx.get(key))}, got {_short_repr(value)}")
    if kind == "too_short":
        least = ctx.get("min_length", 1)
        return FieldError(path, "must not be empty" if least == 1 else f"must have at least {least} items")
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return FieldError(path, f"must be a mapping, got {_type_name(value)}")
    if kind in ("list_type", "tuple_type"):
        return FieldError(path, f"must be a list, got {_type_name(value)}")
    message = str(first["msg"])
    if message.startswith("Input should be"):
        message = "must be" + message[len("Input should be") :]
    shown = _short_repr(value)
    message += f" ({shown})" if "got" in message else f", got {shown}"
    return FieldError(path, message)


_COMPARISONS = {
    "greater_than": (">", "gt"),
    "greater_than_equal": (">=", "ge"),
    "less_than": ("<", "lt"),
    "less_than_equal": ("<=", "le"),
}


def _one_of(options: Sequence[str], got: Any) -> str:
    close = difflib.get_close_matches(str(got), list(options), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"must be one of {', '.join(options)}; got {got!r}{hint}"


def _key_hint(key: str, model: Any) -> str:
    model = _unwrap(model)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return ""
    valid = sorted(model.model_fields, key=lambda name: name != "kind")  # kind first, then as declared
    close = difflib.get_close_matches(key, valid, n=1)
    if close:
        return f"(did you mean '{close[0]}'?)"
    kind_field = model.model_fields.get("kind")
    kind = f" for kind '{kind_field.default}'" if kind_field is not None and kind_field.default else ""
    return f"(valid keys{kind}: {', '.join(valid)})"


def _unwrap(tp: Any) -> Any:
    """Strip ``Annotated`` and ``Optional`` so the walk sees the type that holds the next location part."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
            continue
        if origin in (Union, UnionType):
            members = [a for a in get_args(tp) if a is not type(None)]
            if len(members) == 1:
                tp = members[0]
                continue
        return tp


def _union_tags(tp: Any, discriminator: str) -> list[str]:
    tags: list[str] = []
    for member in get_args(_unwrap(tp)):
        if (
            isinstance(member, type)
            and issubclass(member, BaseModel)
            and discriminator in member.model_fields
        ):
            tags.extend(str(t) for t in get_args(member.model_fields[discriminator].annotation))
    return tags


def _walk(root: Any, loc: Sequence[str | int]) -> tuple[tuple[str | int, ...], Any]:
    """Follow a pydantic error location from ``root``; return the path to show and the type reached."""
    shown: list[str | int] = []
    tp: Any = root
    for part in loc:
        tp = _unwrap(tp)
        origin = get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            info = tp.model_fields.get(part) if isinstance(part, str) else None
            shown.append(part)
            tp = info.annotation if info is not None else Any
        elif origin in (dict, Mapping) or tp is dict:
            shown.append(part)
            args = get_args(tp)
            tp = args[1] if len(args) == 2 else Any
        elif origin in (list, tuple, Sequence) or tp in (list, tuple):
            shown.append(part)
            args = get_args(tp)
            tp = args[0] if args else Any
        elif origin in (Union, UnionType):
            # A union tag or member label: part of pydantic's bookkeeping, not of the user's document.
            tp = next((m for m in get_args(tp) if part in _member_tags(m)), Any)
        else:
            shown.append(part)
            tp = Any
    return tuple(shown), tp


def _member_tags(member: Any) -> list[str]:
    """Every literal value of a union member's fields named ``kind`` or ``type`` (our discriminators)."""
    if not (isinstance(member, type) and issubclass(member, BaseModel)):
        return []
    tags: list[str] = []
    for name in ("kind", "type"):
        info = member.model_fields.get(name)
        if info is not None:
            tags.extend(str(t) for t in get_args(info.annotation))
    return tags
