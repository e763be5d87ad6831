"""The runtime search space: priors, conditions, the unit-cube encoding, validation and serialisation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from pydantic import ValidationError

from hpo.space import (
    CategoricalParam,
    Condition,
    FieldError,
    FixedParam,
    FloatParam,
    IntParam,
    SearchSpace,
    parse_space,
)
from trainers.errors import AgvpError


def conditional_space() -> SearchSpace:
    """Three levels of conditions: heads exists with attention pooling, head_dim only with 4+ heads."""
    return SearchSpace(
        {
            "optim.lr": FloatParam(low=1e-6, high=1e-2, log=True),
            "loss.margin": FloatParam(low=0.1, high=0.6),
            "optim.warmup": IntParam(low=0, high=10),
            "model.pool": CategoricalParam(choices=["mean", "attention"]),
            "model.heads": IntParam(
                low=1, high=16, log=True, condition=Condition(parent="model.pool", values=["attention"])
            ),
            "model.head_dim": CategoricalParam(
                choices=[32, 64], condition=Condition(parent="model.heads", values=[4, 8, 16])
            ),
            "model.flag": CategoricalParam(choices=[True, False]),
            "seed": FixedParam(value=7),
        }
    )


def test_shape_and_order() -> None:
    space = conditional_space()
    assert space.names[0] == "optim.lr" and space.names[-1] == "seed"
    assert space.dimensions == 7  # the fixed seed is not a coordinate
    assert "seed" not in space.unit_names
    assert "model.pool" in space and len(space) == 8
    assert isinstance(space["optim.lr"], FloatParam)


def test_log_uniform_median_is_the_geometric_mean() -> None:
    space = SearchSpace({"lr": FloatParam(low=1e-6, high=1e-2, log=True), "m": FloatParam(low=0, high=1)})
    rng = np.random.default_rng(0)
    draws = [space.sample(rng) for _ in range(4000)]
    lr = np.array([d["lr"] for d in draws])
    margin = np.array([d["m"] for d in draws])
    assert lr.min() >= 1e-6 and lr.max() <= 1e-2
    assert abs(np.log10(np.median(lr)) - (-4.0)) < 0.15
    assert abs(np.median(margin) - 0.5) < 0.04
    # each decade gets about a quarter of a 4-decade log-uniform prior
    assert abs(np.mean(lr < 1e-5) - 0.25) < 0.04


def test_ints_are_integral_inclusive_and_log_ints_favour_small_values() -> None:
    space = SearchSpace({"n": IntParam(low=1, high=3), "h": IntParam(low=1, high=64, log=True)})
    rng = np.random.default_rng(1)
    draws = [space.sample(rng) for _ in range(3000)]
    n = [d["n"] for d in draws]
    h = np.array([d["h"] for d in draws])
    assert all(type(v) is int for v in n) and set(n) == {1, 2, 3}
    assert abs(n.count(3) / len(n) - 1 / 3) < 0.04  # the upper bound is a full value, not half
    assert h.min() >= 1 and h.max() <= 64 and set(h.tolist()) >= {1, 64}
    assert np.median(h) < 16  # log-uniform: the median is near sqrt(64) = 8, far below the midpoint


def test_categoricals_keep_their_types() -> None:
    space = SearchSpace({"c": CategoricalParam(choices=[1, 2, 0.5])})
    rng = np.random.default_rng(2)
    seen = {repr(space.sample(rng)["c"]) for _ in range(400)}
    assert seen == {"1", "2", "0.5"}  # ints stay ints beside a float


@pytest.mark.parametrize("choices", [[False, "", True], ["a", 2], [1, True]])
def test_categoricals_refuse_mixed_types(choices: list[object]) -> None:
    # one Parquet column per parameter holds one type: a mix fails here, not at the store's first write
    with pytest.raises(ValueError, match="all choices must be strings, all numbers or all booleans"):
        CategoricalParam(choices=choices)


def test_sample_with_fixed_values_draws_the_children_they_activate() -> None:
    space = conditional_space()
    for seed in range(20):
        plain = space.sample(np.random.default_rng(seed))
        fixed = space.sample(np.random.default_rng(seed), fixed={"model.pool": "attention", "model.heads": 8})
        # the fixed parents activate their children, which are drawn; the result is a valid configuration
        assert fixed["model.pool"] == "attention" and fixed["model.heads"] == 8
        assert fixed["model.head_dim"] in (32, 64)
        assert space.validate_config(fixed) == fixed
        # a fixed value replaces its draw but the generator advances as without: unrelated draws agree
        assert fixed["optim.lr"] == plain["optim.lr"] and fixed["loss.margin"] == plain["loss.margin"]
    # a fixed value of a parameter its condition leaves inactive is not in the configuration
    mean = space.sample(np.random.default_rng(0), fixed={"model.pool": "mean", "model.heads": 8})
    assert "model.heads" not in mean


def test_conditionals_are_omitted_when_inactive_and_present_when_active() -> None:
    space = conditional_space()
    rng = np.random.default_rng(3)
    draws = [space.sample(rng) for _ in range(600)]
    for config in draws:
        assert ("model.heads" in config) == (config["model.pool"] == "attention")
        assert ("model.head_dim" in config) == (config.get("model.heads") in (4, 8, 16))
        assert config["seed"] == 7
        assert list(config) == [n for n in space.names if n in config]  # definition order
        space.validate_config(config)
    assert any("model.head_dim" in c for c in draws) and any("model.heads" not in c for c in draws)
    assert space.is_active("model.heads", {"model.pool": "attention"})
    assert not space.is_active("model.heads", {"model.pool": "mean"})
    assert not space.is_active("model.head_dim", {"model.pool": "mean", "model.heads": 8})
    assert not space.is_active("model.heads", {})
    with pytest.raises(FieldError, match="nope is not a parameter"):
        space.is_active("nope", {})


def test_children_defined_before_parents_are_still_sampled_after_them() -> None:
    space = parse_space(
        {"child": {"uniform": [0, 1], "when": {"parent": "on"}}, "parent": {"choice": ["on"]}}
    )
    config = space.sample(np.random.default_rng(0))
    assert list(config) == ["child", "parent"]


def test_same_seed_same_configs() -> None:
    space = conditional_space()
    a = [space.sample(np.random.default_rng(42)) for _ in range(3)]
    b = [space.sample(np.random.default_rng(42)) for _ in range(3)]
    rng1, rng2 = np.random.default_rng(5), np.random.default_rng(5)
    assert [space.sample(rng1) for _ in range(20)] == [space.sample(rng2) for _ in range(20)]
    assert a == b
    assert space.sample(np.random.default_rng(1)) != space.sample(np.random.default_rng(2))


def test_unit_round_trip() -> None:
    space = conditional_space()
    rng = np.random.default_rng(4)
    for _ in range(300):
        config = space.sample(rng)
        unit = space.to_unit(config)
        assert unit.shape == (space.dimensions,)
        finite = unit[~np.isnan(unit)]
        assert ((finite >= 0) & (finite <= 1)).all()
        for name, u in zip(space.unit_names, unit, strict=True):
            assert math.isnan(u) == (name not in config)
        back = space.from_unit(unit)
        assert back.keys() == config.keys()
        for name, value in config.items():
            assert type(back[name]) is type(value)
            if isinstance(value, float):
                assert back[name] == pytest.approx(value, rel=1e-9)
            else:
                assert back[name] == value


def test_from_unit_of_any_vector_is_a_valid_config() -> None:
    space = conditional_space()
    rng = np.random.default_rng(6)
    for _ in range(300):
        vector = rng.uniform(-0.2, 1.2, size=space.dimensions)  # out-of-cube values are clipped
        config = space.from_unit(vector)
        assert space.validate_config(config) == config


def test_unit_encoding_of_categoricals_and_ints() -> None:
    space = SearchSpace(
        {
            "c": CategoricalParam(choices=["a", "b", "c"]),
            "one": CategoricalParam(choices=["only"]),
            "n": IntParam(low=0, high=3),
        }
    )
    assert space.to_unit({"c": "a", "one": "only", "n": 0}).tolist() == [0.0, 0.5, 0.125]
    assert space.to_unit({"c": "c", "one": "only", "n": 3}).tolist() == [1.0, 0.5, 0.875]
    assert space.from_unit([0.74, 0.0, 0.26]) == {"c": "b", "one": "only", "n": 1}  # nearest index, rounding


def test_from_unit_rejects_bad_vectors() -> None:
    space = conditional_space()
    with pytest.raises(ValueError, match=r"shape \(3,\).*\(7,\)"):
        space.from_unit([0.5, 0.5, 0.5])
    vector = np.full(space.dimensions, 0.5)
    vector[space.unit_names.index("model.pool")] = 1.0  # attention -> heads is active ...
    vector[space.unit_names.index("model.heads")] = np.nan  # ... but has no coordinate
    with pytest.raises(FieldError, match=r"model\.heads is active but its unit coordinate is NaN"):
        space.from_unit(vector)
    vector[space.unit_names.index("model.pool")] = 0.0  # mean: heads inactive, NaN is fine
    assert "model.heads" not in space.from_unit(vector)


def test_validate_config_normalises() -> None:
    space = conditional_space()
    config = {
        "seed": 7,
        "model.flag": np.bool_(True),
        "model.pool": "mean",
        "optim.warmup": 3.0,
        "loss.margin": 0.2,
        "optim.lr": np.float64(1e-4),
    }
    out = space.validate_config(config)
    assert list(out) == ["optim.lr", "loss.margin", "optim.warmup", "model.pool", "model.flag", "seed"]
    assert type(out["optim.warmup"]) is int and type(out["optim.lr"]) is float and out["model.flag"] is True


GOOD = {"optim.lr": 1e-4, "loss.margin": 0.3, "optim.warmup": 2, "model.pool": "mean", "model.flag": False}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"optim.lrr": 1e-3}, "optim.lrr is not a parameter of the search space (did you mean 'optim.lr'?)"),
        ({"optim.lr": 1.0}, "optim.lr must be in [1e-06, 0.01] (log scale), got 1.0"),
        ({"optim.lr": "fast"}, "optim.lr must be a number, got 'fast'"),
        ({"optim.warmup": 2.5}, "optim.warmup must be an integer, got 2.5"),
        ({"optim.warmup": True}, "optim.warmup must be a number, got True"),
        ({"optim.warmup": 11}, "optim.warmup must be in [0, 10], got 11"),
        ({"model.pool": "max"}, "model.pool must be one of 'mean', 'attention', got 'max'"),
        ({"model.flag": 1}, "model.flag must be one of True, False, got 1"),
        ({"seed": 8}, "seed is fixed to 7, got 8"),
        ({"model.heads": 4}, "model.heads is present but inactive"),
        ({"model.pool": "attention"}, "model.heads is missing"),
        ({"loss.margin": float("nan")}, "loss.margin must be finite"),
    ],
)
def test_validate_config_errors_name_the_parameter(change: dict[str, object], message: str) -> None:
    space = conditional_space()
    with pytest.raises(ValueError) as caught:
        space.validate_config({**GOOD, "seed": 7, **change})
    assert message in str(caught.value)
    assert isinstance(caught.value, AgvpError)


def test_to_dict_round_trip_is_json() -> None:
    space = conditional_space()
    data = json.loads(json.dumps(space.to_dict()))
    assert SearchSpace.from_dict(data) == space
    assert data["optim.lr"] == {"type": "float", "low": 1e-6, "high": 1e-2, "log": True}
    assert data["model.heads"]["condition"] == {"parent": "model.pool", "values": ["attention"]}
    assert SearchSpace.from_dict(data).to_dict() == data


def test_short_forms_and_when_match_long_forms() -> None:
    short = parse_space(
        {
            "lr": {"loguniform": [1e-6, 1e-4]},
            "m": {"uniform": [0, 1]},
            "n": {"randint": [1, 10]},
            "h": {"lograndint": [1, 64]},
            "pool": {"choice": ["mean", "attention"]},
            "heads": {"choice": [2, 4], "when": {"pool": "attention"}},
            "seed": 3,
        }
    )
    assert short == SearchSpace(
        {
            "lr": FloatParam(low=1e-6, high=1e-4, log=True),
            "m": FloatParam(low=0.0, high=1.0),
            "n": IntParam(low=1, high=10),
            "h": IntParam(low=1, high=64, log=True),
            "pool": CategoricalParam(choices=["mean", "attention"]),
            "heads": CategoricalParam(
                choices=[2, 4], condition=Condition(parent="pool", values=["attention"])
            ),
            "seed": FixedParam(value=3),
        }
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"x": {"uniform": [1, 1]}}, "x.low must be < high, got low=1 and high=1"),
        ({"x": {"uniform": [2, 1]}}, "x.low must be < high"),
        ({"x": {"loguniform": [0, 1]}}, "x.low must be > 0 for log scale, got 0"),
        (
            {"x": {"type": "int", "low": -1, "high": 4, "log": True}},
            "x.low must be > 0 for log scale, got -1",
        ),
        ({"x": {"randint": [0.5, 3]}}, "x.low must be a valid integer"),
        ({"x": {"choice": []}}, "x.choices must not be empty"),
        ({"x": {"choice": [1, 2, 1]}}, r"x.choices\[2\] repeats choice 1"),
        ({"x": {"choice": [1, 2], "when": {"y": 1}}}, "x.condition.parent refers to unknown parameter 'y'"),
        (
            {"a": {"choice": [1], "when": {"b": 1}}, "b": {"choice": [1], "when": {"a": 1}}},
            "a.condition.parent forms a cycle: a -> b -> a",
        ),
        ({"a": {"choice": [1], "when": {"a": 1}}}, "a.condition.parent forms a cycle: a -> a"),
        (
            {"f": {"uniform": [0, 1]}, "x": {"choice": [1], "when": {"f": 0.5}}},
            "x.condition.parent 'f' is a float parameter",
        ),
        (
            {"n": {"randint": [1, 3]}, "x": {"choice": [1], "when": {"n": 5}}},
            r"x.condition.values\[0\] is 5, which 'n' never takes",
        ),
        ({"x": {"type": "float", "low": 0}}, "x.high is required"),
        ({"x": {"type": "float", "low": 0, "high": 1, "step": 0.1}}, "unknown key 'x.step'"),
        ({"x": {"low": 0, "high": 1}}, "x needs a 'type'"),
        ({"x": {"uniform": [0, 1], "choice": [1]}}, "x uses several short forms"),
        ({"x": {"uniform": [0]}}, r"x.uniform must be a list \[low, high\]"),
        ({"bad name": 1, "x": {"uniform": [0, 1]}}, "parameter name 'bad name' is invalid"),
    ],
)
def test_invalid_definitions_raise_clear_errors(raw: dict[str, object], message: str) -> None:
    with pytest.raises(FieldError, match=message):
        parse_space(raw)


def test_models_validate_when_built_directly() -> None:
    with pytest.raises(ValidationError, match="must be > 0 for log scale"):
        FloatParam(low=0.0, high=1.0, log=True)
    with pytest.raises(ValidationError, match="fractional part"):
        IntParam(low=1, high=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="at least 1 item"):
        Condition(parent="x", values=[])
    with pytest.raises(FieldError, match=r"x\.condition\.parent refers to unknown parameter 'y'"):
        SearchSpace({"x": CategoricalParam(choices=[1], condition=Condition(parent="y", values=[1]))})
