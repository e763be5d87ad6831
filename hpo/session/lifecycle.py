"""A study's life on disk, from creation to its end, in the order that keeps the folder valid at every moment.

- Created: ``study.yaml``, then the first scheduler state, and ``study.json`` LAST. ``study.json`` is what
  makes a folder a study (``status``, ``resume`` and the service look for it), so a driver killed while
  creating one leaves a folder that is not a study yet: ``run`` creates it again (under the study lock).
- Running: ``study.json`` is updated with the budget used, trials by state and the best so far.
- Ended: the last rows are stored and compacted, ``best.yaml`` is written, and only then ``study.json``
  says ``finished`` (or ``stopped``): a finished study always has its best configuration.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from hpo.faults import fault_point
from hpo.session.recorder import Recorder, StopReason, StudySummary
from hpo.study.analysis import best_config_yaml, best_trials, failures
from hpo.study.folder import StudyFolder
from hpo.study.loader import dump_study
from hpo.study.spec import StudySpec
from trainers.atomic import atomic_write_text
from trainers.errors import AgvpError


class RunError(AgvpError):
    """A study cannot start or resume (bad folder, missing data, resources no node has)."""


@dataclass(frozen=True)
class StudyOutcome:
    folder: StudyFolder
    status: str  # finished | stopped | failed (every trial failed)
    reason: str
    elapsed: float
    total_resource: int
    trials: int


def refuse_existing(spec: StudySpec, folder: StudyFolder, *, resumable: bool) -> None:
    """A new study never writes into an existing study's folder."""
    if folder.exists():
        hint = (
            f"resume it with `agvp-hpo resume {folder.path}`, or pass --name NEW"
            if resumable
            else "pass --name NEW"
        )
        raise RunError(f"study {spec.name!r} already exists in {folder.path}; {hint}")


def create_study_folder(spec: StudySpec, folder: StudyFolder, recorder: Recorder, **metadata: Any) -> None:
    """A new study's files, in the order of the module docstring (``study.json`` last)."""
    folder.path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder.spec_file, dump_study(spec))
    fault_point("folder-created")
    recorder.snapshot()
    folder.store.write_metadata(
        {"name": spec.name, "spec": spec.to_dict(), "started": time.time(), **metadata}
    )


def write_metadata(folder: StudyFolder, summary: StudySummary | None, **fields: Any) -> None:
    """Update ``study.json`` with ``fields`` and, from a ``summary``, the budget used, trials by state and
    the best so far."""
    extra: dict[str, Any] = {"updated": time.time()}
    if summary is not None:
        best = summary.best
        extra.update(
            budget_used={
                "epochs": summary.total_resource,
                "fbe": round(summary.total_resource / summary.max_resource, 3),
                "trials": summary.trials,
                "seconds": round(summary.elapsed, 1),
            },
            trials=summary.counts,
            best={"value": best[0], "trial_id": best[1], "resource": best[2]} if best else None,
        )
    folder.store.update_metadata(**extra, **fields)


def write_best_yaml(spec: StudySpec, folder: StudyFolder) -> bool:
    """``best.yaml`` from the rows; False when no trial has a value yet."""
    best = best_trials(folder.store.read(), spec.objective.mode, k=1)
    if best.empty:
        return False
    atomic_write_text(folder.best_file, best_config_yaml(spec, best.iloc[0]["params"]))
    return True


def end_study(
    spec: StudySpec, folder: StudyFolder, recorder: Recorder, reason: StopReason, detail: str
) -> str:
    """Store the last rows, compact, write ``best.yaml``, then mark the study ended (this order). Returns
    the final status: ``failed`` when every trial failed (the first error says why), else the reason's."""
    recorder.maybe_flush(force=True)
    recorder.close(clean=True)
    folder.store.compact()
    write_best_yaml(spec, folder)
    recorder.end_tracking(finished=reason.status == "finished")
    fault_point("finishing")
    summary = recorder.summary()
    status, error = reason.status, None
    if summary.trials > 0 and summary.counts.get("failed", 0) == summary.trials:
        first = failures(folder.store.read(), limit=1)["errors"]
        status, error = "failed", f"every trial failed: {first[0]['message'] if first else 'no message'}"
    write_metadata(folder, summary, status=status, reason=detail, error=error, ended=time.time())
    return status


def fail_study(folder: StudyFolder, recorder: Recorder, error: BaseException) -> None:
    """A session ended by an exception: keep every row, and record why (Ctrl-C and SIGTERM are a stop)."""
    recorder.maybe_flush(force=True)
    recorder.close(clean=False)
    recorder.end_tracking(finished=False)
    interrupted = isinstance(error, (KeyboardInterrupt, SystemExit))
    write_metadata(
        folder,
        recorder.summary(),
        status="stopped" if interrupted else "failed",
        reason=StopReason.INTERRUPTED.value if interrupted else None,
        error=None if interrupted else f"{type(error).__name__}: {error}",
        ended=time.time(),
    )
