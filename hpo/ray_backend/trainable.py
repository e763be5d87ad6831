"""The Ray Tune function trainable: one job of one trial, around the trainer protocol.

The Ray trial's config carries everything under :data:`AGVP_KEY` (trial id, study folder, trainer settings,
searched parameters, target epoch, checkpoint to start from). Per epoch the trainer writes
``trials/<id>/work/checkpoint.pt``; the trainable hard-links it to ``trials/<id>/epoch-NNNN.pt`` and reports
the metrics to Ray with a checkpoint: a small folder holding a pointer to that file. Ray restores that
pointer when it retries a crashed trial (``max_failures``) or resumes a trial its own HyperBand paused; a
job the driver starts from a checkpoint names the file directly. Model weights are written once, on the
study folder (which must be shared by all nodes, as Ray's ``storage_path`` must be in Ray 2.x), never copied
per report.

Which epoch files exist (a file is deleted only once nothing can restore it): while a report is being
recorded, the new file and the one the driver's saved state and Ray name until then (a crash retried by
``max_failures`` restores Ray's latest registered checkpoint; a driver resumed after a kill restarts from
the file its saved state names); the older one goes with the next epoch's file. A job's last report is
pruned to its one file by the driver's side once the state naming it is durable, so a paused trial keeps
one file: the one a promotion from the pause continues. Trials that are stopped or failed lose their folder
to the driver once its state says so (:mod:`hpo.session.driver`); a completed trial keeps its last file.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hpo.results import ERROR_KEY, TRIAL_KEY
from trainers.protocol import Budget, NonFiniteLossError, get_trainer

AGVP_KEY = "agvp"
POINTER_FILE = "agvp_checkpoint.json"


def epoch_file(trial_dir: Path, epoch: int) -> Path:
    return trial_dir / f"epoch-{epoch:04d}.pt"


def keep_epoch_checkpoint(
    trial_dir: Path, source: str | None, epoch: int, *, named: set[Path] | frozenset[Path] = frozenset()
) -> Path | None:
    """Link (or copy) the trainer's checkpoint to ``epoch-NNNN.pt`` and drop every other epoch file but
    ``named`` (those the driver's saved state or Ray may still restore; see :func:`run_job`)."""
    if not source:
        return None
    target = epoch_file(trial_dir, epoch)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    try:
        os.link(source, temporary)
    except OSError:  # a file system without hard links
        shutil.copyfile(source, temporary)
    os.replace(temporary, target)
    prune_epoch_files(trial_dir, keep={target, *named})
    return target


def prune_epoch_files(trial_dir: Path, keep: set[Path] | frozenset[Path]) -> None:
    """Delete the epoch files of ``trial_dir`` whose names are not in ``keep``."""
    names = {Path(path).name for path in keep}
    for path in trial_dir.glob("epoch-*.pt"):
        if path.name not in names:
            path.unlink(missing_ok=True)


def run_job(config: dict[str, Any]) -> None:
    """Ray Tune function trainable (see the module docstring)."""
    import ray
    from ray import tune

    payload = config[AGVP_KEY]
    trial_id = int(payload["trial_id"])
    trial_dir = Path(payload["trial_dir"])
    settings = payload["trainer"]
    params = payload["params"]
    metric = payload["metric"]
    resume_from: str | None = payload.get("resume_from")
    restored = tune.get_checkpoint()
    if restored is not None:
        with restored.as_directory() as folder:
            resume_from = json.loads((Path(folder) / POINTER_FILE).read_text(encoding="utf-8"))["path"]
    # IP plus the Ray node id: two Ray nodes may share a host (and so an IP).
    node = f"{ray.util.get_node_ip_address()}/{ray.get_runtime_context().get_node_id()[:8]}"
    trial_dir.mkdir(parents=True, exist_ok=True)
    target = int(payload["target"])
    budget = Budget.from_dict(payload["budget"])
    # The epoch files someone may restore from until this job's first report is recorded: the file the
    # driver started the job from (its saved state names it); on a Ray retry (Ray restores its latest
    # registered checkpoint) or a retrain (the state names the old rung's file), whatever is there.
    named: set[Path] = set()
    if restored is not None or (resume_from is None and int(payload["start"]) > 0):
        named = set(trial_dir.glob("epoch-*.pt"))
    elif resume_from:
        named = {Path(resume_from)}
    at_end = bool(payload["report_at_end"])

    def report(result: dict[str, Any]) -> None:
        # Every row carries both fidelity dimensions; with a data fraction the scheduler's unit is the
        # job's target (a whole schedule), so only the schedule's last epoch reports, as the target.
        result = {
            **result,
            "fidelity_epochs": int(result["epoch"]),
            "fidelity_data_fraction": budget.data_fraction,
        }
        if at_end:
            if int(result["epoch"]) < budget.epochs:
                return
            result["epoch"] = target
        epoch = int(result["epoch"])
        saved = keep_epoch_checkpoint(trial_dir, result.get("checkpoint"), epoch, named=named)
        metrics = {key: value for key, value in result.items() if key != "checkpoint"}
        metrics.update({"checkpoint": str(saved or ""), TRIAL_KEY: trial_id, "node": node})
        if saved is None:
            tune.report(metrics)
            return
        # In the trial's own folder, not /tmp: a trial stopped inside tune.report never leaves this block,
        # and what it leaves behind then belongs to the study, not to the machine.
        with tempfile.TemporaryDirectory(prefix=".pointer-", dir=trial_dir) as folder:
            pointer = {"path": str(saved), "epoch": epoch, "trial_id": trial_id}
            (Path(folder) / POINTER_FILE).write_text(json.dumps(pointer), encoding="utf-8")
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
        # tune.report returns only when Ray asks for the next result, after its controller recorded this
        # one (the driver logged a state naming ``saved``; Ray registered it). The driver's log is made
        # durable about once a second, not per report, so the file before ``saved`` goes only with the next
        # epoch's link (a power loss may take the driver back one report). A report that does not return
        # (the job's last: PAUSE/STOP end the Ray trial) leaves the older file to the driver's side
        # (adapter.CoreScheduler prunes once the state naming ``saved`` is durable).
        named.clear()
        named.add(saved)

    trainer = get_trainer(settings["name"])
    try:
        trainer.fit(
            settings,
            params,
            budget=budget,
            checkpoint_dir=trial_dir / "work",
            resume_from=Path(resume_from) if resume_from else None,
            report=report,
        )
    except NonFiniteLossError as error:
        # Deterministic: a retry from the checkpoint would diverge again. Report it as a failure instead.
        tune.report(
            {ERROR_KEY: str(error), "epoch": error.epoch, metric: math.nan, TRIAL_KEY: trial_id, "node": node}
        )
