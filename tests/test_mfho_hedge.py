"""MFHO: its small decision functions, and the hedge working on a misleading low fidelity."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from searcher_doubles import Counter

from hpo.schedulers.base import Decision
from hpo.schedulers.mfho_hedge import HedgedMFHOCore, bracket_weight, is_promising, spearman
from hpo.simulator import simulate


def test_is_promising_compares_with_the_best_so_far_then_top_fraction() -> None:
    assert is_promising(3.0, [3.0], 3)  # the first at a rung continues
    assert not is_promising(3.0, [1.0, 3.0], 3)  # worse than the best so far
    assert is_promising(1.0, [1.0, 3.0], 3)
    assert is_promising(2.0, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 3)  # top floor(6/3) = 2
    assert not is_promising(3.0, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 3)


def test_spearman() -> None:
    assert spearman([(1, 10), (2, 20), (3, 30)]) == pytest.approx(1.0)
    assert spearman([(1, 30), (2, 20), (3, 10)]) == pytest.approx(-1.0)
    assert spearman([(1, 1)]) == 0.0
    assert spearman([(1, 5), (2, 5), (3, 5)]) == pytest.approx(0.0, abs=1.0)


def test_bracket_weight() -> None:
    assert bracket_weight(0, None, 0, 5, 0.3) == 1.0
    assert bracket_weight(2, 0.9, 4, 5, 0.3) == 0.0  # too few pairs yet
    assert bracket_weight(2, 0.9, 5, 5, 0.3) == 0.9
    assert bracket_weight(2, 0.1, 50, 5, 0.3) == 0.0
    # a trusted bracket's weight follows its screening rate eta^(aggressiveness s)
    assert bracket_weight(2, 0.9, 5, 5, 0.3, 3, 1.0) == pytest.approx(0.9 * 9)
    assert bracket_weight(3, 0.5, 5, 5, 0.3, 2, 0.5) == pytest.approx(0.5 * 2**1.5)
    assert bracket_weight(3, 0.2, 5, 5, 0.3, 3, 1.0) == 0.0  # the gate comes before the factor
    assert bracket_weight(0, None, 0, 5, 0.3, 3, 1.0) == 1.0


def test_defaults_trust_after_three_pairs_and_follow_the_screening_rate() -> None:
    core = HedgedMFHOCore(Counter(), max_resource=27, mode="min", max_total_resource=27 * 200)
    assert (core.min_pairs, core.aggressiveness) == (3, 1.0)
    simulate(core, curve_factory(inverted=False))
    assert core.weights() == pytest.approx([1.0, 3.0, 9.0, 27.0])  # rho = 1: weights eta^s
    committed = core._committed
    # reliable low fidelities: each more aggressive bracket gets more budget, the hedge the least
    assert committed[0] < committed[1] < committed[2] < committed[3]
    assert committed[3] > 20 * committed[0]
    even = HedgedMFHOCore(
        Counter(), max_resource=27, mode="min", max_total_resource=27 * 200, aggressiveness=0.0
    )
    simulate(even, curve_factory(inverted=False))
    assert max(even._committed) < 1.1 * min(even._committed)  # Hyperband's even split


def test_first_configurations_go_to_the_hedge_bracket() -> None:
    core = HedgedMFHOCore(Counter(), max_resource=9, mode="min")
    job = core.suggest()
    assert job is not None and (job.bracket, job.resource) == (0, 9)
    # the hedge trial passes every milestone without being judged
    assert core.report(0, 1, 5.0) is Decision.CONTINUE
    assert core.report(0, 3, 5.0) is Decision.CONTINUE
    assert core.report(0, 9, 5.0) is Decision.STOP


def curve_factory(inverted: bool) -> Any:
    def curve(config: dict[str, Any], resource: int) -> float:
        quality = float(np.sin(config["x"] * 1.7) ** 2)  # in [0, 1], lower is better
        if inverted and resource < 27:
            return 1.0 - quality
        return quality * (1.0 + 1.0 / resource)

    return curve


@pytest.mark.parametrize("inverted", [False, True])
def test_reliability_steers_the_budget(inverted: bool) -> None:
    core = HedgedMFHOCore(Counter(), max_resource=27, mode="min", max_total_resource=27 * 40)
    simulate(core, curve_factory(inverted))
    weights = core.weights()
    if inverted:
        assert weights[1:] == [0.0] * core.s_max  # nothing but the hedge bracket is trusted
        assert core.reliability(0) is not None and core.reliability(0) < 0  # type: ignore[operator]
    else:
        assert all(w > 0.5 for w in weights)


def test_bad_settings() -> None:
    with pytest.raises(ValueError, match="min_pairs is 1"):
        HedgedMFHOCore(Counter(), max_resource=9, min_pairs=1)
    with pytest.raises(ValueError, match="min_correlation is 2"):
        HedgedMFHOCore(Counter(), max_resource=9, min_correlation=2)
    with pytest.raises(ValueError, match="aggressiveness is -1"):
        HedgedMFHOCore(Counter(), max_resource=9, aggressiveness=-1)
