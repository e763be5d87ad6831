"""A results root with real study folders, written by the real driver without Ray (for service tests)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hpo.schedulers.base import Decision
from hpo.session.driver import StudyDriver
from hpo.study import dump_study, parse_study
from hpo.study.build import core_from_spec
from hpo.study.folder import StudyFolder
from hpo.study.lock import StudyLock
from trainers.synthetic import curve

#: Locks of the "running" studies written here; they are released when the test process exits.
HELD: list[StudyLock] = []


def synthetic_spec(root: Path, name: str, **changes: Any) -> Any:
    raw: dict[str, Any] = {
        "name": name,
        "space": {"x": {"uniform": [0.0, 1.0]}, "kind": {"choice": ["a", "b"]}},
        "fidelity": {"min": 1, "max": 9, "eta": 3},
        "scheduler": "asha",
        "budget": {"max_trials": 12},
        "execution": {"cpus": 2},
        "trainer": {"name": "synthetic"},
        "storage": {"root": str(root)},
    }
    raw.update(changes)
    return parse_study(raw)


def drive_serially(
    driver: StudyDriver,
    metrics: Callable[[int, Mapping[str, Any], int], dict[str, float]],
    *,
    reports: int | None = None,
    node: Callable[[int], str] | str = "",
    checkpoint: Callable[[int, int], str] | None = None,
) -> int:
    """Run the driver's jobs one at a time, every epoch reporting ``metrics(trial_id, config, epoch)`` from
    ``node`` (a name, or one per trial) with ``checkpoint(trial_id, epoch)``; stop after ``reports`` reports
    (None: when the core has nothing more). Returns the reports made."""
    done = 0
    while reports is None or done < reports:
        issued = driver.next_job()
        if issued is None:  # one job at a time: nothing issued means nothing runs and the study is over
            break
        job, _ = issued
        where = node(job.trial_id) if callable(node) else node
        for epoch in range(job.start + 1, job.resource + 1):
            reported = {"epoch": epoch, **metrics(job.trial_id, job.config, epoch)}
            if checkpoint is not None:
                reported["checkpoint"] = checkpoint(job.trial_id, epoch)
            decision = driver.report(job.trial_id, reported, node=where)
            done += 1
            if decision is not Decision.CONTINUE or (reports is not None and done >= reports):
                break
    return done


def write_study(
    root: Path,
    name: str,
    *,
    status: str = "finished",
    metrics: Callable[[int, Mapping[str, Any], int], dict[str, float]] | None = None,
    node: Callable[[int], str] | str = "",
    **changes: Any,
) -> StudyFolder:
    """Run a study's core to its end on the synthetic curve (or ``metrics``, see :func:`drive_serially`),
    writing rows and metadata as ``run`` does; a ``running`` study's lock is held (:data:`HELD`)."""
    spec = synthetic_spec(root, name, **changes)
    folder = StudyFolder.of(root, name)
    folder.path.mkdir(parents=True)
    folder.spec_file.write_text(dump_study(spec))
    driver = StudyDriver(spec, folder, core_from_spec(spec), flush_seconds=0.0)
    drive_serially(
        driver,
        metrics or (lambda trial_id, config, epoch: {"val_map": curve(config, epoch)}),
        node=node,
        checkpoint=lambda trial_id, epoch: f"ckpt-{trial_id}-{epoch}",
    )
    driver.maybe_flush(force=True)
    best = driver.best
    folder.store.write_metadata(
        {
            "name": name,
            "spec": spec.to_dict(),
            "status": status,
            "started": time.time() - 60,
            "updated": time.time(),
            "budget_used": {"epochs": driver.total_resource, "trials": driver.core.num_trials},
            "best": {"value": best[0], "trial_id": best[1], "resource": best[2]} if best else None,
        }
    )
    if status == "running":  # as a live driver does: hold the study lock (for the rest of the test process)
        HELD.append(StudyLock(folder.path).acquire())
    return folder
