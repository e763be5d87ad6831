"""Run or resume a study on Ray Tune: the embedded local Ray by default, or an existing cluster.

``run_study(spec)`` creates ``<storage.root>/<name>/``, starts Ray (``ray.init`` with the study's CPU count
and its temp dir under the results root; or ``address=...`` to join a cluster), checks that one trial's
resources fit on some node (a GPU request on a CPU-only cluster would otherwise leave trials pending
forever), runs the Tuner, and finishes the study folder: metadata, best configuration YAML, results flushed.
``resume_study(folder)`` does the same from the folder's own ``study.yaml`` and ``state.json``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpo.faults import fault_point
from hpo.ray_backend.driver import StudyDriver, driver_identity, load_state
from hpo.ray_backend.trainable import AGVP_KEY
from hpo.schedulers.base import Job
from hpo.study.analysis import best_config_yaml, best_trials
from hpo.study.build import RAY_NATIVE, core_from_spec, trainer_settings
from hpo.study.folder import StudyFolder
from hpo.study.loader import dump_study, load_study
from hpo.study.spec import StudySpec
from trainers.errors import AgvpError

#: progress(summary): called about twice a second while the study runs, with ``StudyDriver.summary()``
#: plus ``concurrency`` and ``stopping`` (why the study is stopping early, or None).
Progress = Callable[[dict[str, Any]], None]
#: Ray's Unix sockets live under its temp dir; their paths must stay below 108 bytes.
_MAX_TEMP_DIR = 40


class RunError(AgvpError):
    """A study cannot start or resume (bad folder, missing data, resources no node has)."""


@dataclass(frozen=True)
class StudyOutcome:
    folder: StudyFolder
    status: str  # finished | stopped
    reason: str
    elapsed: float
    total_resource: int
    trials: int


def ray_temp_dir(root: Path) -> Path:
    """Ray's temp dir: under the results root when that path is short enough for Ray's sockets, else a
    folder named after the root in the system temp dir (``$TMPDIR``), else in ``/tmp``; if none is short
    enough, a :class:`RunError` says what to set."""
    own = root.resolve() / ".ray"
    digest = hashlib.sha1(str(own).encode()).hexdigest()[:10]
    name = f"agvp-ray-{digest}"
    candidates = [own, Path(tempfile.gettempdir()) / name, Path("/tmp") / name]
    for candidate in candidates:
        if len(str(candidate)) <= _MAX_TEMP_DIR and (candidate.parent.is_dir() or candidate == own):
            return candidate
    raise RunError(
        f"Ray's socket paths must stay under 108 bytes, but {own} and the system temp dir "
        f"({tempfile.gettempdir()}) are too long: set TMPDIR to a short writable folder"
    )


def check_inputs(spec: StudySpec) -> None:
    """Fail before Ray starts when the trainer's data or weights are not where the study says."""
    trainer = spec.trainer
    if trainer.name == "tfclip" and trainer.data is not None and not Path(trainer.data).is_dir():
        raise RunError(
            f"trainer.data: {trainer.data} is not a folder (generate one: agvp-hpo data synth PATH)"
        )
    if trainer.weights is not None and not Path(trainer.weights).is_file():
        raise RunError(f"trainer.weights: {trainer.weights} does not exist")


def start_ray(spec: StudySpec, folder: StudyFolder, address: str | None) -> None:
    import ray

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "100")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # Ctrl-C must raise KeyboardInterrupt here (status "stopped", running trials resumable), not make Ray
    # Tune end its loop quietly, which would look like trainers that returned early.
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    common: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
    if address is not None:
        ray.init(address=address, **common)
    else:
        _private_cluster_token()
        temp = ray_temp_dir(spec.storage.root)
        temp.mkdir(parents=True, exist_ok=True)
        ray.init(
            address="local",
            num_cpus=spec.execution.cpus or os.cpu_count() or 1,
            include_dashboard=False,
            _temp_dir=str(temp),
            **common,
        )
    fault_point("ray-started")


def _private_cluster_token() -> None:
    """Give the embedded local Ray a token of its own, in this process's environment.

    Ray 2.60 starts a local cluster with token authentication and, when no token is configured, writes a new
    one to ``~/.ray/auth_token``: every fresh machine would get a file in the user's home. The embedded
    cluster is private to this driver (its nodes are this process's children, which inherit the
    environment), so a random per-process token does the job and nothing is written. A token the user
    configured (``RAY_AUTH_TOKEN`` / ``RAY_AUTH_TOKEN_PATH``) or ``RAY_AUTH_MODE=disabled`` is respected.
    """
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    reset_ray_token_cache()


def reset_ray_token_cache() -> None:
    """Make Ray re-read its token from the environment (it caches the first one it loads per process)."""
    try:
        from ray._raylet import AuthenticationTokenLoader
    except ImportError:  # a Ray without token authentication
        return
    AuthenticationTokenLoader.instance().reset_cache()


def cluster_concurrency(spec: StudySpec) -> int:
    """How many trials fit at once on the cluster's alive nodes; raises if not even one does."""
    import ray

    cpu, gpu = spec.resources.cpu, spec.resources.gpu
    capacity = 0
    largest = {"CPU": 0.0, "GPU": 0.0}
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        resources = node.get("Resources", {})
        node_cpu, node_gpu = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
        largest = {"CPU": max(largest["CPU"], node_cpu), "GPU": max(largest["GPU"], node_gpu)}
        fits = math.floor(node_cpu / cpu + 1e-9)
        if gpu > 0:
            fits = min(fits, math.floor(node_gpu / gpu + 1e-9))
        capacity += max(0, fits)
    if capacity == 0:
        if gpu > largest["GPU"]:
            raise RunError(
                f"resources.gpu is {gpu:g} per trial, but no Ray node has that many GPUs (largest: "
                f"{largest['GPU']:g}); trials would wait forever. Use gpu: 0 on CPU-only machines"
            )
        raise RunError(
            f"resources.cpu is {cpu:g} per trial, but no Ray node has that many CPUs (largest: "
            f"{largest['CPU']:g}); lower resources.cpu or raise execution.cpus"
        )
    limit = spec.execution.max_concurrent
    return min(capacity, limit) if limit is not None else capacity


def refuse_existing(spec: StudySpec, folder: StudyFolder, *, resumable: bool) -> None:
    """A new study never writes into an existing study's folder."""
    if folder.exists():
        hint = (
            f"resume it with `agvp-hpo resume {folder.path}`, or pass --name NEW"
            if resumable
            else "pass --name NEW"
        )
        raise RunError(f"study {spec.name!r} already exists in {folder.path}; {hint}")


def create_study_folder(spec: StudySpec, folder: StudyFolder, **metadata: Any) -> None:
    """``study.yaml`` and the first ``study.json`` of a new study (name, spec, start time, ``metadata``)."""
    folder.path.mkdir(parents=True, exist_ok=True)
    folder.spec_file.write_text(dump_study(spec), encoding="utf-8")
    folder.store.write_metadata(
        {"name": spec.name, "spec": spec.to_dict(), "started": time.time(), **metadata}
    )
    fault_point("folder-created")


def write_metadata(folder: StudyFolder, summary: dict[str, Any] | None, **fields: Any) -> None:
    """Update ``study.json`` with ``fields`` and, from a progress ``summary`` (``StudyDriver.summary()`` or
    the native recorder's), the budget used, trials by state and the best so far."""
    extra: dict[str, Any] = {"updated": time.time()}
    if summary is not None:
        best = summary["best"]
        extra.update(
            budget_used={
                "epochs": summary["total_resource"],
                "fbe": round(summary["total_resource"] / summary["max_resource"], 3),
                "trials": summary["trials"],
                "seconds": round(summary["elapsed"], 1),
            },
            trials=summary["counts"],
            best={"value": best[0], "trial_id": best[1], "resource": best[2]} if best else None,
        )
    folder.store.update_metadata(**extra, **fields)


def run_study(
    spec: StudySpec,
    *,
    address: str | None = None,
    progress: Progress | None = None,
    resume: bool = False,
) -> StudyOutcome:
    """Run ``spec`` to its end (or resume it); see the module docstring."""
    folder = StudyFolder.of(spec.storage.root, spec.name)
    if spec.scheduler.kind in RAY_NATIVE:
        from hpo.ray_backend.native import run_native

        if resume:
            raise RunError(
                f"scheduler {spec.scheduler.kind} is Ray's own, whose state Ray does not persist "
                "(ray-project/ray#30838): it cannot resume; start a new study"
            )
        return run_native(spec, folder, address=address, progress=progress)
    core = core_from_spec(spec)
    check_inputs(spec)
    driver = StudyDriver(spec, folder, core)
    if resume:
        state = load_state(folder.state_file)
    else:
        refuse_existing(spec, folder, resumable=True)
    import ray

    start_ray(spec, folder, address)
    try:
        concurrency = cluster_concurrency(spec)  # before any file is written: a bad request leaves nothing
        if resume:
            driver.restore(state)
            folder.stop_file.unlink(missing_ok=True)
        else:
            create_study_folder(spec, folder, sessions=0)
            driver.snapshot()
        metadata = folder.store.read_metadata()
        write_metadata(
            folder,
            driver.summary(),
            status="running",
            error=None,
            ended=None,
            reason=None,
            sessions=int(metadata.get("sessions", 0)) + 1,
            **driver_identity(),
        )
        try:
            reason = _tune(spec, folder, driver, concurrency, progress)
        except BaseException as error:
            driver.maybe_flush(force=True)
            interrupted = isinstance(error, KeyboardInterrupt)
            write_metadata(
                folder,
                driver.summary(),
                status="stopped" if interrupted else "failed",
                reason="interrupted" if interrupted else None,
                error=None if interrupted else f"{type(error).__name__}: {error}",
                ended=time.time(),
            )
            raise
    finally:
        ray.shutdown()
    driver.maybe_flush(force=True)
    folder.store.compact()
    status = "finished" if reason is None else "stopped"
    write_metadata(
        folder, driver.summary(), status=status, reason=reason or "budget spent", ended=time.time()
    )
    fault_point("finishing")
    write_best_yaml(spec, folder)
    return StudyOutcome(
        folder,
        status,
        reason or "budget spent",
        driver.elapsed,
        driver.total_resource,
        driver.core.num_trials,
    )


def resume_study(
    folder: StudyFolder, *, address: str | None = None, progress: Progress | None = None
) -> StudyOutcome:
    if not folder.spec_file.is_file():
        raise RunError(f"{folder.path}: not a study folder (no {folder.spec_file.name})")
    metadata = folder.store.read_metadata()
    if metadata.get("status") == "finished":
        raise RunError(f"study {folder.name!r} has finished; nothing to resume")
    from hpo.study.folder import driver_alive

    if metadata.get("status") == "running" and driver_alive(metadata):
        raise RunError(f"study {folder.name!r} is running (driver pid {metadata.get('driver_pid')})")
    spec = load_study(folder.spec_file)
    if spec.storage.root.resolve() != folder.path.parent.resolve():
        spec = spec.model_copy(
            update={"storage": spec.storage.model_copy(update={"root": folder.path.parent})}
        )
    return run_study(spec, address=address, progress=progress, resume=True)


def write_best_yaml(spec: StudySpec, folder: StudyFolder) -> Path | None:
    best = best_trials(folder.store.read(), spec.objective.mode, k=1)
    if best.empty:
        return None
    text = best_config_yaml(spec, best.iloc[0]["params"])
    from hpo.store import atomic_write_bytes

    atomic_write_bytes(folder.best_file, text.encode())
    return folder.best_file


def trial_payload(
    spec: StudySpec,
    folder: StudyFolder,
    settings: dict[str, Any],
    *,
    trial_id: int,
    params: dict[str, Any],
    start: int,
    target: int,
    resume_from: str | None,
) -> dict[str, Any]:
    """The Ray trial config of one job (read by :func:`hpo.ray_backend.trainable.run_job`)."""
    return {
        AGVP_KEY: {
            "trial_id": trial_id,
            "trial_dir": str(folder.trial_dir(trial_id).resolve()),
            "trainer": settings,
            "params": params,
            "metric": spec.objective.metric,
            "start": start,
            "target": target,
            "resume_from": resume_from,
        }
    }


def make_tuner(
    spec: StudySpec,
    folder: StudyFolder,
    *,
    searcher: Any,
    scheduler: Any,
    stopper: Any,
    on_step: Callable[[], None],
    session: int,
) -> Any:
    """The Tuner every backend flavour uses: our trainable with the study's resources and retries, Ray's
    own loggers and console output off (the CLI draws its own view), storage in ``<study>/ray``."""
    from ray import tune

    from hpo.ray_backend.adapter import StepCallback
    from hpo.ray_backend.trainable import run_job

    def trial_name(trial: Any) -> str:
        job = trial.config[AGVP_KEY]
        return f"trial{job['trial_id']:05d}-e{job['start']}-{job['target']}"

    return tune.Tuner(
        tune.with_resources(run_job, {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}),
        param_space={},
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=-1,
            reuse_actors=True,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_name,
        ),
        run_config=tune.RunConfig(
            name=f"session-{session}",
            storage_path=str(folder.ray_dir.resolve()),
            stop=stopper,
            failure_config=tune.FailureConfig(max_failures=spec.execution.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            callbacks=[StepCallback(on_step)],
            verbose=0,
            log_to_file=False,
        ),
    )


def _tune(
    spec: StudySpec, folder: StudyFolder, driver: StudyDriver, concurrency: int, progress: Progress | None
) -> str | None:
    """Run the Tuner until the core has nothing left; returns why it stopped early (None: it finished)."""
    from hpo.ray_backend.adapter import CoreScheduler, JobSearcher, StudyStop, StudyStopper, throttle

    settings = trainer_settings(spec)

    def payload(job: Job, resume_from: str | None) -> dict[str, Any]:
        return trial_payload(
            spec,
            folder,
            settings,
            trial_id=job.trial_id,
            params=dict(job.config),
            start=job.start,
            target=job.resource,
            resume_from=resume_from,
        )

    stop = StudyStop(driver, spec.budget.wall_clock, folder.stop_file)
    searcher = JobSearcher(driver, payload, concurrency, stop)
    display_due, metadata_due = throttle(0.5), throttle(2.0)

    def on_step() -> None:
        driver.maybe_flush()
        if metadata_due():
            write_metadata(folder, driver.summary())
        if progress is not None and display_due():
            progress({**driver.summary(), "concurrency": concurrency, "stopping": stop.reason})

    tuner = make_tuner(
        spec,
        folder,
        searcher=searcher,
        scheduler=CoreScheduler(driver, searcher, stop),
        stopper=StudyStopper(stop.check),
        on_step=on_step,
        session=driver.session,
    )
    driver.start_clock()
    tuner.fit()
    if progress is not None:
        progress({**driver.summary(), "concurrency": concurrency, "stopping": stop.reason})
    if stop.reason is not None:
        return stop.reason
    if not driver.done:
        return "Ray Tune ended before the scheduler did"
    return None
