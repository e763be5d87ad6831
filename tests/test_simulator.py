"""The simulator: simulated time, resume vs restart costs, workers, rows; the mf-prior-bench adapter."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from hpo.results import ROW_COLUMNS
from hpo.schedulers import ASHACore, FIFOCore, HyperbandCore
from hpo.searchers import RandomSearcher
from hpo.simulator import BENCHMARKS, simulate
from hpo.space import parse_space

SPACE = parse_space({"x": {"type": "float", "low": 0, "high": 1}})


def curve(config: dict[str, Any], resource: int) -> float:
    return config["x"] * resource


def test_fifo_time_and_rows() -> None:
    core = FIFOCore(RandomSearcher(SPACE, np.random.default_rng(0)), max_resource=9, max_trials=4)
    result = simulate(core, curve, workers=2, epoch_cost=0.5, study="s", metric="acc")
    # 4 trials x 9 epochs on 2 workers at 0.5 s per epoch
    assert result.time == pytest.approx(9.0)
    assert result.total_resource == 36
    assert [r["resource"] for r in result.rows if r["trial_id"] == 0] == [1, 3, 9]
    row = result.rows[0]
    assert tuple(row) == ROW_COLUMNS
    assert (row["study"], row["metric"], row["mode"], row["bracket"]) == ("s", "acc", "max", 0)
    assert json.loads(row["config"]).keys() == {"x"}


def test_report_every_epoch() -> None:
    core = FIFOCore(RandomSearcher(SPACE, np.random.default_rng(0)), max_resource=9, max_trials=1)
    result = simulate(core, curve, report_every_epoch=True)
    assert [r["resource"] for r in result.rows] == list(range(1, 10))
    assert [r["rung"] for r in result.rows] == [0, -1, 1, -1, -1, -1, -1, -1, 2]


@pytest.mark.parametrize(("checkpoints", "epochs"), [(True, 9 + 3 * 2 + 1 * 6), (False, 9 + 3 * 3 + 1 * 9)])
def test_resume_pays_only_extra_epochs_restart_pays_all(checkpoints: bool, epochs: int) -> None:
    core = HyperbandCore(RandomSearcher(SPACE, np.random.default_rng(0)), max_resource=9, max_trials=9)
    result = simulate(core, curve, checkpoints=checkpoints)
    assert result.total_resource == epochs
    assert result.time == pytest.approx(epochs)


def test_more_workers_finish_sooner() -> None:
    def run(workers: int) -> float:
        core = ASHACore(
            RandomSearcher(SPACE, np.random.default_rng(0)), max_resource=9, max_total_resource=200
        )
        return simulate(core, curve, workers=workers).time

    assert run(4) < run(1) / 3


def test_epoch_cost_function_and_bad_values() -> None:
    core = FIFOCore(RandomSearcher(SPACE, np.random.default_rng(0)), max_resource=3, max_trials=1)
    result = simulate(core, curve, epoch_cost=lambda config: 2.0)
    assert result.time == pytest.approx(6.0)
    with pytest.raises(ValueError, match="workers is 0"):
        simulate(core, curve, workers=0)
    with pytest.raises(ValueError, match="epoch_cost is -1"):
        simulate(core, curve, epoch_cost=-1)


def test_mfpbench_adapter() -> None:
    pytest.importorskip("mfpbench")
    from hpo.simulator import mfpbench_problem

    problem = mfpbench_problem("mfh3", seed=0)
    assert problem.space.names == ("X_0", "X_1", "X_2")
    optimum = {"X_0": 0.114614, "X_1": 0.555649, "X_2": 0.852547}
    assert problem.curve(optimum, 100) == pytest.approx(BENCHMARKS["mfh3"][1], abs=1e-4)
    assert problem.regret(problem.curve(optimum, 100)) == pytest.approx(0.0, abs=1e-4)
    with pytest.raises(ValueError, match="benchmark is 'mfh9'"):
        mfpbench_problem("mfh9", seed=0)
