"""The study driver at cluster scale: decisions per second, saved-state size and resume time at 100 / 1,000 /
10,000 trials, with no Ray and no training (issue 15 part 5).

A study of N trials (ASHA, rungs at 1, 3 and 9 epochs, the random searcher, so the searcher's cost does not
hide the driver's) is driven straight through :class:`~hpo.session.driver.StudyDriver`: every free job is
taken, every epoch reported at once, as fast as the driver answers. Figures per N:

* ``decisions_per_s``: reports answered per second over the whole study, and over its last tenth
  (``decisions_per_s_at_end``: what the driver sustains once N trials exist);
* ``state_bytes``: the scheduler state on disk at the end (``state.json``, its backup and the event log);
* ``resume_s``: reading that state and restoring a fresh driver from it (what ``agvp-hpo resume`` does
  before Ray starts), median of ``--repeats``;
* ``bytes_written``: what the driver wrote for its state over the whole study (the cost of persistence).

``--max-seconds`` caps one study: a driver too slow to finish is measured on the decisions it made (the
rates then say so: ``finished: false``).

    python benchmarks/driver_scale.py [--trials 100 1000 10000] [--repeats 3] [--max-seconds 120]
        [--json-out benchmarks/results/driver_scale.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from save_json import save_json  # benchmarks/ is on sys.path when a script runs

from hpo.session.driver import StudyDriver, load_state
from hpo.session.statelog import StateLog
from hpo.study import parse_study
from hpo.study.build import core_from_spec
from hpo.study.folder import StudyFolder


def study(root: Path, trials: int) -> Any:
    return parse_study(
        {
            "name": f"scale-{trials}",
            "space": {"x": {"uniform": [0.0, 1.0]}, "y": {"loguniform": [1e-4, 1e-1]}},
            "fidelity": {"min": 1, "max": 9, "eta": 3},
            "scheduler": "asha",
            "searcher": "random",
            "budget": {"max_trials": trials},
            "trainer": {"name": "synthetic"},
            "storage": {"root": str(root)},
        }
    )


def state_bytes(folder: StudyFolder) -> int:
    return sum(path.stat().st_size for path in folder.path.glob("state*") if path.is_file())


class CountingWrites:
    """Counts the bytes the driver writes for its state (snapshots and, where there is one, the event
    log)."""

    def __init__(self) -> None:
        self.bytes = 0

    def __enter__(self) -> CountingWrites:
        import hpo.session.driver as driver

        self._driver = driver
        self._original = driver.atomic_write_text

        def counted(path: Any, text: str) -> Any:
            self.bytes += len(text.encode())
            return self._original(path, text)

        driver.atomic_write_text = counted
        self._append = StateLog.append

        def append(log: StateLog, event: dict[str, Any]) -> None:
            before = log.bytes
            self._append(log, event)
            self.bytes += log.bytes - before

        StateLog.append = append  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        self._driver.atomic_write_text = self._original
        StateLog.append = self._append  # type: ignore[method-assign]


def drive(root: Path, trials: int, max_seconds: float, repeats: int) -> dict[str, Any]:
    spec = study(root, trials)
    folder = StudyFolder.of(root, spec.name)
    folder.path.mkdir(parents=True)
    driver = StudyDriver(spec, folder, core_from_spec(spec))
    times: list[float] = []
    started = time.perf_counter()
    finished = True
    with CountingWrites() as writes:
        while True:
            issued = driver.next_job()
            if issued is None:
                break
            job, _ = issued
            for epoch in range(job.start + 1, job.resource + 1):
                checkpoint = str(folder.trial_dir(job.trial_id) / f"epoch-{epoch:04d}.pt")
                value = 0.1 * epoch * (1 + job.trial_id % 7)
                metrics = {"epoch": epoch, "val_map": value, "checkpoint": checkpoint}
                driver.report(job.trial_id, metrics, node="bench")
                times.append(time.perf_counter())
            if time.perf_counter() - started > max_seconds:
                finished = False
                break
        driver.maybe_flush(force=True)
    seconds = time.perf_counter() - started
    tail = max(1, len(times) // 10)
    tail_rate = (tail - 1) / (times[-1] - times[-tail]) if tail > 1 and times[-1] > times[-tail] else None
    resumes = []
    for _ in range(repeats):
        begun = time.perf_counter()
        fresh = StudyDriver(spec, folder, core_from_spec(spec))
        fresh.restore(load_state(folder))
        resumes.append(time.perf_counter() - begun)
    return {
        "trials": trials,
        "trials_made": driver.num_trials(),
        "finished": finished,
        "decisions": len(times),
        "seconds": round(seconds, 2),
        "decisions_per_s": round(len(times) / seconds),
        "decisions_per_s_at_end": round(tail_rate) if tail_rate else None,
        "state_bytes": state_bytes(folder),
        "bytes_written": writes.bytes,
        "resume_s": round(statistics.median(resumes), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--repeats", type=int, default=3, help="resume timings per size (median)")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="cap on one study's driving time")
    parser.add_argument("--json-out", type=Path, default=Path("benchmarks/results/driver_scale.json"))
    args = parser.parse_args()
    result: dict[str, Any] = {
        "benchmark": "driver_scale",
        "scheduler": "asha",
        "searcher": "random",
        "runs": [],
    }
    root = Path(tempfile.mkdtemp(prefix="agvp-scale-"))
    try:
        for trials in args.trials:
            run = drive(root, trials, args.max_seconds, args.repeats)
            print(json.dumps(run), flush=True)
            result["runs"].append(run)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    save_json(result, args.json_out)


if __name__ == "__main__":
    main()
