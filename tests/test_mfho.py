"""MFHO in rounds (hpo/schedulers/mfho.py): round sizes, the barrier, promotion against the best of all
rounds, early-ending rounds, max_rounds, initial_fidelity, failures and its saved state."""

from __future__ import annotations

import json
from typing import Any

import pytest
from searcher_doubles import Counter

from hpo.results import TrialStatus
from hpo.schedulers import MFHOCore
from hpo.schedulers.base import Decision, JobKind
from hpo.simulator import simulate


def core(**options: Any) -> MFHOCore:
    options.setdefault("max_resource", 9)
    return MFHOCore(Counter(), mode="max", **options)


def start_round(c: MFHOCore) -> list[int]:
    """Start every new configuration of the current round and return their ids."""
    ids = []
    for _ in range(c.round_size):
        job = c.suggest()
        assert job is not None and job.kind is JobKind.START
        ids.append(job.trial_id)
    return ids


def test_levels_and_round_size_follow_the_rungs_and_the_promotion_rate() -> None:
    c = core(max_resource=27)
    assert c.levels == [1, 3, 9, 27] and c.round_size == 27 and c.bracket == 3
    c = core(max_resource=27, initial_fidelity=3)
    assert c.levels == [3, 9, 27] and c.round_size == 9 and c.bracket == 2
    c = core(max_resource=27, promote_fraction=0.5)
    assert c.round_size == 8  # (1/0.5)^3
    c = core(max_resource=9, promote_fraction=0.4)
    assert c.round_size == 7  # ceil(2.5^2 = 6.25)
    with pytest.raises(ValueError, match="initial_fidelity is 2"):
        core(max_resource=9, initial_fidelity=2)
    with pytest.raises(ValueError, match="initial_fidelity is 9"):
        core(max_resource=9, initial_fidelity=9)
    with pytest.raises(ValueError, match=r"promote_fraction is 1\.0"):
        core(promote_fraction=1.0)


def test_a_round_waits_at_its_barrier_then_promotes_the_best_share_best_first() -> None:
    c = core()  # levels 1, 3, 9; 9 per round; promote 1/3
    ids = start_round(c)
    assert c.suggest() is None  # the round is full: nothing runs before its barrier
    values = [0.1, 0.9, 0.5, 0.3, 0.8, 0.2, 0.4, 0.6, 0.7]
    for trial_id, value in zip(ids[:-1], values[:-1], strict=True):
        assert c.report(trial_id, 1, value) is Decision.PAUSE
        assert c.suggest() is None  # the barrier is not reached until the last one reports
    assert c.report(ids[-1], 1, values[-1]) is Decision.PAUSE
    jobs = [c.suggest() for _ in range(3)]
    assert c.suggest() is None
    # the top floor(9/3) = 3 are promoted, best first: 0.9, 0.8, 0.7
    assert [job.trial_id for job in jobs if job is not None] == [ids[1], ids[4], ids[8]]
    assert all((job.kind, job.start, job.resource) == (JobKind.RESUME, 1, 3) for job in jobs if job)
    assert sorted(c.drain_stopped()) == sorted(ids[i] for i in (0, 2, 3, 5, 6, 7))
    assert c.status(ids[0]) is TrialStatus.STOPPED


def test_later_rounds_compete_with_every_earlier_round() -> None:
    c = core(max_resource=3)  # levels 1, 3; 3 per round; promote the best floor(N/3)
    first_round = start_round(c)
    for trial_id, value in zip(first_round, [0.5, 0.6, 0.7], strict=True):
        c.report(trial_id, 1, value)
    job = c.suggest()
    assert job is not None and job.trial_id == first_round[2] and job.kind is JobKind.RESUME
    assert c.report(job.trial_id, 3, 0.8) is Decision.STOP
    # round two: every new configuration is worse than the best so far, so none is promoted and the
    # round ends at the lowest fidelity - MFHO's saving over repeating successive halving
    second_round = start_round(c)
    assert min(second_round) > max(first_round)
    for trial_id, value in zip(second_round, [0.1, 0.2, 0.3], strict=True):
        c.report(trial_id, 1, value)
    third = c.suggest()
    assert third is not None and third.kind is JobKind.START  # round three started at once
    assert all(c.status(t) is TrialStatus.STOPPED for t in second_round)
    # a configuration in the top third of all six values (top 2) is promoted even in a weak round
    rest = [third.trial_id] + [job.trial_id for job in (c.suggest(), c.suggest()) if job is not None]
    for trial_id, value in zip(rest, [0.65, 0.05, 0.0], strict=True):
        c.report(trial_id, 1, value)
    promoted = c.suggest()
    assert promoted is not None and promoted.trial_id == rest[0] and promoted.resource == 3


def test_max_rounds_ends_the_study_and_a_round_ends_at_the_maximum() -> None:
    c = core(max_resource=9, max_rounds=2, max_total_resource=10_000)
    result = simulate(c, lambda config, r: r * 0.01 + config["x"] * 0.001)
    assert c.num_trials == 2 * c.round_size
    assert {row["trial_id"] for row in result.rows if row["resource"] == 9}  # some reached R
    assert all(status.terminal for status in result.final_status.values())
    assert result.total_resource < 10_000


def test_the_budget_runs_rounds_until_it_is_spent() -> None:
    c = core(max_resource=9, max_total_resource=9 * 40)
    result = simulate(c, lambda config, r: (config["x"] % 7) * 0.1 + r * 0.01, workers=3)
    assert c.num_trials > 3 * c.round_size
    assert result.total_resource <= 9 * 40
    assert all(status.terminal for status in result.final_status.values())


def test_initial_fidelity_starts_new_configurations_higher() -> None:
    c = core(max_resource=27, initial_fidelity=3)
    job = c.suggest()
    assert job is not None and (job.start, job.resource) == (0, 3)


def test_a_failure_at_the_first_level_is_replaced_later_ones_never_promoted() -> None:
    c = core(max_resource=3)
    ids = start_round(c)
    c.fail(ids[0])
    replacement = c.suggest()
    assert replacement is not None and replacement.kind is JobKind.START  # the round refills itself
    for trial_id, value in zip([*ids[1:], replacement.trial_id], [0.2, 0.9, 0.1], strict=True):
        c.report(trial_id, 1, value)
    promoted = c.suggest()
    assert promoted is not None and promoted.trial_id == ids[2]
    c.fail(ids[2])  # fails at the last level: the round is over, the next one starts
    nxt = c.suggest()
    assert nxt is not None and nxt.kind is JobKind.START
    assert c.status(ids[2]) is TrialStatus.FAILED


def test_state_round_trip_mid_round() -> None:
    c = core(max_resource=9)
    ids = start_round(c)
    for trial_id in ids[:5]:
        c.report(trial_id, 1, trial_id * 0.1)
    state = json.loads(json.dumps(c.state_dict()))
    again = core(max_resource=9)
    again.load_state_dict(state)
    for trial_id in ids[5:]:
        assert c.report(trial_id, 1, trial_id * 0.1) == again.report(trial_id, 1, trial_id * 0.1)
    jobs = [(j.trial_id, j.kind, j.resource) for j in iter(c.suggest, None)]
    assert jobs == [(j.trial_id, j.kind, j.resource) for j in iter(again.suggest, None)]
    assert jobs  # the promoted of the round
