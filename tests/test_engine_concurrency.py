"""The Ray backend runs as many jobs at once as the study has workers, and makes exactly the decisions the
simulator makes for the same core (issue 15 part 3: lower engine overhead without changing decisions).

Before ``max_concurrent_trials`` reached Tune, Tune allowed ONE pending trial for a custom searcher
(``TUNE_MAX_PENDING_TRIALS_PG`` auto, ray/tune/execution/tune_controller.py ``_get_max_pending_trials``),
and a one-epoch job's actor was reused for the next job before a second actor ever started: a 2-worker
study ran one trial at a time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpo.ray_backend.runner import make_tuner, run_study
from hpo.simulator.engine import simulate
from hpo.study import parse_study
from hpo.study.build import core_from_spec
from hpo.study.folder import StudyFolder
from trainers.synthetic import curve


def _study(root: Path, **changes: Any) -> Any:
    raw: dict[str, Any] = {
        "name": "concurrency",
        "space": {"x": {"uniform": [0.0, 1.0]}, "y": {"loguniform": [1e-4, 1e-1]}},
        "fidelity": {"min": 1, "max": 9, "eta": 3},
        "scheduler": "asha",  # promotions: trials pause at 1 and 3 epochs and resume from checkpoints
        "searcher": {"kind": "random", "seed": 5},
        "budget": {"max_trials": 8},
        "resources": {"cpu": 1},
        "execution": {"cpus": 2},
        "trainer": {"name": "synthetic", "overrides": {"epoch_seconds": 0.3}},
        "storage": {"root": str(root / "results")},
    }
    raw.update(changes)
    return parse_study(raw)


def test_tune_is_told_how_many_jobs_run_at_once(tmp_path: Path) -> None:
    """Not a timing test: the Tuner our cores run under carries the concurrency (Tune then keeps that many
    trials pending and running); Ray's own schedulers get none (HyperBand's paused trials would count)."""
    spec = _study(tmp_path)
    folder = StudyFolder.of(spec.storage.root, spec.name)
    common: dict[str, Any] = {"searcher": None, "scheduler": None, "stopper": None, "on_step": lambda: None}
    tuner = make_tuner(spec, folder, session=1, concurrency=3, **common)
    assert tuner._local_tuner._tune_config.max_concurrent_trials == 3  # ray/tune/tuner.py: Tuner.__init__
    native = make_tuner(spec, folder, session=1, concurrency=None, **common)
    assert native._local_tuner._tune_config.max_concurrent_trials is None


def test_the_backend_decides_what_the_simulator_decides(short_tmp: Path) -> None:
    """One job at a time, so the order of reports is the simulator's; every decision must be the same."""
    spec = _study(short_tmp, execution={"cpus": 2, "max_concurrent": 1}, trainer={"name": "synthetic"})
    assert run_study(spec).status == "finished"
    rows = StudyFolder.of(spec.storage.root, spec.name).store.read()
    decided = rows[rows["rung"] >= 0].sort_values("time", kind="stable")  # the core decides at rungs
    simulated = simulate(core_from_spec(spec), lambda config, epochs: curve(config, epochs), workers=1)
    expected = [(r["trial_id"], r["resource"], r["decision"]) for r in simulated.rows]
    got = list(zip(decided["trial_id"], decided["resource"], decided["decision"], strict=True))
    assert got == expected
