"""What the engine costs on top of training: scheduling overhead, result rows per second, store reads.

1. Overhead. A study of ``--trials`` configurations (ASHA with promotions, rungs at 1 and 3 epochs, so
   trials pause and resume through checkpoints) runs on the embedded local Ray with 2 trials at once, using
   the synthetic trainer whose epochs sleep a fixed time (``--epoch-seconds``, 10 s and 1 s by default).
   Overhead = the fraction of the 2 workers' wall time not spent in trainer epochs:
   1 - (epochs trained x epoch seconds) / (2 x wall seconds), wall = the whole ``run_study`` call
   (Ray start and shutdown included). Target: < 5 % at 10-s epochs.
2. Rows/s the driver sustains: reports fed straight into :class:`StudyDriver` (core decision, state.json
   rewritten atomically after every decision, rows journaled and appended as a Parquet part once a
   second), no Ray, no training.
3. Reading a 1M-row store (10,000 trials x 100 epochs): compacted, and with a tail of 100 small parts.

    python benchmarks/engine_overhead.py [--epoch-seconds 10 1] [--trials 40]
        [--json-out benchmarks/results/engine_overhead.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from save_json import save_json  # benchmarks/ is on sys.path when a script runs
from store_speed import million_row_reads  # the same store measurement as benchmarks/store_speed.py

from hpo.ray_backend.runner import run_study
from hpo.session.driver import StudyDriver
from hpo.study import parse_study
from hpo.study.build import core_from_spec
from hpo.study.folder import StudyFolder


def study(root: Path, name: str, trials: int, epoch_seconds: float, scheduler: Any = "asha") -> Any:
    return parse_study(
        {
            "name": name,
            "space": {"x": {"uniform": [0.0, 1.0]}, "y": {"loguniform": [1e-4, 1e-1]}},
            "fidelity": {"min": 1, "max": 3, "eta": 3},
            "scheduler": scheduler,
            "budget": {"max_trials": trials},
            "resources": {"cpu": 1},
            "execution": {"cpus": 2},
            "trainer": {"name": "synthetic", "overrides": {"epoch_seconds": epoch_seconds}},
            "storage": {"root": str(root)},
        }
    )


def overhead(root: Path, trials: int, epoch_seconds: float) -> dict[str, Any]:
    spec = study(root, f"overhead-{epoch_seconds:g}s", trials, epoch_seconds)
    started = time.perf_counter()
    outcome = run_study(spec)
    wall = time.perf_counter() - started
    training = outcome.total_resource * epoch_seconds
    rows = StudyFolder.of(root, spec.name).store.read()
    jobs = int((rows["resource"] == 1).sum() + ((rows["resource"] == 2).sum()))  # starts + promotions
    return {
        "epoch_seconds": epoch_seconds,
        "trials": outcome.trials,
        "jobs": jobs,
        "epochs": outcome.total_resource,
        "wall_s": round(wall, 1),
        "study_s": round(outcome.elapsed, 1),
        "training_s": round(training, 1),
        "overhead": round(1 - training / (2 * wall), 4),
        "overhead_without_ray_start": round(1 - training / (2 * outcome.elapsed), 4),
    }


def driver_rows_per_second(root: Path, trials: int = 300) -> dict[str, Any]:
    spec = study(root, "driver", trials, 0.0, scheduler="fifo")
    folder = StudyFolder.of(root, spec.name)
    folder.path.mkdir(parents=True)
    driver = StudyDriver(spec, folder, core_from_spec(spec))
    reports = 0
    started = time.perf_counter()
    while True:
        issued = driver.next_job()
        if issued is None:
            break
        job, _ = issued
        for epoch in range(job.start + 1, job.resource + 1):
            driver.report(job.trial_id, {"epoch": epoch, "val_map": 0.1 * epoch, "val_r1": 0.2}, node="bench")
            reports += 1
    driver.maybe_flush(force=True)
    seconds = time.perf_counter() - started
    assert len(folder.store.read()) == reports
    return {"reports": reports, "seconds": round(seconds, 2), "rows_per_s": round(reports / seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epoch-seconds", type=float, nargs="+", default=[10.0, 1.0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--skip-store", action="store_true", help="only the overhead runs")
    parser.add_argument("--json-out", type=Path, default=Path("benchmarks/results/engine_overhead.json"))
    args = parser.parse_args()
    result: dict[str, Any] = {"benchmark": "engine_overhead", "concurrent_trials": 2, "runs": []}
    root = Path(tempfile.mkdtemp(prefix="agvp-bench-", dir="/tmp"))  # short: Ray's socket paths
    try:
        for seconds in args.epoch_seconds:
            run = overhead(root, args.trials, seconds)
            print(json.dumps(run), flush=True)
            result["runs"].append(run)
        if not args.skip_store:
            result["driver"] = driver_rows_per_second(root)
            print(json.dumps(result["driver"]), flush=True)
            result["store_read"] = million_row_reads(root / "million", 1_000_000, np.random.default_rng(0))
            print(json.dumps(result["store_read"]), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    save_json(result, args.json_out)


if __name__ == "__main__":
    main()
