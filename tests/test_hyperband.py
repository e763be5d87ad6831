"""Hyperband: Algorithm 1's bracket tables (hand-computed) and the synchronous pause/resume core."""

from __future__ import annotations

import json
from typing import Any

import pytest
from searcher_doubles import Counter

from hpo.results import TrialStatus
from hpo.schedulers.base import Decision, JobKind
from hpo.schedulers.brackets import (
    bracket_size,
    make_bracket,
    max_bracket_index,
    milestones,
    plan_hyperband,
)
from hpo.schedulers.hyperband import BracketOrder, HyperbandCore, bracket_sequence_s, survivors_count


def table(max_resource: int, eta: int, min_resource: int = 1) -> list[tuple[int, list[tuple[int, int, int]]]]:
    plan = plan_hyperband(max_resource, eta, min_resource)
    return [(b.s, [(r.configs, r.resource, r.keep) for r in b.rungs]) for b in plan.brackets]


def test_r81_eta3_is_algorithm_1_not_the_papers_printed_table() -> None:
    assert table(81, 3) == [
        (4, [(81, 1, 27), (27, 3, 9), (9, 9, 3), (3, 27, 1), (1, 81, 0)]),
        (3, [(34, 3, 11), (11, 9, 3), (3, 27, 1), (1, 81, 0)]),
        (2, [(15, 9, 5), (5, 27, 1), (1, 81, 0)]),
        (1, [(8, 27, 2), (2, 81, 0)]),
        (0, [(5, 81, 0)]),
    ]
    plan = plan_hyperband(81, 3)
    assert [b.configs for b in plan.brackets] == [81, 34, 15, 8, 5]  # paper's table: 81, 27, 9, 6, 5
    # resumed: 297 + 276 + 279 + 324 + 405; restarted: 405 + 363 + 351 + 378 + 405
    assert [b.epochs_resumed for b in plan.brackets] == [297, 276, 279, 324, 405]
    assert plan.epochs_resumed == 1581
    assert plan.fbe_resumed == pytest.approx(19.52, abs=0.005)
    assert plan.epochs_restarted == 1902


def test_r16_eta2() -> None:
    # s_max = 4, B = 80: n = ceil(5 * 2^s / (s + 1)) = 16, 10, 7, 5, 5
    assert table(16, 2) == [
        (4, [(16, 1, 8), (8, 2, 4), (4, 4, 2), (2, 8, 1), (1, 16, 0)]),
        (3, [(10, 2, 5), (5, 4, 2), (2, 8, 1), (1, 16, 0)]),
        (2, [(7, 4, 3), (3, 8, 1), (1, 16, 0)]),
        (1, [(5, 8, 2), (2, 16, 0)]),
        (0, [(5, 16, 0)]),
    ]
    # resumed epochs: 16+8+8+8+8=48, 20+10+8+8=46, 28+12+8=48, 40+16=56, 80
    assert plan_hyperband(16, 2).epochs_resumed == 48 + 46 + 48 + 56 + 80


def test_r27_eta3_min3() -> None:
    # R / r = 9: s_max = 2, B = 81: n = 9, ceil(3 * 3 / 2) = 5, 3
    assert table(27, 3, 3) == [
        (2, [(9, 3, 3), (3, 9, 1), (1, 27, 0)]),
        (1, [(5, 9, 1), (1, 27, 0)]),
        (0, [(3, 27, 0)]),
    ]
    assert plan_hyperband(27, 3, 3).epochs_resumed == (27 + 18 + 18) + (45 + 18) + 81


def test_r100_eta3_resources_are_floored_epochs() -> None:
    assert milestones(100, 3) == (1, 3, 11, 33, 100)
    assert table(100, 3)[0] == (4, [(81, 1, 27), (27, 3, 9), (9, 11, 3), (3, 33, 1), (1, 100, 0)])
    assert table(100, 3)[-1] == (0, [(5, 100, 0)])


@pytest.mark.parametrize(
    ("max_resource", "eta", "min_resource", "s_max"),
    [(243, 3, 1, 5), (242, 3, 1, 4), (81, 3, 81, 0), (1000, 10, 1, 3), (999, 10, 1, 2)],
)
def test_s_max_is_exact_at_powers(max_resource: int, eta: int, min_resource: int, s_max: int) -> None:
    assert max_bracket_index(max_resource, eta, min_resource) == s_max


def test_bracket_size_integer_ceiling() -> None:
    assert bracket_size(3, 4, 3) == 34
    assert bracket_size(0, 4, 3) == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((81, 1, 1), "reduction_factor is 1, but must be >= 2"),
        ((0, 3, 1), "max_resource is 0, but must be >= 1"),
        ((81, 3, 0), "min_resource is 0, but must be >= 1"),
        ((8, 3, 9), "min_resource is 9, but must be <= max_resource"),
        ((8.5, 3, 1), "max_resource is 8.5, but must be an integer"),
    ],
)
def test_bad_resources(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan_hyperband(*args)


def test_bracket_invariants() -> None:
    with pytest.raises(ValueError, match="s is 5"):
        make_bracket(5, 81, 3)
    bracket = make_bracket(2, 81, 3)
    assert bracket.configs == 15 and bracket.epochs_restarted == 351


def test_bracket_order_sequence() -> None:
    assert [bracket_sequence_s(i, 2, BracketOrder.LARGEST_FIRST) for i in range(5)] == [2, 1, 0, 2, 1]
    assert [bracket_sequence_s(i, 2, BracketOrder.SMALLEST_FIRST) for i in range(4)] == [0, 1, 2, 0]


def test_survivors_count() -> None:
    assert survivors_count(9, 3, 3, truncated=False) == 3
    assert survivors_count(2, 3, 3, truncated=True) == 1
    assert survivors_count(7, 99, 3, truncated=True) == 2


# -- the synchronous core ------------------------------------------------------------------------------------


def value_of(trial_id: int) -> float:
    """Higher is better; trial 5 is the best, then 2, then 7 ..."""
    return {5: 10.0, 2: 9.0, 7: 8.0}.get(trial_id, float(trial_id) / 100)


def test_pause_at_rung_barrier_then_resume_best_first() -> None:
    core = HyperbandCore(Counter(), max_resource=9, reduction_factor=3)  # s_max = 2
    jobs = [core.suggest() for _ in range(9)]  # bracket s = 2: 9 configs at 1 epoch
    assert all(j is not None and j.kind is JobKind.START and j.resource == 1 and j.bracket == 2 for j in jobs)
    assert core.suggest() is None  # rung barrier: the bracket is full and nothing has reported
    for trial_id in range(8):
        assert core.report(trial_id, 1, value_of(trial_id)) is Decision.PAUSE
        assert core.suggest() is None
    assert core.status(0) is TrialStatus.PAUSED
    # The last report closes rung 0: 9 // 3 = 3 survivors (5, 2, 7) resume from epoch 1 to 3, best first.
    assert core.report(8, 1, value_of(8)) is Decision.STOP  # 8 closed the rung and lost
    assert sorted(core.drain_stopped()) == [0, 1, 3, 4, 6]
    assert core.drain_stopped() == []
    resumed = [core.suggest() for _ in range(3)]
    assert [(j.trial_id, j.kind, j.start, j.resource) for j in resumed if j] == [
        (5, JobKind.RESUME, 1, 3),
        (2, JobKind.RESUME, 1, 3),
        (7, JobKind.RESUME, 1, 3),
    ]
    assert core.suggest() is None
    for trial_id in (2, 7):
        assert core.report(trial_id, 3, value_of(trial_id)) is Decision.PAUSE
    assert core.report(5, 3, value_of(5)) is Decision.PAUSE  # closes rung 1, 5 survives
    assert sorted(core.drain_stopped()) == [2, 7]
    job = core.suggest()
    assert job is not None and (job.trial_id, job.start, job.resource) == (5, 3, 9)
    assert core.report(5, 9, 10.0) is Decision.STOP
    assert core.status(5) is TrialStatus.COMPLETED
    # Bracket s = 1 opens next: ceil(3 * 3 / 2) = 5 configs at 3 epochs.
    job = core.suggest()
    assert job is not None and (job.kind, job.bracket, job.resource, job.trial_id) == (JobKind.START, 1, 3, 9)
    # 9 + 3 * 2 + 1 * 6 epochs so far (resumed promotions pay only the extra epochs) + the new job's 3.
    assert core.used_resource == 21 and core.committed_resource == 24


def test_min_mode_ranks_low_values_first() -> None:
    core = HyperbandCore(Counter(), max_resource=3, reduction_factor=3, mode="min")  # s_max = 1
    for _ in range(3):
        core.suggest()
    for trial_id, value in ((0, 0.5), (1, 0.1)):
        core.report(trial_id, 1, value)
    core.report(2, 1, 0.9)
    job = core.suggest()
    assert job is not None and job.trial_id == 1


def test_cyclic_order_opens_the_next_bracket_instead_of_idling() -> None:
    core = HyperbandCore(Counter(), max_resource=3, reduction_factor=3, bracket_order="cyclic")
    jobs = [core.suggest() for _ in range(5)]  # s = 1 holds ceil(2 * 3 / 2) = 3, then s = 0 opens
    assert [j.bracket for j in jobs if j] == [1, 1, 1, 0, 0]
    single = HyperbandCore(Counter(), max_resource=3, reduction_factor=3)
    assert [single.suggest() is not None for _ in range(4)] == [True, True, True, False]


def test_smallest_first_starts_with_the_hedge_bracket() -> None:
    core = HyperbandCore(Counter(), max_resource=9, bracket_order="smallest-first")
    job = core.suggest()
    assert job is not None and (job.bracket, job.resource) == (0, 9)


def test_max_trials_truncates_the_first_rung_and_the_bracket_still_finishes() -> None:
    core = HyperbandCore(Counter(), max_resource=9, max_trials=4)
    for _ in range(4):
        assert core.suggest() is not None
    assert core.suggest() is None
    for trial_id in range(4):
        core.report(trial_id, 1, float(trial_id))
    job = core.suggest()  # rung closes with 4 configs, keeps max(1, 4 // 3) = 1: the best, trial 3
    assert job is not None and (job.trial_id, job.resource) == (3, 3)


def test_bad_settings_and_reports() -> None:
    with pytest.raises(ValueError, match="bracket_order is 'random'"):
        HyperbandCore(Counter(), max_resource=9, bracket_order="random")
    with pytest.raises(ValueError, match="mode is 'up'"):
        HyperbandCore(Counter(), max_resource=9, mode="up")  # type: ignore[arg-type]
    core = HyperbandCore(Counter(), max_resource=9)
    core.suggest()
    with pytest.raises(ValueError, match="trial_id is 7"):
        core.report(7, 1, 0.0)
    with pytest.raises(ValueError, match=r"resource is 2, but trial 0 must report in \(0, 1\]"):
        core.report(0, 2, 0.0)


def test_state_round_trip_mid_rung() -> None:
    core = HyperbandCore(Counter(), max_resource=9)
    for _ in range(9):
        core.suggest()
    for trial_id in range(5):
        core.report(trial_id, 1, value_of(trial_id))
    state = json.loads(json.dumps(core.state_dict()))
    restored = HyperbandCore(Counter(), max_resource=9)
    restored.load_state_dict(state)
    for twin in (core, restored):
        for trial_id in range(5, 9):
            twin.report(trial_id, 1, value_of(trial_id))
    assert [core.suggest() for _ in range(4)] == [restored.suggest() for _ in range(4)]
    with pytest.raises(ValueError, match="settings"):
        HyperbandCore(Counter(), max_resource=27).load_state_dict(state)
