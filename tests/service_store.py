"""A results root with real study folders, written by the real driver without Ray (for service tests)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

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


def write_study(root: Path, name: str, *, status: str = "finished", **changes: Any) -> StudyFolder:
    """Run a study's core to its end on the synthetic curve, writing rows and metadata as ``run`` does."""
    spec = synthetic_spec(root, name, **changes)
    folder = StudyFolder.of(root, name)
    folder.path.mkdir(parents=True)
    folder.spec_file.write_text(dump_study(spec))
    driver = StudyDriver(spec, folder, core_from_spec(spec), flush_seconds=0.0)
    while True:
        issued = driver.next_job()
        if issued is None:
            if driver.done:
                break
            continue
        job, _ = issued
        for epoch in range(job.start + 1, job.resource + 1):
            metrics = {"epoch": epoch, "val_map": curve(job.config, epoch), "checkpoint": f"ckpt-{epoch}"}
            decision = driver.report(job.trial_id, metrics)
            if decision.value != "continue":
                break
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
