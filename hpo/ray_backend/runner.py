"""Run or resume a study on Ray Tune: the embedded local Ray by default, or an existing cluster - ONE session
loop for our scheduler cores and for Ray's own schedulers alike.

``run_study(spec)`` takes the study lock (:mod:`hpo.study.lock`), checks the inputs, starts Ray
(``ray.init`` with the study's CPU count and its temp dir under the results root; or ``address=...`` to
join a cluster), checks that one trial's resources fit on some node (a GPU request on a CPU-only cluster
would otherwise leave trials pending forever), creates the study folder (:mod:`hpo.session.lifecycle`),
runs the Tuner, and ends the study: rows stored and compacted, ``best.yaml``, final metadata.
``resume_study(folder)`` does the same from the folder's own ``study.yaml`` and saved state. What differs
between the two kinds of study is only the session object - :class:`~hpo.session.driver.StudyDriver` for
our cores (persisted, resumable) or :class:`~hpo.session.native.NativeRecorder` for ``ray-asha`` /
``ray-hyperband`` (recorded only) - and the Ray searcher and scheduler that drive it
(:mod:`hpo.ray_backend.adapter`).

Nothing is left behind by a study that cannot start: a new study's folder is removed again when the run
fails before the study exists (no ``study.json``).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hpo.faults import fault_point
from hpo.ray_backend.packing import pack_trials
from hpo.ray_backend.trainable import AGVP_KEY
from hpo.schedulers.base import Job
from hpo.session.driver import StudyDriver, driver_identity, load_state
from hpo.session.lifecycle import (
    RunError,
    StudyOutcome,
    create_study_folder,
    end_study,
    fail_study,
    refuse_existing,
    write_metadata,
)
from hpo.session.native import NativeRecorder
from hpo.session.recorder import StopReason, StudySummary
from hpo.study.build import RAY_NATIVE, core_from_spec, trainer_settings
from hpo.study.check import unrecorded_lost_parts
from hpo.study.folder import StudyFolder
from hpo.study.loader import load_study
from hpo.study.lock import StudyLock
from hpo.study.spec import StudySpec
from hpo.study.validate import validate_study
from trainers.protocol import TRAINERS

#: progress(summary): called about twice a second while the study runs.
Progress = Callable[[StudySummary], None]
#: Ray's Unix sockets live under its temp dir; their paths must stay below 108 bytes.
_MAX_TEMP_DIR = 40

__all__ = ["Progress", "RunError", "StudyOutcome", "resume_study", "run_study"]


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
    if trainer.name not in TRAINERS and trainer.data is not None and not Path(trainer.data).exists():
        raise RunError(f"trainer.data: {trainer.data} does not exist")  # your own trainer's data
    weights = trainer.weights if isinstance(trainer.weights, dict) else {"": trainer.weights}
    for backbone, path in weights.items():
        if path is not None and not Path(path).is_file():
            field = f"trainer.weights.{backbone}" if backbone else "trainer.weights"
            raise RunError(f"{field}: {path} does not exist")
    root = spec.storage.root
    if root.exists() and not root.is_dir():
        raise RunError(f"storage.root: {root} is a file, but must be a folder (results go in it)")


def start_ray(spec: StudySpec, folder: StudyFolder, address: str | None) -> None:
    import ray

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "100")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # Ctrl-C must raise KeyboardInterrupt here (status "stopped", running trials resumable), not make Ray
    # Tune end its loop quietly, which would look like trainers that returned early.
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    # Tune's usage tagging imports ray.air.integrations.mlflow, which imports mlflow whenever it is installed
    # (our tracking extra), and importing mlflow 3 writes ~/.config/mlflow/telemetry.json: a study that does
    # not use MLflow must not write into the user's home. A user's own setting is respected.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
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


def run_study(
    spec: StudySpec,
    *,
    address: str | None = None,
    progress: Progress | None = None,
    resume: bool = False,
    source: str | None = None,
) -> StudyOutcome:
    """Run ``spec`` to its end (or resume it); see the module docstring. ``source`` names the study file in
    error messages (the whole study is validated against its trainer first: :mod:`hpo.study.validate`)."""
    folder = StudyFolder.of(spec.storage.root, spec.name)
    validate_study(spec, source=source or f"study {spec.name!r}")
    native = spec.scheduler.kind in RAY_NATIVE
    if native and resume:
        raise RunError(
            f"scheduler {spec.scheduler.kind} is Ray's own, whose state Ray does not persist "
            "(ray-project/ray#30838): it cannot resume; start a new study"
        )
    check_inputs(spec)
    recorder: StudyDriver | NativeRecorder = (
        NativeRecorder(spec, folder) if native else StudyDriver(spec, folder, core_from_spec(spec))
    )
    if not resume:
        refuse_existing(spec, folder, resumable=not native)  # before the lock: no folder for a refusal
    root = spec.storage.root
    before = [path for path in (root, ray_temp_dir(root)) if not path.exists()]
    with StudyLock(folder.path):
        try:
            return _session(spec, folder, recorder, address=address, progress=progress, resume=resume)
        finally:
            if not folder.exists():  # the study never came to be (no study.json): leave nothing behind
                shutil.rmtree(folder.path, ignore_errors=True)
                _remove_created(before)


def _remove_created(created: list[Path]) -> None:
    """Remove what this run created although its study never came to be: its own Ray session folders (Ray
    names them ``session_<time>_<pid>``) in a temp dir this run created, then that dir and the results root
    if they are empty (another study starting beside it may already use them)."""
    for path in reversed(created):  # Ray's temp dir before the root that may contain it
        if not path.is_dir():
            continue
        if path.name.startswith("agvp-ray-") or path.name == ".ray":
            for entry in path.glob(f"session_*_{os.getpid()}"):
                shutil.rmtree(entry, ignore_errors=True)
            latest = path / "session_latest"
            if latest.is_symlink() and not latest.exists():  # it pointed at a session just removed
                latest.unlink()
        if not any(path.iterdir()):
            path.rmdir()


def _session(
    spec: StudySpec,
    folder: StudyFolder,
    recorder: StudyDriver | NativeRecorder,
    *,
    address: str | None,
    progress: Progress | None,
    resume: bool,
) -> StudyOutcome:
    state: dict[str, Any] | None = None
    if resume:
        metadata = folder.store.read_metadata()
        if metadata.get("status") == "finished":
            raise RunError(f"study {folder.name!r} has finished; nothing to resume")
        state = load_state(folder)
        check_rows_present(folder, state, metadata)
    else:
        refuse_existing(spec, folder, resumable=not isinstance(recorder, NativeRecorder))  # under the lock
    import ray

    start_ray(spec, folder, address)
    try:
        # before any file is written: a bad request leaves nothing (auto packing: a probe on a cluster GPU)
        packing = pack_trials(spec)
        concurrency = cluster_concurrency(packing.spec)
        if state is not None and isinstance(recorder, StudyDriver):
            recorder.restore(state)
            folder.stop_file.unlink(missing_ok=True)
        else:
            create_study_folder(spec, folder, recorder, sessions=0)
        sessions = int(folder.store.read_metadata().get("sessions", 0)) + 1
        write_metadata(
            folder,
            recorder.summary(),
            status="running",
            error=None,
            ended=None,
            reason=None,
            sessions=sessions,
            **driver_identity(),
            **packing.metadata,
        )
        try:
            reason, detail = _tune(packing.spec, folder, recorder, concurrency, progress)
        except BaseException as error:
            fail_study(folder, recorder, error)
            raise
    finally:
        ray.shutdown()
    status = end_study(spec, folder, recorder, reason, detail)
    return StudyOutcome(
        folder, status, detail, recorder.elapsed, recorder.total_resource, recorder.num_trials()
    )


def check_rows_present(folder: StudyFolder, state: dict[str, Any], metadata: dict[str, Any]) -> None:
    """Refuse to resume a study whose stored rows are not all there (a part file deleted from outside),
    unless the loss was recorded with ``agvp-hpo check --repair``."""
    missing = unrecorded_lost_parts(folder, state, metadata)
    if missing:
        names = ", ".join(f"part-{n:08d}.parquet" for n in missing)
        raise RunError(
            f"study {folder.name!r}: {names} missing from {folder.store.results_dir} (their rows are lost); "
            f"`agvp-hpo check --repair {folder.path}` records the loss, then resume continues"
        )


def resume_study(
    folder: StudyFolder, *, address: str | None = None, progress: Progress | None = None
) -> StudyOutcome:
    if not folder.spec_file.is_file() or not folder.exists():
        raise RunError(
            f"{folder.path}: not a study folder (no study.json; a run killed before its first step "
            "leaves such a folder: start it again with `agvp-hpo run`)"
        )
    spec = load_study(folder.spec_file)
    if spec.storage.root.resolve() != folder.path.parent.resolve():
        spec = spec.model_copy(
            update={"storage": spec.storage.model_copy(update={"root": folder.path.parent})}
        )
    return run_study(spec, address=address, progress=progress, resume=True, source=str(folder.spec_file))


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
            "budget": spec.fidelity.budget(target).to_dict(),
            # data_fraction: the trainer's epochs are not the scheduler's units; only the job's end reports
            "report_at_end": spec.fidelity.retrains,
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
    concurrency: int | None,
) -> Any:
    """The Tuner every backend flavour uses: our trainable with the study's resources and retries, Ray's
    own loggers and console output off (the CLI draws its own view), storage in ``<study>/ray``.

    ``concurrency`` (our cores' jobs; None for Ray's own schedulers, whose HyperBand holds paused trials
    that a concurrency limit would count) becomes Tune's ``max_concurrent_trials``. Without it Tune allows
    ONE pending trial for a custom searcher (``TUNE_MAX_PENDING_TRIALS_PG`` auto), and since a job is often
    a single epoch, its actor was reused for the next job before a second one started: the study ran one
    trial at a time on any number of workers."""
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
            max_concurrent_trials=concurrency,
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
    spec: StudySpec,
    folder: StudyFolder,
    recorder: StudyDriver | NativeRecorder,
    concurrency: int,
    progress: Progress | None,
) -> tuple[StopReason, str]:
    """Run the Tuner until the scheduler has nothing left; returns why the session ended."""
    from hpo.ray_backend.adapter import (
        ConfigSearcher,
        CoreScheduler,
        JobSearcher,
        RecordingScheduler,
        StudyStop,
        StudyStopper,
        ray_scheduler,
        throttle,
    )

    settings = trainer_settings(spec)

    def payload(
        trial_id: int, params: dict[str, Any], start: int, target: int, resume_from: str | None
    ) -> Any:
        return trial_payload(
            spec,
            folder,
            settings,
            trial_id=trial_id,
            params=params,
            start=start,
            target=target,
            resume_from=resume_from,
        )

    stop = StudyStop(recorder, spec, folder.stop_file)
    if isinstance(recorder, StudyDriver):

        def job_payload(job: Job, resume_from: str | None) -> Any:
            return payload(job.trial_id, dict(job.config), job.start, job.resource, resume_from)

        searcher: Any = JobSearcher(recorder, job_payload, concurrency, stop)
        scheduler: Any = CoreScheduler(recorder, searcher, stop)
    else:
        searcher = ConfigSearcher(
            recorder, lambda number, config: payload(number, config, 0, spec.fidelity.max, None), stop
        )
        scheduler = RecordingScheduler(ray_scheduler(spec), recorder.record)
    display_due, metadata_due = throttle(0.5), throttle(2.0)

    def show() -> None:
        if progress is not None:
            progress(recorder.summary().with_session(concurrency=concurrency, stopping=stop.detail or None))

    def on_step() -> None:
        recorder.maybe_flush()
        if metadata_due():
            write_metadata(folder, recorder.summary())
        if display_due():
            show()

    tuner = make_tuner(
        spec,
        folder,
        searcher=searcher,
        scheduler=scheduler,
        stopper=StudyStopper(stop.check),
        on_step=on_step,
        session=getattr(recorder, "session", 1),
        concurrency=concurrency if isinstance(recorder, StudyDriver) else None,
    )
    recorder.start_clock()
    tuner.fit()
    show()
    if stop.reason is not None:
        return stop.reason, stop.detail
    if isinstance(recorder, StudyDriver) and not recorder.done:
        return StopReason.BACKEND_ENDED, StopReason.BACKEND_ENDED.value
    return StopReason.BUDGET, StopReason.BUDGET.value
