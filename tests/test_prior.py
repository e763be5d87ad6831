"""Priors: a study file's ``prior:`` section reaches the searcher and Hyperband's first job; bad sections are
one line naming the field; a bad prior is unlearnt from the evidence."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import yaml

from hpo.schedulers import HyperbandCore
from hpo.searchers import MultiFidelityTPESearcher
from hpo.searchers.prior import CONFIDENCE_STD, MODEL, PRIOR, UNIFORM, Prior, PriorMixture
from hpo.simulator import simulate
from hpo.space import FloatParam, SearchSpace
from hpo.study import StudyError, loads_study
from hpo.study.build import core_from_spec, prior_from_spec
from hpo.study.validate import validate_study

UNIT = SearchSpace({"x": FloatParam(low=0.0, high=1.0), "y": FloatParam(low=0.0, high=1.0)})


def study(**changes: Any) -> str:
    raw: dict[str, Any] = {
        "name": "p",
        "space": {
            "optim.lr": {"loguniform": [1.0e-4, 1.0e-2]},
            "loss.triplet_margin": {"uniform": [0.1, 0.6]},
        },
        "fidelity": {"min": 1, "max": 9, "eta": 3},
        "scheduler": {"kind": "hyperband"},
        "searcher": {"kind": "mf-tpe"},
        "budget": {"max_trials": 12},
        "trainer": {"name": "tfclip", "preset": "tiny-cpu", "data": "data"},
        "prior": {"values": {"optim.lr": 1.0e-3}},
    }
    raw.update(changes)
    return yaml.safe_dump(raw)


def test_the_prior_section_reaches_the_searcher_with_its_confidences() -> None:
    spec = loads_study(
        study(prior={"confidence": "low", "values": {"optim.lr": {"value": 1.0e-3, "confidence": "high"}}})
    )
    prior = prior_from_spec(spec)
    assert prior == Prior(values={"optim.lr": 1.0e-3}, confidence={"optim.lr": "high"})
    core = core_from_spec(spec)
    assert core.searcher.prior == prior


def test_from_preset_takes_the_presets_values_of_the_searched_parameters() -> None:
    spec = loads_study(study(prior={"from_preset": True, "values": {"optim.lr": 1.0e-3}}))
    prior = prior_from_spec(spec)
    assert prior is not None and prior.values["optim.lr"] == 1.0e-3  # an explicit value wins
    assert 0.1 <= prior.values["loss.triplet_margin"] <= 0.6  # the preset's margin (0.3)
    validate_study(spec)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"prior": {"values": {"optim.lrr": 1e-3}}}, "prior.values.optim.lrr is not a searched parameter"),
        ({"prior": {"values": {"optim.lr": 1.0}}}, "prior.values.optim.lr"),
        ({"prior": {"confidence": "sure", "values": {"optim.lr": 1e-3}}}, "prior.confidence"),
        ({"prior": {}}, "prior names no value"),
        ({"searcher": {"kind": "random"}}, "prior is used by searcher kind 'mf-tpe' only"),
    ],
)
def test_bad_prior_sections_are_one_line_naming_the_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(StudyError, match=message.replace(".", r"\.").replace("(", r"\(")) as info:
        loads_study(study(**changes))
    assert "\n" not in str(info.value)


def test_from_preset_outside_the_space_is_one_line_before_anything_runs() -> None:
    narrow = {"optim.lr": {"loguniform": [1.0e-4, 1.0e-2]}, "loss.triplet_margin": {"uniform": [0.5, 0.6]}}
    spec = loads_study(study(space=narrow, prior={"from_preset": True}))
    with pytest.raises(StudyError, match=r"prior\.from_preset takes loss\.triplet_margin = 0\.3"):
        validate_study(spec)


def test_the_first_suggestion_is_the_prior_and_draws_follow_its_confidence() -> None:
    prior = Prior(values={"x": 0.8}, confidence={"x": "high"})
    searcher = MultiFidelityTPESearcher(UNIT, np.random.default_rng(0), prior=prior)
    assert searcher.suggest(0)["x"] == 0.8
    mixture = PriorMixture(prior, UNIT)
    draws = np.array([mixture.sample_unit(np.random.default_rng(i)) for i in range(400)])
    assert abs(np.std(draws[:, 0]) - CONFIDENCE_STD["high"]) < 0.01  # x: Gaussian around 0.8
    assert abs(np.mean(draws[:, 1]) - 0.5) < 0.05  # y has no prior value: uniform


def test_a_prior_parent_value_activates_its_children_in_the_first_configuration() -> None:
    from hpo.space import CategoricalParam, Condition

    space = SearchSpace(
        {
            "pool": CategoricalParam(choices=["mean", "attention"]),
            "heads": CategoricalParam(
                choices=[4, 8], condition=Condition(parent="pool", values=["attention"])
            ),
        }
    )
    prior = Prior(values={"pool": "attention"}, confidence={})
    for seed in range(10):  # whatever the generator would have drawn for pool, heads is drawn too
        first = MultiFidelityTPESearcher(space, np.random.default_rng(seed), prior=prior).suggest(0)
        assert first["pool"] == "attention" and first["heads"] in (4, 8)


def test_the_prior_weight_follows_the_evidence() -> None:
    mixture = PriorMixture(Prior(values={"x": 0.8}, confidence={}), UNIT)
    assert mixture.weight({}, {}) == 0.25  # no evidence yet: the initial weight
    origins = {i: PRIOR if i < 10 else UNIFORM for i in range(20)}
    good_prior = {1: [(i, float(i)) for i in range(20)]}  # prior-drawn configurations are the best
    bad_prior = {1: [(i, float(20 - i)) for i in range(20)]}
    assert mixture.weight(origins, good_prior) == 0.5  # the maximum weight
    assert mixture.weight(origins, bad_prior) == 0.0  # a refuted prior is not drawn from any more
    # one result of the prior's own configuration is evidence once 4 uniform results share its fidelity
    probe = {0: PRIOR, **{i: UNIFORM for i in range(1, 5)}}
    assert mixture.weight(probe, {9: [(0, 5.0), (1, 1.0), (2, 2.0), (3, 3.0)]}) == 0.25  # too few
    assert mixture.weight(probe, {9: [(0, 5.0), (1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0)]}) == 0.0
    # the highest fidelity with evidence decides (lower fidelities mislead on the _terrible variants)
    mixed = {1: bad_prior[1], 9: [(0, 0.0), (10, 1.0), (11, 2.0), (12, 3.0), (13, 4.0)]}
    assert mixture.weight(origins, mixed) == 0.5
    # model-origin results are not evidence either way
    assert mixture.weight({**origins, 99: MODEL}, {1: [*good_prior[1], (99, -1.0)]}) == 0.5


def test_hyperband_runs_the_prior_alone_at_full_budget_first_and_then_its_brackets() -> None:
    prior = Prior(values={"x": 0.3, "y": 0.3}, confidence={})
    searcher = MultiFidelityTPESearcher(UNIT, np.random.default_rng(0), prior=prior)
    core = HyperbandCore(searcher, max_resource=9, reduction_factor=3, mode="min", max_total_resource=200)
    first = core.suggest()
    assert first is not None and first.resource == 9 and first.config == {"x": 0.3, "y": 0.3}
    second = core.suggest()  # a second worker starts the first bracket meanwhile (s_max: 9 at 1 epoch)
    assert second is not None and second.resource == 1
    # the whole study still runs, and the state round-trips with the probe in it
    clone = HyperbandCore(
        MultiFidelityTPESearcher(UNIT, np.random.default_rng(0), prior=prior),
        max_resource=9,
        reduction_factor=3,
        mode="min",
        max_total_resource=200,
    )
    clone.load_state_dict(core.state_dict())
    assert clone.state_dict() == core.state_dict()
    result = simulate(
        HyperbandCore(
            MultiFidelityTPESearcher(UNIT, np.random.default_rng(0), prior=prior),
            max_resource=9,
            reduction_factor=3,
            mode="min",
            max_total_resource=200,
        ),
        lambda c, r: (c["x"] - 0.3) ** 2 + (c["y"] - 0.3) ** 2 + 1.0 / r,
        workers=2,
    )
    # trial 0 trains straight through its milestones to 9 epochs; it is the first full-budget result
    probe = [row for row in result.rows if row["trial_id"] == 0]
    assert [row["resource"] for row in probe] == [1, 3, 9]
    first_full = next(row for row in result.rows if row["resource"] == 9)
    assert first_full["trial_id"] == 0 and math.isclose(first_full["value"], 1.0 / 9)
    assert result.total_resource <= 200


def test_a_searcher_state_with_another_prior_is_refused() -> None:
    searcher = MultiFidelityTPESearcher(UNIT, np.random.default_rng(0), prior=Prior({"x": 0.3}, {}))
    searcher.suggest(0)
    other = MultiFidelityTPESearcher(UNIT, np.random.default_rng(0), prior=Prior({"x": 0.9}, {}))
    with pytest.raises(ValueError, match="saved with prior"):
        other.load_state_dict(searcher.state_dict())
    same = MultiFidelityTPESearcher(UNIT, np.random.default_rng(0), prior=Prior({"x": 0.3}, {}))
    same.load_state_dict(searcher.state_dict())
    assert same.suggest(1) == searcher.suggest(1)
