"""Each trial one MLflow run (see :mod:`hpo.tracking`), through :class:`mlflow.tracking.MlflowClient` only:
the driver handles many trials at once, so MLflow's global "active run" is never used.

- one experiment per study (named after it), one run per trial named ``trial-00007``, tagged
  ``agvp.study`` and ``agvp.trial_id``; a resumed study finds its runs again by these tags (the newest
  run per trial) and continues them, never opening a second one;
- the trial's configuration as params (once, when the run is created); every ``metric_<name>`` of every
  row as metric ``<name>`` with ``step`` = the row's epoch;
- tags with the latest ``agvp.decision``, ``agvp.rung``, ``agvp.bracket``, ``agvp.status``,
  ``agvp.epoch``, ``agvp.node`` (and ``agvp.error``), and the history ``agvp.decisions``
  (``epoch:decision`` pairs, the newest kept);
- run status: ``FINISHED`` once a trial completed or was stopped, ``FAILED`` once it failed. At the end of
  a session, trials still paused or running are ``FINISHED`` when the study finished (they never run
  again; ``agvp.status`` says ``stopped``; so are runs an earlier session left ``KILLED``) and ``KILLED``
  when it stopped and can resume (a resume sets them ``RUNNING`` again when they next report);
- ``best.yaml`` as an artifact of the best trial's run (tagged ``agvp.best``).

Rows are buffered and sent per run with one ``log_batch`` when the recorder flushes its journal (about
once a second), by one sender thread: a report costs microseconds on the driver, and a slow or
unreachable server (MLflow's HTTP client retries for minutes) never holds the driver up. Only a resume
(finding the earlier runs) and the end of a session (at most :data:`CLOSE_TIMEOUT_S`) wait for MLflow.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hpo.tracking import Tracker, row_metrics, run_name

STUDY_TAG = "agvp.study"
TRIAL_TAG = "agvp.trial_id"
HISTORY_TAG = "agvp.decisions"
#: MLflow's limits (entities per log_batch call; a param value's and a tag value's length).
MAX_BATCH_METRICS = 1000
MAX_BATCH_PARAMS = 100
MAX_BATCH_TAGS = 100
MAX_PARAM_CHARS = 6000
MAX_HISTORY_CHARS = 4000
#: How long the end of a session waits for MLflow to take the last data.
CLOSE_TIMEOUT_S = 60.0
TERMINAL = {"completed": "FINISHED", "stopped": "FINISHED", "failed": "FAILED"}


@dataclass
class _Run:
    """One trial's run: its id once created, and what is buffered for it."""

    trial_id: int
    run_id: str | None = None
    status: str = "RUNNING"  # MLflow's status, as last set
    history: str = ""
    params: dict[str, str] = field(default_factory=dict)
    metrics: list[tuple[str, float, int, int]] = field(default_factory=list)  # key, value, ms, step
    tags: dict[str, str] = field(default_factory=dict)
    terminal: str | None = None  # the status to set once the buffer is sent
    reopen: bool = False  # a run of an earlier session that reports again: RUNNING once more
    dirty: bool = False


@dataclass
class _Batch:
    """What one flush sends for one run (taken out of the run's buffers on the driver's thread)."""

    run: _Run
    params: dict[str, str]
    metrics: list[tuple[str, float, int, int]]
    tags: dict[str, str]
    terminal: str | None
    reopen: bool


class MlflowTracker(Tracker):
    """See the module docstring. ``uri``: MLflow's tracking URI (a server, ``sqlite:///...``, a path)."""

    kind = "MLflow"

    def __init__(self, uri: str, *, study: str) -> None:
        self.uri = uri
        self.study = study
        self.runs: dict[int, _Run] = {}
        self._client: Any = None
        self._experiment: str | None = None
        self._resuming = False
        self._queue: queue.Queue[Any] = queue.Queue()
        self._sender: threading.Thread | None = None
        self._error: BaseException | None = None

    # -- MLflow ---------------------------------------------------------------------------------------

    def _connect(self) -> Any:
        if self._client is None:
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri=self.uri)
            experiment = client.get_experiment_by_name(self.study)
            if experiment is None:
                self._experiment = client.create_experiment(self.study)
            else:
                if experiment.lifecycle_stage == "deleted":
                    client.restore_experiment(experiment.experiment_id)
                self._experiment = experiment.experiment_id
            self._client = client
            if self._resuming:
                self._find_runs()
        return self._client

    def _find_runs(self) -> None:
        """The runs earlier sessions of this study opened, the newest per trial."""
        token = None
        while True:
            page = self._client.search_runs(
                [self._experiment],
                filter_string=f"tags.`{STUDY_TAG}` = '{self.study}'",
                order_by=["attributes.start_time ASC"],
                max_results=1000,
                page_token=token,
            )
            for found in page:
                raw = found.data.tags.get(TRIAL_TAG)
                if raw is None or not raw.isdigit():
                    continue
                self.runs[int(raw)] = _Run(
                    int(raw),
                    run_id=found.info.run_id,
                    status=found.info.status,
                    history=found.data.tags.get(HISTORY_TAG, ""),
                )
            token = page.token
            if not token:
                return

    # -- the tracker ----------------------------------------------------------------------------------

    def resume(self) -> None:
        """Find the runs of earlier sessions now (once, before any trial reports again)."""
        self._resuming = True
        if self._client is None:
            self._connect()
        else:
            self._find_runs()

    def row(self, row: Mapping[str, Any], config: Mapping[str, Any]) -> None:
        trial_id = int(row["trial_id"])
        run = self.runs.get(trial_id)
        if run is None:
            run = self.runs[trial_id] = _Run(trial_id)
            run.params = {str(key): _param(value) for key, value in config.items()}
        if run.status != "RUNNING":
            run.reopen = True  # a run an earlier session left KILLED reports again
        epoch = int(row["resource"])
        stamp = int(float(row.get("timestamp") or 0.0) * 1000)
        run.metrics.extend((name, value, stamp, epoch) for name, value in row_metrics(row).items())
        decision = str(row["decision"])
        run.history = f"{run.history} {epoch}:{decision}".strip()[-MAX_HISTORY_CHARS:].lstrip()
        run.tags.update(
            {
                "agvp.decision": decision,
                "agvp.rung": str(row["rung"]),
                "agvp.bracket": str(row["bracket"]),
                "agvp.status": str(row["status"]),
                "agvp.epoch": str(epoch),
                "agvp.node": str(row.get("node") or ""),
                HISTORY_TAG: run.history,
            }
        )
        if row.get("error"):
            run.tags["agvp.error"] = str(row["error"])[:MAX_HISTORY_CHARS]
        run.terminal = TERMINAL.get(str(row["status"]))
        run.dirty = True

    def flush(self) -> None:
        """Hand what is buffered to the sender thread (MLflow is never waited for here)."""
        self._raise_sender_error()
        batches = []
        for run in self.runs.values():
            if not run.dirty:
                continue
            batches.append(_Batch(run, run.params, run.metrics, run.tags, run.terminal, run.reopen))
            if run.terminal is not None:
                run.status = run.terminal
            elif run.reopen:
                run.status = "RUNNING"
            run.params, run.metrics, run.tags = {}, [], {}
            run.terminal, run.reopen, run.dirty = None, False, False
        if batches:
            self._send(lambda client: self._log(client, batches))

    def close(self, *, finished: bool, best: tuple[int, str] | None) -> None:
        self.flush()
        if self._sender is None and self._client is None:
            return  # no trial reported
        ending = ("RUNNING", "KILLED") if finished else ("RUNNING",)
        # a finished study also ends the runs an earlier session left KILLED (paused, never resumed)
        open_runs = [run for run in self.runs.values() if run.status in ending]
        status = "FINISHED" if finished else "KILLED"
        for run in open_runs:
            run.status = status
        best_run = self.runs.get(best[0]) if best is not None else None

        def end(client: Any) -> None:
            for run in open_runs:
                if run.run_id is None:
                    continue
                if finished:
                    client.set_tag(run.run_id, "agvp.status", "stopped")
                client.set_terminated(run.run_id, status=status)
            if best is not None and best_run is not None and best_run.run_id is not None:
                client.log_text(best_run.run_id, best[1], "best.yaml")
                client.set_tag(best_run.run_id, "agvp.best", "true")

        self._send(end)
        self.drain(CLOSE_TIMEOUT_S)
        self._send(None)

    def discard(self) -> None:
        if self._sender is not None and self._sender.is_alive():
            self._queue.put(None)  # the thread ends after what it is sending now

    # -- the sender thread ----------------------------------------------------------------------------

    def _send(self, job: Any) -> None:
        if self._sender is None:
            if job is None:
                return
            self._sender = threading.Thread(target=self._serve, name="agvp-mlflow", daemon=True)
            self._sender.start()
        self._queue.put(job)

    def _serve(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                if self._error is None:
                    job(self._connect())
            except Exception as error:  # reported on the driver's thread, at its next call
                self._error = error
            finally:
                self._queue.task_done()

    def drain(self, timeout: float) -> None:
        """Wait until the sender thread sent everything handed to it (at most ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        self._raise_sender_error()
        if self._queue.unfinished_tasks:
            raise TimeoutError(f"{self.uri} did not take the runs' data within {timeout:g} s")

    def _raise_sender_error(self) -> None:
        if self._error is not None:  # the sender sends nothing more; the caller switches MLflow off
            raise self._error

    def _log(self, client: Any, batches: list[_Batch]) -> None:
        from mlflow.entities import Metric, Param, RunTag

        for batch in batches:
            run = batch.run
            if run.run_id is None:
                created = client.create_run(
                    self._experiment,
                    run_name=run_name(run.trial_id),
                    tags={STUDY_TAG: self.study, TRIAL_TAG: str(run.trial_id)},
                )
                run.run_id = created.info.run_id
                params = [Param(key, value) for key, value in batch.params.items()]
                for start in range(0, len(params), MAX_BATCH_PARAMS):
                    client.log_batch(run.run_id, params=params[start : start + MAX_BATCH_PARAMS])
            elif batch.reopen:
                client.update_run(run.run_id, status="RUNNING")
            metrics = [Metric(key, value, stamp, step) for key, value, stamp, step in batch.metrics]
            tags = [RunTag(key, value) for key, value in batch.tags.items()]
            for start in range(0, max(len(metrics), 1), MAX_BATCH_METRICS):
                client.log_batch(
                    run.run_id,
                    metrics=metrics[start : start + MAX_BATCH_METRICS],
                    tags=tags if start == 0 else [],
                )
            if batch.terminal is not None:
                client.set_terminated(run.run_id, status=batch.terminal)


def _param(value: Any) -> str:
    """A configuration value as an MLflow param (a string of at most MLflow's length)."""
    text = value if isinstance(value, str) else str(value)
    return text[:MAX_PARAM_CHARS]
