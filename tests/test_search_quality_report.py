"""benchmarks/search_quality.py's report logic, without running a study: the ratio intervals over seeds,
pooling the runs of several reports (seeds added with ``--first-seed``), the checks ``--reuse`` makes, and
the README's headline table."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from benchmark_script import load_benchmark


@pytest.fixture(scope="module")
def sq() -> ModuleType:
    return load_benchmark("search_quality")


def run(
    method: str, seed: int, fbe: list[float], regret: list[float], benchmark: str = "mfh3"
) -> dict[str, Any]:
    return {
        "benchmark": benchmark,
        "method": method,
        "seed": seed,
        "max_fidelity": 100,
        "fbe": fbe,
        "regret": regret,
        "trials": 10,
        "seconds": 0.1,
        "accounting": "resume",
    }


def test_the_interval_brackets_the_ratio_and_narrows_with_more_seeds(sq: ModuleType) -> None:
    ours = [0.10, 0.12, 0.08, 0.11, 0.09]
    peer = [0.20, 0.25, 0.18, 0.22, 0.19]
    low, high = sq.ratio_interval(ours, peer)
    assert low <= 0.10 / 0.20 <= high
    wide = high - low
    low, high = sq.ratio_interval(ours * 8, peer * 8)
    assert low <= 0.5 <= high and high - low < wide
    # identical samples on both sides: the interval holds 1 and is the same for the same seed
    assert sq.ratio_interval(peer, peer)[0] <= 1.0 <= sq.ratio_interval(peer, peer)[1]
    assert sq.ratio_interval(ours, peer, seed=3) == sq.ratio_interval(ours, peer, seed=3)


def test_missing_values_are_infinite_and_an_undefined_ratio_has_no_interval(sq: ModuleType) -> None:
    # the peer never gets there on most seeds: its median is infinite in most resamples, ours is finite
    low, high = sq.ratio_interval([3.4, 3.4, 4.0], [None, None, 9.0])
    assert low == 0.0 and high <= 4.0 / 9.0
    # ours never gets there: the ratio is infinite
    assert sq.ratio_interval([None, None, None], [1.0, 2.0, 3.0]) == [math.inf, math.inf]
    # nobody gets there: inf / inf is undefined
    assert sq.ratio_interval([None, None], [None, None]) is None


def test_runs_of_several_reports_pool_and_this_runs_win(sq: ModuleType) -> None:
    mine = [run("hyperband+mf-tpe", 0, [3.0], [0.05])]
    earlier = {
        "setting": {"budget_fbe": 150.0, "seeds": 2},
        "runs": [
            run("hyperband+mf-tpe", 0, [9.0], [0.5]),
            run("hyperband+mf-tpe", 1, [4.0], [0.04]),
            run("dehb", 0, [5.0], [0.2]),
        ],
    }
    assert sq.merge_runs(mine, [(Path("earlier.json"), earlier)]) == 2
    assert sorted((r["method"], r["seed"], r["fbe"][0]) for r in mine) == [
        ("dehb", 0, 5.0),
        ("hyperband+mf-tpe", 0, 3.0),
        ("hyperband+mf-tpe", 1, 4.0),
    ]
    summary = sq.summarise(mine, 150.0, ["hyperband+mf-tpe", "dehb"])
    cells = summary["100"]["mfh3"]["methods"]
    assert cells["hyperband+mf-tpe"]["seeds"] == 2 and cells["dehb"]["seeds"] == 1
    assert cells["hyperband+mf-tpe"]["per_seed"]["seed"] == [0, 1]
    vs = summary["100"]["mfh3"]["vs_best_peer"]["regret_at_20.0"]
    assert vs["best_peer"] == "dehb" and vs["ratios"]["hyperband+mf-tpe"] == pytest.approx(0.045 / 0.2)
    assert vs["intervals"]["hyperband+mf-tpe"] == [pytest.approx(0.2), pytest.approx(0.25)]


def test_reuse_checks_the_setting_and_names_the_file(sq: ModuleType, tmp_path: Path) -> None:
    args = argparse.Namespace(fidelity="epochs", budget=150.0, seeds=20)

    def write(name: str, report: dict[str, Any]) -> Path:
        path = tmp_path / name
        path.write_text(json.dumps(report), encoding="utf-8")
        return path

    with_runs = write(
        "a.json", {"setting": {"budget_fbe": 150.0, "seeds": 10}, "runs": [run("dehb", 0, [1.0], [0.1])]}
    )
    assert len(sq.read_reports([with_runs], args)) == 1  # runs merge whatever the seeds
    other_budget = write("b.json", {"setting": {"budget_fbe": 50.0, "seeds": 20}})
    with pytest.raises(ValueError, match=r"b\.json has budget 50\.0, but this run has 150\.0"):
        sq.read_reports([other_budget], args)
    # an old report kept only figures: it merges only with the very same seeds
    figures_only = write("c.json", {"setting": {"budget_fbe": 150.0, "seeds": 10}, "runs": []})
    with pytest.raises(ValueError, match=r"c\.json stores no runs and has seeds 10, but this run has 20"):
        sq.read_reports([figures_only], args)
    with pytest.raises(ValueError, match=r"d\.json: cannot read it"):
        sq.read_reports([tmp_path / "d.json"], args)


def test_the_headline_table_quotes_the_default_against_the_best_peer(sq: ModuleType) -> None:
    runs = [run("hyperband+mf-tpe", s, [3.4, 30.0], [0.08, 0.001]) for s in range(4)]
    runs += [run("dehb", s, [9.0, 60.0], [0.09, 0.002]) for s in range(4)]
    runs += [run("dehb", s, [9.0], [0.6], benchmark="mfh6") for s in range(4)]
    runs += [run("hyperband+mf-tpe", s, [5.0], [0.3], benchmark="mfh6") for s in range(4)]
    table = sq.default_table(sq.summarise(runs, 150.0, ["hyperband+mf-tpe", "dehb"]))
    lines = table.splitlines()
    assert lines[0].startswith("**R = 100** (4 seeds; x = default / best peer with its 5-95 % bootstrap")
    mfh3 = next(line for line in lines if line.startswith("| mfh3 |"))
    assert "| 3.4 (100%) | dehb (9.0) | 0.38 [0.38, 0.38] |" in mfh3
    assert "| 1.0e-03 | dehb (2.0e-03) | 0.50 [0.50, 0.50] |" in mfh3
    mfh6 = next(line for line in lines if line.startswith("| mfh6 |"))
    assert "| - (0%) | none gets there | - |" in mfh6  # nobody reaches regret 0.1 there


def test_the_prior_table_compares_good_and_bad_priors_with_none(sq: ModuleType) -> None:
    runs = [run("hyperband+mf-tpe", s, [3.4], [0.05]) for s in range(4)]
    runs += [run("hyperband+mf-tpe@good-prior", s, [1.0], [0.01]) for s in range(4)]
    runs += [run("hyperband+mf-tpe@bad-prior", s, [4.4], [0.05]) for s in range(4)]
    methods = ["hyperband+mf-tpe", "hyperband+mf-tpe@good-prior", "hyperband+mf-tpe@bad-prior"]
    table = sq.prior_table(sq.summarise(runs, 150.0, methods))
    assert table.startswith("**Priors, R = 100**")
    row = next(line for line in table.splitlines() if line.startswith("| mfh3 |"))
    assert row == "| mfh3 | 3.4 (100%) | 1.0 (100%) | 4.4 (100%) | 3.40 [3.40, 3.40] | 1.29 [1.29, 1.29] |"
    assert sq.prior_table(sq.summarise(runs[:4], 150.0, methods[:1])) == ""  # no prior measured
