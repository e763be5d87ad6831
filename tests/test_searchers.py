"""Searchers: validity, determinism, state round trips, and that multi-fidelity TPE never mixes fidelities."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from hpo.searchers import MultiFidelityTPESearcher, RandomSearcher, Searcher, TPESearcher, make_searcher
from hpo.searchers.mftpe import log_density, scott_bandwidth, split_good_bad
from hpo.searchers.tpe import optuna_distributions
from hpo.space import parse_space

SPACE = parse_space(
    {
        "lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
        "layers": {"type": "int", "low": 1, "high": 4},
        "pool": {"type": "categorical", "choices": ["avg", "attn"]},
        "heads": {"type": "int", "low": 1, "high": 8, "when": {"pool": "attn"}},
        "seed": {"type": "fixed", "value": 7},
    }
)
UNIT = parse_space({"x": {"type": "float", "low": 0, "high": 1}, "y": {"type": "float", "low": 0, "high": 1}})


@pytest.mark.parametrize("name", ["random", "tpe", "mf-tpe"])
def test_suggestions_are_valid_and_deterministic(name: str) -> None:
    def run(seed: int) -> list[dict[str, Any]]:
        searcher = make_searcher(name, SPACE, np.random.default_rng(seed))
        assert isinstance(searcher, Searcher)
        out = []
        for i in range(30):
            config = searcher.suggest(i)
            assert SPACE.validate_config(config) == config
            searcher.observe(i, config, 3, float(np.log10(config["lr"])) ** 2)
            out.append(config)
        return out

    first = run(0)
    assert first == run(0)
    assert first != run(1)
    assert any("heads" in c for c in first) and any("heads" not in c for c in first)


@pytest.mark.parametrize("name", ["random", "tpe", "mf-tpe"])
def test_state_round_trip_continues_identically(name: str) -> None:
    searcher = make_searcher(name, UNIT, np.random.default_rng(5))
    for i in range(20):
        config = searcher.suggest(i)
        searcher.observe(i, config, 1 if i % 2 else 3, (config["x"] - 0.2) ** 2)
    state = json.loads(json.dumps(searcher.state_dict()))
    restored = make_searcher(name, UNIT, np.random.default_rng(123))
    restored.load_state_dict(state)
    assert [searcher.suggest(i) for i in range(20, 26)] == [restored.suggest(i) for i in range(20, 26)]
    with pytest.raises(ValueError, match="state is for searcher"):
        make_searcher(
            "random" if name != "random" else "tpe", UNIT, np.random.default_rng(0)
        ).load_state_dict(state)


def contradictory(searcher: Searcher, n: int = 40, top: int = 24) -> None:
    """At 1 epoch the best region is x near 0.9; at 9 epochs (the truth, ``top`` results) it is x near 0.1."""
    rng = np.random.default_rng(0)
    for i in range(n):
        config = {"x": float(rng.random()), "y": float(rng.random())}
        searcher.observe(i, config, 1, (config["x"] - 0.9) ** 2)
        if i < top:
            searcher.observe(i, config, 9, (config["x"] - 0.1) ** 2)


def test_mf_tpe_models_the_highest_fidelity_with_enough_points_only() -> None:
    searcher = MultiFidelityTPESearcher(UNIT, np.random.default_rng(0), random_fraction=0.0)
    assert searcher.min_points == 20  # ceil((d + 1) / gamma): the good set holds d + 1 points
    contradictory(searcher)
    assert searcher.model_resource() == 9
    xs = np.array([searcher.suggest(100 + i)["x"] for i in range(60)])
    assert np.median(xs) < 0.3  # follows the 9-epoch results, not the 40 contradicting 1-epoch results


def test_mf_tpe_falls_back_to_the_lower_fidelity_when_the_top_has_too_few_points() -> None:
    searcher = MultiFidelityTPESearcher(UNIT, np.random.default_rng(0), random_fraction=0.0, min_points=30)
    contradictory(searcher)
    assert searcher.model_resource() == 1
    xs = np.array([searcher.suggest(100 + i)["x"] for i in range(60)])
    assert np.median(xs) > 0.7


def test_mf_tpe_default_min_points_waits_for_a_real_good_set() -> None:
    # with d + 2 = 4 results at 9 epochs BOHB's rule would model them (the good set = 3 of 4 points); the
    # default keeps modelling the 40 results at 1 epoch until 9 epochs has ceil((d + 1) / gamma) = 20
    searcher = MultiFidelityTPESearcher(UNIT, np.random.default_rng(0), random_fraction=0.0)
    contradictory(searcher, top=19)
    assert searcher.model_resource() == 1
    searcher.observe(99, {"x": 0.1, "y": 0.5}, 9, 0.0)
    assert searcher.model_resource() == 9
    assert MultiFidelityTPESearcher(UNIT, np.random.default_rng(0), gamma=0.5).min_points == 6


def test_mf_tpe_default_min_points_is_capped_for_larger_spaces() -> None:
    # ceil((d + 1) / 0.15) would be 47 for d = 6 and 107 for d = 15: capped at 27 (MAX_MIN_POINTS), so a
    # larger space's model still moves up from the lowest rung; never below BOHB's d + 2
    def min_points(d: int) -> int:
        space = parse_space({f"x{i}": {"type": "float", "low": 0, "high": 1} for i in range(d)})
        return MultiFidelityTPESearcher(space, np.random.default_rng(0)).min_points

    assert (min_points(3), min_points(6), min_points(15), min_points(30)) == (27, 27, 27, 32)


def test_mf_tpe_random_fraction() -> None:
    searcher = MultiFidelityTPESearcher(
        UNIT, np.random.default_rng(0), random_fraction=1.0, local_fraction=0.0
    )
    contradictory(searcher)
    xs = np.array([searcher.suggest(100 + i)["x"] for i in range(200)])
    assert 0.4 < np.mean(xs) < 0.6


def test_mf_tpe_refines_locally_around_the_best_at_the_top_fidelity() -> None:
    # local_fraction 1: every suggestion is the best 9-epoch point (x near 0.1) moved by a small step, even
    # while the model itself is still fitted on the 1-epoch results (min_points 30 > the 24 at 9 epochs)
    for min_points in (None, 30):
        searcher = MultiFidelityTPESearcher(
            UNIT, np.random.default_rng(0), random_fraction=0.0, local_fraction=1.0, min_points=min_points
        )
        contradictory(searcher)
        top = [(cfg, loss) for _, cfg, r, loss in searcher._history if r == 9]
        best = min(top, key=lambda t: t[1])[0]
        xs = np.array([searcher.suggest(100 + i)["x"] for i in range(60)])
        assert np.max(np.abs(xs - best["x"])) < 0.25 and np.median(np.abs(xs - best["x"])) < 0.08


def test_mf_tpe_exploits_in_high_start_slots_only_when_others_start_low() -> None:
    # high_start_local_fraction 1, local_fraction 0, everything else random: configurations whose first job
    # trains >= 30 % of the budget refine - but only once the study has also started some lower (FIFO, all
    # at the full budget, keeps exploring)
    searcher = MultiFidelityTPESearcher(
        UNIT, np.random.default_rng(0), random_fraction=1.0, local_fraction=0.0, high_start_local_fraction=1.0
    )
    contradictory(searcher)
    fifo = np.array([searcher.suggest(100 + i, budget_fraction=1.0)["x"] for i in range(60)])
    searcher.suggest(200, budget_fraction=1 / 9)  # a low start (Hyperband's big bracket)
    high = np.array([searcher.suggest(300 + i, budget_fraction=1 / 3)["x"] for i in range(60)])
    spread = lambda xs: float(np.median(np.abs(xs - np.median(xs))))  # noqa: E731
    assert spread(fifo) > 0.15 and spread(high) < 0.05
    restored = MultiFidelityTPESearcher(
        UNIT, np.random.default_rng(0), random_fraction=1.0, local_fraction=0.0, high_start_local_fraction=1.0
    )
    restored.load_state_dict(searcher.state_dict())
    assert restored.suggest(400, budget_fraction=1.0) == searcher.suggest(400, budget_fraction=1.0)


def test_mf_tpe_high_start_refinements_stay_within_the_good_points_spread() -> None:
    # Three good 9-epoch results agree to within 0.003 around (0.3, 0.6); seven others are worse. A low-start
    # refinement moves by half the good set's kernel bandwidth (its floor 0.2 / sqrt(3) dominates: ~0.058);
    # a high-start one (a full-budget run no rung screens) by at most the good set's own spread, here the
    # HIGH_START_MIN_STEP of 0.02 (hpo/searchers/mftpe.py, "local refinement").
    def searcher() -> MultiFidelityTPESearcher:
        s = MultiFidelityTPESearcher(
            UNIT,
            np.random.default_rng(0),
            random_fraction=0.0,
            local_fraction=1.0,
            high_start_local_fraction=1.0,
        )
        rng = np.random.default_rng(1)
        for i in range(40):
            s.observe(i, {"x": float(rng.random()), "y": float(rng.random())}, 1, float(rng.random()))
        for i in range(10):
            good = i < 3
            x, y = (0.3 + 0.003 * i, 0.6 - 0.003 * i) if good else (float(rng.random()), float(rng.random()))
            s.observe(100 + i, {"x": x, "y": y}, 9, 0.01 * i if good else 1.0 + i)
        return s

    def moves(budget_fraction: float) -> np.ndarray:
        s = searcher()
        s.suggest(200, budget_fraction=1 / 9)  # the study also starts configurations low
        picks = [s.suggest(300 + i, budget_fraction=budget_fraction) for i in range(200)]
        return np.array([[c["x"] - 0.3, c["y"] - 0.6] for c in picks])

    low, high = np.abs(moves(1 / 9)), np.abs(moves(1.0))
    assert 0.03 < np.median(low) < 0.05  # 0.6745 x ~0.058
    assert 0.01 < np.median(high) < 0.016  # 0.6745 x 0.02
    assert np.median(high) < np.median(low) / 2


def test_tpe_learns_from_the_highest_observed_fidelity() -> None:
    searcher = TPESearcher(UNIT, np.random.default_rng(0), n_startup_trials=5)
    contradictory(searcher)
    assert searcher.model_resource == 9
    xs = np.array([searcher.suggest(100 + i)["x"] for i in range(30)])
    assert np.median(xs) < 0.35


def test_model_pieces() -> None:
    good, bad = split_good_bad(np.array([5.0, 1.0, 3.0, 2.0, 4.0]), 0.15, 2)
    assert good.tolist() == [1, 3] and bad.tolist() == [3, 2, 4, 0]
    bw = scott_bandwidth(np.array([[0.5, np.nan], [0.5, np.nan]]), 1e-3)
    assert bw == pytest.approx([0.2 / 2**0.5] * 2)  # the floor, not a collapsed kernel
    # the floor shrinks as 1 / sqrt(n): 100 identical good points give kernels of 0.02, not Scott's 0.09
    assert scott_bandwidth(np.full((100, 1), 0.5), 1e-3) == pytest.approx([0.02])
    points = np.array([[0.2, np.nan]])
    near, far = log_density(np.array([[0.2, 0.9], [0.8, 0.9]]), points, np.array([0.1, 0.1]))
    assert near > far


def test_optuna_distributions_skip_fixed() -> None:
    assert sorted(optuna_distributions(SPACE)) == ["heads", "layers", "lr", "pool"]


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="random_fraction is 2"):
        MultiFidelityTPESearcher(UNIT, np.random.default_rng(0), random_fraction=2)
    with pytest.raises(ValueError, match="local_fraction is -1"):
        MultiFidelityTPESearcher(UNIT, np.random.default_rng(0), local_fraction=-1)
    with pytest.raises(ValueError, match="searcher is 'grid'"):
        make_searcher("grid", UNIT, np.random.default_rng(0))
    with pytest.raises(ValueError, match="n_startup_trials is -1"):
        TPESearcher(UNIT, np.random.default_rng(0), n_startup_trials=-1)
    assert RandomSearcher(UNIT, np.random.default_rng(0)).suggest(0).keys() == {"x", "y"}
