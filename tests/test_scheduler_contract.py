"""What every scheduler core must satisfy, checked for all of them in the simulator (Syne Tune's habit)."""

from __future__ import annotations

import heapq
import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from hpo.results import ROW_COLUMNS, TrialStatus
from hpo.schedulers import SchedulerCore, make_scheduler
from hpo.schedulers.base import Decision
from hpo.searchers import make_searcher
from hpo.simulator import simulate
from hpo.space import parse_space

SPACE = parse_space(
    {"x0": {"type": "float", "low": 0, "high": 1}, "x1": {"type": "float", "low": 0, "high": 1}}
)
MAX = 27

#: (scheduler name, options): every core, Hyperband in each bracket order.
CORES = [
    ("fifo", {}),
    ("hyperband", {}),
    ("hyperband", {"bracket_order": "smallest-first"}),
    ("hyperband", {"bracket_order": "cyclic"}),
    ("asha", {}),
    ("asha-stopping", {}),
    ("mfho", {}),
    ("mfho", {"initial_fidelity": 3, "promote_fraction": 0.5}),
    ("mfho-hedge", {}),
]
IDS = [name + "".join(f"-{value}" for value in opts.values()) for name, opts in CORES]


def curve(config: dict[str, Any], resource: int) -> float:
    """A cheap learning curve: accuracy rising with epochs towards a config-dependent plateau."""
    plateau = 1.0 - (config["x0"] - 0.3) ** 2 - 0.5 * (config["x1"] - 0.7) ** 2
    return plateau * (1.0 - math.exp(-resource / 6.0)) + 0.01 * math.sin(37.0 * config["x0"] * resource)


def build(
    name: str, options: dict[str, Any], seed: int, searcher: str = "random", **budget: Any
) -> SchedulerCore:
    searcher_obj = make_searcher(searcher, SPACE, np.random.default_rng(seed))
    budget.setdefault("max_total_resource", 40 * MAX)
    return make_scheduler(name, searcher_obj, max_resource=MAX, mode="max", **options, **budget)


@pytest.mark.parametrize(("name", "options"), CORES, ids=IDS)
@pytest.mark.parametrize("workers", [1, 4])
def test_contract(name: str, options: dict[str, Any], workers: int) -> None:
    core = build(name, options, seed=3)
    result = simulate(core, curve, workers=workers, study="contract")
    assert result.rows, "the study ran nothing"
    assert all(tuple(row) == ROW_COLUMNS for row in result.rows)
    # every started trial ends in a terminal status, and none is left running
    assert set(result.final_status) == set(range(core.num_trials))
    assert all(status.terminal for status in result.final_status.values())
    # resources never exceed the maximum and only grow within a trial
    last: dict[int, int] = {}
    for row in result.rows:
        assert 1 <= row["resource"] <= MAX
        assert row["resource"] > last.get(row["trial_id"], 0)
        last[row["trial_id"]] = row["resource"]
        assert row["decision"] in {d.value for d in Decision}
        assert row["rung"] == (
            core.milestones.index(row["resource"]) if row["resource"] in core.milestones else -1
        )
    # the budget is respected exactly (checked before each job), and mostly used
    assert result.total_resource <= 40 * MAX
    assert result.total_resource >= 40 * MAX - 2 * MAX * workers
    assert result.rows[-1]["total_resource"] == result.total_resource
    # completed trials are exactly those that reached the maximum
    completed = {t for t, s in result.final_status.items() if s is TrialStatus.COMPLETED}
    assert completed == {t for t, r in last.items() if r == MAX}
    # deterministic per seed
    again = simulate(build(name, options, seed=3), curve, workers=workers, study="contract")
    assert again.rows == result.rows
    other = simulate(build(name, options, seed=4), curve, workers=workers, study="contract")
    assert other.rows != result.rows


@pytest.mark.parametrize(("name", "options"), CORES, ids=IDS)
def test_max_trials_is_respected(name: str, options: dict[str, Any]) -> None:
    core = build(name, options, seed=0, max_trials=7, max_total_resource=None)
    result = simulate(core, curve, workers=2)
    assert core.num_trials == 7
    assert all(status.terminal for status in result.final_status.values())


def drive(
    make: Callable[[], SchedulerCore], workers: int, swap_at: int | None, restore: Callable[[], SchedulerCore]
) -> list[tuple[Any, ...]]:
    """A minimal event loop that can replace the core by a JSON round-trip of its state after ``swap_at``
    reports; returns every job and decision in order."""
    core = make()
    stream: list[tuple[Any, ...]] = []
    events: list[tuple[int, int, int, list[int]]] = []
    free, seq, clock, reports = workers, 0, 0, 0
    while True:
        while free:
            job = core.suggest()
            if job is None:
                break
            free -= 1
            stream.append(
                ("job", job.kind.value, job.trial_id, job.start, job.resource, job.bracket, job.config)
            )
            points = [m for m in core.milestones if job.start < m < job.resource] + [job.resource]
            heapq.heappush(events, (clock + points[0] - job.start, seq, job.trial_id, points))
            seq += 1
        if not events:
            return stream
        clock, _, trial_id, points = heapq.heappop(events)
        config = core.config(trial_id)
        decision = core.report(trial_id, points[0], curve(config, points[0]))
        stream.append(("report", trial_id, points[0], decision.value, tuple(core.drain_stopped())))
        if decision is Decision.CONTINUE:
            heapq.heappush(events, (clock + points[1] - points[0], seq, trial_id, points[1:]))
            seq += 1
        else:
            free += 1
        reports += 1
        if reports == swap_at:
            state = json.loads(json.dumps(core.state_dict()))
            core = restore()
            core.load_state_dict(state)


@pytest.mark.parametrize(("name", "options"), CORES, ids=IDS)
@pytest.mark.parametrize("searcher", ["random", "mf-tpe", "tpe"])
def test_save_and_load_mid_study_gives_the_same_future(
    name: str, options: dict[str, Any], searcher: str
) -> None:
    def make() -> SchedulerCore:
        return build(name, options, seed=11, searcher=searcher, max_total_resource=25 * MAX)

    def restore() -> SchedulerCore:  # a different seed: everything must come from the state
        return build(name, options, seed=999, searcher=searcher, max_total_resource=25 * MAX)

    reference = drive(make, 3, None, restore)
    reports = sum(1 for entry in reference if entry[0] == "report")
    for swap_at in (reports // 3, 2 * reports // 3):
        assert drive(make, 3, swap_at, restore) == reference


@pytest.mark.parametrize(("name", "options"), CORES, ids=IDS)
@pytest.mark.parametrize("workers", [1, 3])
def test_failed_trials_release_the_study(name: str, options: dict[str, Any], workers: int) -> None:
    """A trial whose trainer crashes is recorded as failed; rungs stop waiting for it, its unused promise
    returns to the budget, and the study still ends with every trial in a terminal status."""

    def crashes(config: dict[str, Any], resource: int) -> bool:
        return config["x0"] < 0.25 and resource >= 2  # about a quarter of the configurations

    core = build(name, options, seed=5)
    result = simulate(core, curve, workers=workers, fails=crashes)
    failed = {t for t, s in result.final_status.items() if s is TrialStatus.FAILED}
    assert failed, "the injected crashes failed no trial"
    assert all(status.terminal for status in result.final_status.values())
    assert set(result.final_status) == set(range(core.num_trials))
    failed_rows = [row for row in result.rows if row["status"] == "failed"]
    assert {row["trial_id"] for row in failed_rows} == failed
    assert all(math.isnan(row["value"]) and row["decision"] == "stop" for row in failed_rows)
    assert core.committed_resource == core.used_resource  # nothing is promised to a dead trial
    assert result.total_resource >= 40 * MAX - 2 * MAX * workers  # the freed budget was spent
    with pytest.raises(ValueError, match="only a running trial can fail"):
        core.fail(next(iter(failed)))
