"""The Ray Tune function trainable: one job of one trial, around the trainer protocol.

The Ray trial's config carries everything under :data:`AGVP_KEY` (trial id, study folder, trainer
settings, searched parameters, target epoch, checkpoint to start from). Per epoch the trainer writes
``trials/<id>/work/checkpoint.pt``; the trainable hard-links it to ``trials/<id>/epoch-NNNN.pt`` (keeping
the two newest, so the epoch the driver last snapshotted always exists) and reports the metrics to Ray with
a checkpoint: a small folder holding a pointer to that file. Ray restores that pointer when it retries a
crashed trial (``max_failures``) or resumes a trial its own HyperBand paused; a job the driver starts from
a checkpoint names the file directly. Model weights are written once, on the study folder (which must be
shared by all nodes, as Ray's ``storage_path`` must be in Ray 2.x), never copied per report.
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
KEEP_EPOCH_FILES = 2


def epoch_file(trial_dir: Path, epoch: int) -> Path:
    return trial_dir / f"epoch-{epoch:04d}.pt"


def keep_epoch_checkpoint(trial_dir: Path, source: str | None, epoch: int) -> Path | None:
    """Link (or copy) the trainer's checkpoint to ``epoch-NNNN.pt``; drop all but the newest two."""
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
    epochs = sorted(trial_dir.glob("epoch-*.pt"))
    for old in epochs[:-KEEP_EPOCH_FILES]:
        old.unlink(missing_ok=True)
    return target


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
        saved = keep_epoch_checkpoint(trial_dir, result.get("checkpoint"), epoch)
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
