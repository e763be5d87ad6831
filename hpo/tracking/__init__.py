"""Experiment tracking: each trial of a study is ONE run in MLflow and ONE run in TensorBoard.

One of our trials spans several Ray trials (a promotion starts a new one), so Ray's per-Ray-trial logger
callbacks would split it; tracking hooks into the session's :class:`~hpo.session.recorder.Recorder`
instead, which hands every row it makes (never a row replayed on resume) to :class:`Tracking`:

- :meth:`Tracking.row` after each row is journaled (in memory only: cheap),
- :meth:`Tracking.flush` when the recorder stores its journal (about once a second),
- :meth:`Tracking.resume` when a study continues from its saved state (earlier runs are continued),
- :meth:`Tracking.close` at the session's end, with the best configuration (``best.yaml``'s text).

Tracking never breaks a study: an exception from a backend is logged once (a warning) and that backend is
switched off for the rest of the session; rows and state are unaffected. ``tracking:`` in a study file is
off by default (:class:`hpo.study.spec.TrackingSpec`).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Mapping
from typing import Any

from hpo.results import METRIC_PREFIX

log = logging.getLogger(__name__)

__all__ = ["Tracker", "Tracking", "row_metrics", "tracking_from_spec"]


def row_metrics(row: Mapping[str, Any]) -> dict[str, float]:
    """Every ``metric_<name>`` of a row with a finite value, by ``name``."""
    metrics: dict[str, float] = {}
    for key, value in row.items():
        if key.startswith(METRIC_PREFIX) and isinstance(value, (int, float)) and math.isfinite(value):
            metrics[key[len(METRIC_PREFIX) :]] = float(value)
    return metrics


def run_name(trial_id: int) -> str:
    """The run of trial 7 is ``trial-00007`` in every backend."""
    return f"trial-{trial_id:05d}"


class Tracker:
    """One tracking backend. Rows arrive in the order they were made; a trial's first row opens its run."""

    #: Shown in the warning when the backend fails (``MLflow``, ``TensorBoard``).
    kind = "tracker"

    def row(self, row: Mapping[str, Any], config: Mapping[str, Any]) -> None:
        """A result row was journaled (see :func:`hpo.results.make_row`); ``config``: the trial's."""

    def flush(self) -> None:
        """The recorder stored its journal: write what is buffered."""

    def resume(self) -> None:
        """The study continues from its saved state: continue the runs of earlier sessions."""

    def close(self, *, finished: bool, best: tuple[int, str] | None) -> None:
        """The session ends (``finished``: the study spent its budget); ``best``: (trial id, the text of
        ``best.yaml``), stored as an artifact of that trial's run."""

    def discard(self) -> None:
        """The backend failed: release what it holds here (files, threads), without talking to it again."""


class Tracking:
    """The study's trackers, each switched off at its first exception (see the module docstring)."""

    def __init__(self, trackers: list[Tracker]) -> None:
        self.trackers = list(trackers)

    @property
    def enabled(self) -> bool:
        return bool(self.trackers)

    def _each(self, call: str, *args: Any, **kwargs: Any) -> None:
        for tracker in list(self.trackers):
            try:
                getattr(tracker, call)(*args, **kwargs)
            except Exception as error:  # tracking must never break a study
                self.trackers.remove(tracker)
                detail = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
                log.warning(
                    "%s tracking failed (%s: %s); it is off for the rest of this session, the study goes on",
                    tracker.kind,
                    type(error).__name__,
                    detail,
                )
                with contextlib.suppress(Exception):  # already reported
                    tracker.discard()

    def row(self, row: Mapping[str, Any], config: Mapping[str, Any]) -> None:
        if self.trackers:
            self._each("row", row, config)

    def flush(self) -> None:
        if self.trackers:
            self._each("flush")

    def resume(self) -> None:
        if self.trackers:
            self._each("resume")

    def close(self, *, finished: bool, best: tuple[int, str] | None) -> None:
        if self.trackers:
            self._each("close", finished=finished, best=best)
        self.trackers = []


def tracking_from_spec(spec: Any) -> Tracking:
    """The trackers ``spec.tracking`` asks for (none by default). Nothing is opened until the first row."""
    settings = spec.tracking
    trackers: list[Tracker] = []
    if settings.mlflow is not None:
        from hpo.tracking.mlflow_runs import MlflowTracker

        trackers.append(MlflowTracker(settings.mlflow.uri, study=spec.name))
    if settings.tensorboard is not None:
        from hpo.tracking.tensorboard_runs import TensorBoardTracker

        trackers.append(
            TensorBoardTracker(settings.tensorboard.dir, study=spec.name, metric=spec.objective.metric)
        )
    return Tracking(trackers)
