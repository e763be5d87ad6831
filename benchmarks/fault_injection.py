"""Is "resume is a promise" (DESIGN principle 3) kept under every fault? Seeded rounds of faults injected into
real ``agvp-hpo run`` / ``resume`` processes (the ``synthetic`` trainer, embedded Ray), then verified.

Every fault lands at a named point of the driver's write paths (:mod:`hpo.faults`: the process signals
itself the n-th time it gets there), not after a sleep, so narrow windows are hit on purpose:

* ``kill``: SIGKILL / SIGTERM / SIGINT at a random visit of ``ray-started``, ``state-written`` or
  ``part-written``, for asha, hyperband, mfho and mfho-hedge;
* ``released``, ``compaction``, ``folder-created``, ``finishing``: SIGKILL inside those windows;
* ``concurrent-resume``: after a kill, two ``resume`` of the study at once;
* ``truncated-state``: after a kill, ``state.json`` cut to half its length;
* ``torn-log``: after a kill, the last event of ``state.events.jsonl`` cut in half (a kill inside its
  write);
* ``deleted-part``: after a kill, one result part file deleted (data loss from outside: the target is
  that ``resume`` notices and refuses; then ``agvp-hpo check --repair`` records the loss and the study
  resumes to its end - its lost rows are reported, not counted as a fault).

After each round the study is resumed until it finishes (at most 3 times), then verified against an
uninterrupted run of the same study (trials run one at a time, so both make the same decisions): rows
lost, rows duplicated (also as plain ``pandas.read_parquet`` on the results folder sees them), scheduler
state inconsistent with the rows (``hpo.study.check``), trials failed, study finished. One line per round,
totals, JSON to ``benchmarks/results/fault_injection.json``.

    python benchmarks/fault_injection.py [--seed 0] [--scenarios kill,release,...] [--schedulers asha,...]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from save_json import save_json  # benchmarks/ is on sys.path when a script runs

from hpo.faults import FAULT_ENV
from hpo.session.driver import events_file
from hpo.study.check import check_study
from hpo.study.folder import StudyFolder

SCHEDULERS = ("asha", "hyperband", "mfho", "mfho-hedge")
SCENARIOS = (
    "kill",
    "released",
    "compaction",
    "folder-created",
    "finishing",
    "concurrent-resume",
    "truncated-state",
    "torn-log",
    "deleted-part",
)
TIMEOUT = 300


def study(root: Path, name: str, scheduler: str) -> dict[str, Any]:
    return {
        "name": name,
        "space": {"x": {"uniform": [0.0, 1.0]}, "y": {"choice": ["a", "b", "c"]}},
        "fidelity": {"min": 1, "max": 9, "eta": 3},
        "scheduler": {"kind": scheduler},
        "searcher": {"kind": "random", "seed": 3},
        "budget": {"max_trials": 9},
        "execution": {"cpus": 1, "max_concurrent": 1},
        "resources": {"cpu": 1},
        "trainer": {"name": "synthetic", "overrides": {"epoch_seconds": 0.0}},
        "storage": {"root": str(root)},
    }


def _cli(args: list[str], *, cwd: Path, fault: str | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop(FAULT_ENV, None)
    if fault:
        env[FAULT_ENV] = fault
    return subprocess.Popen(
        [sys.executable, "-m", "hpo.cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the driver and the Ray it starts form one process group
    )


def _wait(process: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        _, err = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
    # Ray processes of a killed driver die with their group, as on a crashed machine (only ours).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    return process.returncode, (err or "").strip().splitlines()[-1:][0] if (err or "").strip() else ""


def _resume_until_finished(folder: StudyFolder, spec: Path, cwd: Path, log: list[str]) -> None:
    """What a user does after a crash: ``resume`` the study, or ``run`` it again if it never got going."""
    for _ in range(3):
        try:
            if folder.store.read_metadata().get("status") == "finished":
                return
        except Exception as error:  # an unreadable folder is what resume must cope with
            log.append(f"metadata: {error}")
        if folder.exists():
            code, last = _wait(_cli(["resume", str(folder.path)], cwd=cwd))
            log.append(f"resume -> {code} {last}")
        else:
            code, last = _wait(_cli(["run", str(spec)], cwd=cwd))
            log.append(f"run again -> {code} {last}")


def _reports(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[rows["status"] != "failed"] if not rows.empty else rows


def verify(folder: StudyFolder, reference: pd.DataFrame) -> dict[str, Any]:
    """Rows lost / duplicated, problems ``agvp-hpo check`` finds, failures, and whether the study finished."""
    rows = folder.store.read()
    reports = _reports(rows)
    key = ["trial_id", "resource"]
    got = set(map(tuple, reports[key].itertuples(index=False))) if not reports.empty else set()
    want = set(map(tuple, reference[key].itertuples(index=False)))
    plain = len(pd.read_parquet(folder.store.results_dir)) if not rows.empty else 0
    duplicated = int(reports.duplicated(key).sum()) + max(0, plain - len(rows)) if not rows.empty else 0
    problems = check_study(folder) if folder.exists() else []
    try:
        finished = folder.store.read_metadata().get("status") == "finished"
    except Exception:
        finished = False
    return {
        "lost": len(want - got),
        "unexpected": len(got - want),
        "duplicated": duplicated,
        "inconsistent": len([p for p in problems if p.kind != "checkpoint-orphan" and not p.warning]),
        "orphans": len([p for p in problems if p.kind == "checkpoint-orphan"]),
        "failed": int((rows["status"] == "failed").sum()) if not rows.empty else 0,
        "finished": finished,
        "best_yaml": folder.best_file.is_file(),
        "problems": [p.message for p in problems][:5],
    }


def one_round(
    work: Path, number: int, scenario: str, scheduler: str, rng: random.Random, reference: pd.DataFrame
) -> dict[str, Any]:
    root = work / f"r{number:02d}"
    name = f"s{number:02d}"
    spec = root / f"{name}.yaml"
    root.mkdir(parents=True)
    spec.write_text(yaml.safe_dump(study(root / "results", name, scheduler)))
    folder = StudyFolder.of(root / "results", name)
    log: list[str] = []
    detail: dict[str, Any] = {"round": number, "scenario": scenario, "scheduler": scheduler}
    if scenario == "kill":
        point = rng.choice(["ray-started", "state-written", "part-written"])
        nth = 1 if point == "ray-started" else rng.randint(1, 6 if point == "part-written" else 40)
        fault = f"{point}:{nth}:{rng.choice(['KILL', 'TERM', 'INT'])}"
    elif scenario in ("released", "compaction", "folder-created", "finishing"):
        fault = f"{scenario}:1:KILL"
    else:  # a plain kill first, then the scenario's damage
        fault = f"state-written:{rng.randint(10, 30)}:KILL"
    detail["fault"] = fault
    code, last = _wait(_cli(["run", str(spec)], cwd=root, fault=fault))
    log.append(f"run [{fault}] -> {code} {last}")
    noticed = None
    if scenario == "concurrent-resume":
        first, second = (_cli(["resume", str(folder.path)], cwd=root) for _ in range(2))
        for process in (first, second):
            code, last = _wait(process)
            log.append(f"concurrent resume -> {code} {last}")
    elif scenario == "truncated-state" and folder.state_file.is_file():
        text = folder.state_file.read_bytes()
        folder.state_file.write_bytes(text[: len(text) // 2])
    elif scenario == "torn-log" and events_file(folder).is_file():
        lines = events_file(folder).read_bytes().splitlines(keepends=True)
        if len(lines) > 1:  # a header and at least one event
            lines[-1] = lines[-1][: len(lines[-1]) // 2]
            events_file(folder).write_bytes(b"".join(lines))
    elif scenario == "deleted-part":
        parts = sorted(folder.store.results_dir.glob("*part-*.parquet")) if folder.path.exists() else []
        if parts:
            parts[0].unlink()
            code, last = _wait(_cli(["resume", str(folder.path)], cwd=root))
            log.append(f"resume after deleting {parts[0].name} -> {code} {last}")
            problems = check_study(folder) if folder.exists() else []
            noticed = code != 0 and any(p.kind in ("parts-missing", "rows-missing") for p in problems)
            # the way back: record the loss, then resume to the end (the lost rows stay lost)
            code, last = _wait(_cli(["check", "--repair", str(folder.path)], cwd=root))
            log.append(f"check --repair -> {code} {last}")
    _resume_until_finished(folder, spec, root, log)
    detail.update(verify(folder, reference), noticed=noticed, log=log)
    shutil.rmtree(root, ignore_errors=True)
    return detail


def reference_rows(work: Path, scheduler: str) -> pd.DataFrame:
    root = work / f"q{scheduler[0]}"  # short: the embedded Ray keeps its temp dir inside
    root.mkdir(parents=True)
    spec = root / "ref.yaml"
    spec.write_text(yaml.safe_dump(study(root / "results", "ref", scheduler)))
    code, last = _wait(_cli(["run", str(spec)], cwd=root))
    if code != 0:
        raise SystemExit(f"the uninterrupted {scheduler} study failed: {last}")
    rows = _reports(StudyFolder.of(root / "results", "ref").store.read())
    shutil.rmtree(root, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--schedulers", default=",".join(SCHEDULERS))
    parser.add_argument("--kill-rounds", type=int, default=6, help="kill rounds per scheduler")
    parser.add_argument("--json-out", type=Path, default=Path("benchmarks/results/fault_injection.json"))
    args = parser.parse_args()
    scenarios = args.scenarios.split(",")
    schedulers = args.schedulers.split(",")
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="agvp-fi-", dir="/tmp"))  # short: Ray's socket paths
    started = time.perf_counter()
    rounds: list[dict[str, Any]] = []
    try:
        references = {s: reference_rows(work, s) for s in schedulers}
        plan = [
            (scenario, scheduler)
            for scheduler in schedulers
            for scenario in scenarios
            for _ in range(args.kill_rounds if scenario == "kill" else 1)
        ]
        for number, (scenario, scheduler) in enumerate(plan):
            result = one_round(work, number, scenario, scheduler, rng, references[scheduler])
            rounds.append(result)
            print(
                f"{number:3d} {scenario:18s} {scheduler:9s} {result['fault']:26s} lost {result['lost']} "
                f"dup {result['duplicated']} inconsistent {result['inconsistent']} failed {result['failed']} "
                f"finished {result['finished']} best.yaml {result['best_yaml']}"
                + (f" noticed {result['noticed']}" if result["noticed"] is not None else ""),
                flush=True,
            )
            for line in result["log"]:
                print(f"      {line}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    deleted = [r for r in rounds if r["scenario"] == "deleted-part"]
    totals = {
        "rounds": len(rounds),
        # rows deleted from outside are lost by definition: not counted as the driver's loss
        "lost": sum(r["lost"] for r in rounds if r["scenario"] != "deleted-part"),
        "duplicated": sum(r["duplicated"] for r in rounds),
        "inconsistent": sum(r["inconsistent"] for r in rounds),
        "failed": sum(r["failed"] for r in rounds),
        "not_finished": sum(not r["finished"] for r in rounds),
        "no_best_yaml": sum(not r["best_yaml"] for r in rounds),
        "deleted_part_noticed": f"{sum(bool(r['noticed']) for r in deleted)}/{len(deleted)}",
        "deleted_part_rows_lost": sum(r["lost"] for r in deleted),
        "seconds": round(time.perf_counter() - started),
    }
    print("total: " + ", ".join(f"{k} {v}" for k, v in totals.items()))
    save_json(
        {"benchmark": "fault_injection", "seed": args.seed, "totals": totals, "rounds": rounds}, args.json_out
    )


if __name__ == "__main__":
    main()
