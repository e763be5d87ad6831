"""ASHA: the promotion rule on scripted results, rung bookkeeping, and the stopping variant."""

from __future__ import annotations

import json

import pytest
from searcher_doubles import Counter

from hpo.results import TrialStatus
from hpo.schedulers.asha import ASHACore, promotable, stops_at_rung
from hpo.schedulers.base import Decision, JobKind


def test_promotable_is_floor_of_rung_over_eta() -> None:
    assert promotable([0.1, 0.2], 3) == 0
    assert promotable([0.1] * 3, 3) == 1
    assert promotable([0.1] * 8, 3) == 2


def test_stops_at_rung_uses_the_one_over_eta_quantile_of_losses() -> None:
    assert not stops_at_rung(5.0, [5.0], 3)  # alone at its rung: continues
    assert stops_at_rung(5.0, [1.0, 2.0, 5.0], 3)
    assert not stops_at_rung(1.0, [1.0, 2.0, 5.0], 3)
    assert stops_at_rung(2.0, [1.0, 2.0, 5.0], 3)  # quantile 1/3 of (1, 2, 5) is 1.667


def test_promotion_order_and_rung_bookkeeping() -> None:
    core = ASHACore(Counter(), max_resource=9, reduction_factor=3, mode="min")  # milestones 1, 3, 9
    assert core.milestones == (1, 3, 9)
    losses = {0: 0.5, 1: 0.3, 2: 0.9, 3: 0.1, 4: 0.7, 5: 0.2}
    for trial_id in range(3):
        job = core.suggest()
        assert job is not None and (job.kind, job.trial_id, job.resource) == (JobKind.START, trial_id, 1)
        assert core.report(trial_id, 1, losses[trial_id]) is Decision.PAUSE
    # rung 0 = {0: .5, 1: .3, 2: .9}: top floor(3/3) = 1 is trial 1 -> promoted to 3 epochs
    job = core.suggest()
    assert job is not None and (job.kind, job.trial_id, job.start, job.resource) == (JobKind.RESUME, 1, 1, 3)
    assert core.report(1, 3, 0.3) is Decision.PAUSE
    assert core.promoted(0) == {1} and core.rung_members(1) == [1]
    # nothing promotable (rung 1 has 1 < 3 members, rung 0's top-1 is promoted): start new configs
    for trial_id in (3, 4, 5):
        job = core.suggest()
        assert job is not None and job.trial_id == trial_id and job.kind is JobKind.START
        core.report(trial_id, 1, losses[trial_id])
        if trial_id == 3:
            # rung 0 now has 4 members, top 1 = trial 3 (0.1), not promoted yet -> promoted next
            job = core.suggest()
            assert job is not None and (job.trial_id, job.resource) == (3, 3)
            core.report(3, 3, 0.05)
    # rung 0: 6 members, top 2 = trials 3 (0.1) and 5 (0.2); 3 is promoted, so 5 goes next
    job = core.suggest()
    assert job is not None and (job.trial_id, job.resource) == (5, 3)
    core.report(5, 3, 0.2)
    # rung 1 = {1: .3, 3: .05, 5: .2}: top 1 is trial 3 -> to the top rung, scanned first (top-down)
    job = core.suggest()
    assert job is not None and (job.trial_id, job.start, job.resource) == (3, 3, 9)
    assert core.report(3, 9, 0.01) is Decision.STOP
    assert core.status(3) is TrialStatus.COMPLETED
    assert core.rung_members(0) == [0, 1, 2, 3, 4, 5]


def test_a_failed_promoted_trial_gives_its_promotion_slot_back() -> None:
    core = ASHACore(Counter(), max_resource=9, reduction_factor=3, mode="min")  # milestones 1, 3, 9
    losses = [0.5, 0.3, 0.9]
    for trial_id in range(3):
        core.suggest()
        core.report(trial_id, 1, losses[trial_id])
    job = core.suggest()  # the one slot of rung 0 (floor(3/3)) goes to trial 1 ...
    assert job is not None and (job.trial_id, job.resource) == (1, 3)
    core.report(1, 2, 0.3)  # ... which reports epoch 2, then crashes before rung 1
    core.fail(1)
    # the slot is free again: the next best of rung 0 (trial 0) is promoted instead of a new start
    job = core.suggest()
    assert job is not None and (job.kind, job.trial_id, job.start, job.resource) == (JobKind.RESUME, 0, 1, 3)
    # and the state round trip keeps the released slot
    restored = ASHACore(Counter(), max_resource=9, reduction_factor=3, mode="min")
    restored.load_state_dict(json.loads(json.dumps(core.state_dict())))
    assert restored._sorted == core._sorted


def test_without_failures_a_promoted_trial_keeps_its_slot() -> None:
    core = ASHACore(Counter(), max_resource=9, reduction_factor=3, mode="min")
    for trial_id, loss in enumerate([0.5, 0.3, 0.9]):
        core.suggest()
        core.report(trial_id, 1, loss)
    core.suggest()  # trial 1 promoted
    job = core.suggest()  # slot taken: a new configuration starts
    assert job is not None and (job.kind, job.trial_id) == (JobKind.START, 3)


def test_stopping_mode_runs_to_max_and_stops_bad_trials() -> None:
    core = ASHACore(Counter(), max_resource=9, asha_mode="stopping")  # max mode
    job = core.suggest()
    assert job is not None and (job.resource, job.bracket) == (9, core.s_max)
    assert core.report(0, 1, 0.5) is Decision.CONTINUE
    assert core.report(0, 2, 0.6) is Decision.CONTINUE  # between milestones
    assert core.report(0, 3, 0.7) is Decision.CONTINUE
    for trial_id, value in ((1, 0.9), (2, 0.1)):
        core.suggest()
        decision = core.report(trial_id, 1, value)
        assert decision is (Decision.STOP if value < 0.5 else Decision.CONTINUE)
    # trials 0 and 1 keep their promise of 9 epochs; trial 2 used 1 and gave its other 8 back
    assert core.committed_resource == 9 + 9 + 1


def test_budget_is_checked_before_a_job_is_issued() -> None:
    core = ASHACore(Counter(), max_resource=9, max_total_resource=10, asha_mode="stopping")
    assert core.suggest() is not None
    assert core.suggest() is None  # 9 + 9 > 10
    core.report(0, 9, 1.0)
    assert core.suggest() is None


def test_state_round_trip_keeps_promotions() -> None:
    core = ASHACore(Counter(), max_resource=9)
    for trial_id in range(3):
        core.suggest()
        core.report(trial_id, 1, float(trial_id))
    job = core.suggest()  # promotes trial 2, the best of three in max mode
    assert job is not None and job.trial_id == 2
    restored = ASHACore(Counter(), max_resource=9)
    restored.load_state_dict(json.loads(json.dumps(core.state_dict())))
    assert restored.promoted(0) == {2}
    for twin in (core, restored):
        twin.report(2, 3, 1.0)
    assert [core.suggest() for _ in range(3)] == [restored.suggest() for _ in range(3)]
    with pytest.raises(ValueError, match="scheduler 'asha'"):
        from hpo.schedulers import FIFOCore

        FIFOCore(Counter(), max_resource=9).load_state_dict(core.state_dict())


def test_bad_mode() -> None:
    with pytest.raises(ValueError, match="asha_mode is 'x'"):
        ASHACore(Counter(), max_resource=9, asha_mode="x")  # type: ignore[arg-type]


def reference_asha_jobs(losses: dict[tuple[int, int], float], rungs: int, eta: int, n_jobs: int) -> list:
    """Algorithm 2 of Li et al. (MLSys 2020) written out naively: on a free worker scan rungs k = top-1 .. 0
    and promote the best configuration of top_k(rung_k, floor(|rung_k| / eta)) not yet promoted, else
    start a new configuration at rung 0. ``losses[(trial, k)]`` is the trial's loss at rung k."""
    members: list[list[int]] = [[] for _ in range(rungs)]
    promoted: list[set[int]] = [set() for _ in range(rungs)]
    jobs, next_id = [], 0
    for _ in range(n_jobs):
        for k in range(rungs - 2, -1, -1):
            top = sorted(members[k], key=lambda t, k=k: (losses[(t, k)], t))[: len(members[k]) // eta]
            candidates = [t for t in top if t not in promoted[k]]
            if candidates:
                trial, rung = candidates[0], k + 1
                promoted[k].add(trial)
                break
        else:
            trial, rung, next_id = next_id, 0, next_id + 1
        jobs.append((trial, rung))
        if rung < rungs - 1:
            members[rung].append(trial)
    return jobs


def test_promotion_mode_equals_a_naive_algorithm_2() -> None:
    rng = __import__("random").Random(0)
    core = ASHACore(Counter(), max_resource=100, reduction_factor=3, mode="min")  # 1, 3, 11, 33, 100
    rungs = len(core.milestones)
    losses = {(t, k): rng.random() for t in range(1000) for k in range(rungs)}
    expected = reference_asha_jobs(losses, rungs, 3, 1200)
    for trial, rung in expected:
        job = core.suggest()
        assert job is not None and (job.trial_id, job.resource) == (trial, core.milestones[rung])
        # a promotion resumes from the previous rung, so it pays only the extra epochs
        assert job.start == (0 if rung == 0 else core.milestones[rung - 1])
        core.report(trial, job.resource, losses[(trial, rung)])
    assert any(r == rungs - 1 for _, r in expected)  # the test reaches the top rung
