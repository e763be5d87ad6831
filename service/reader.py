"""Read-side of the service: study folders under one results root, cached by file state.

A request never re-reads unchanged files: every answer derived from a study (its rows, trial table, best
configurations, rendered JSON) is cached under the study's *file state*, the (name, mtime, size) of its
metadata and of the Parquet files that currently hold its rows. Checking the state costs one directory
listing and a few ``stat`` calls; when a driver appends a part file or rewrites ``study.json`` the state
changes and the next request recomputes (once) what it needs.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from hpo.results import TrialStatus
from hpo.store import METADATA_FILE, StoreError
from hpo.study.analysis import best_so_far, best_trials, failures, rung_table, trial_table
from hpo.study.folder import StudyFolder, study_status

STUDY_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
FileState = tuple[tuple[str, int, int], ...]
MISSING = object()  # what peek() returns when the value must be (re)computed


class NotFound(LookupError):
    """No such study or trial (the API answers 404)."""


class BadRequest(ValueError):
    """The request names something malformed (the API answers 400)."""


def check_study_id(study_id: str) -> str:
    """A study id is a folder name: letters, digits, '-' and '_' only (no '/', '..', absolute paths)."""
    if not STUDY_ID.match(study_id):
        raise BadRequest(f"study id {study_id!r} must be 1-64 letters, digits, '-' or '_'")
    return study_id


def _stat(path: Path) -> tuple[str, int, int] | None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return (path.name, info.st_mtime_ns, info.st_size)


class _Entry:
    def __init__(self, state: FileState) -> None:
        self.state = state
        self.values: dict[Any, Any] = {}


class StoreReader:
    """Cached answers about the studies under ``root`` (thread-safe; one lock per cache update)."""

    def __init__(self, root: Path | str, *, max_studies: int = 64) -> None:
        self.root = Path(root)
        self.max_studies = max_studies
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.computations = 0  # how many cached values were computed (tests check reuse)

    # -- file state ---------------------------------------------------------------------------------------

    def folder(self, study_id: str) -> StudyFolder:
        folder = StudyFolder(self.root / check_study_id(study_id))
        if not folder.metadata_file.is_file():
            raise NotFound(f"no study named {study_id!r}")
        return folder

    def file_state(self, folder: StudyFolder) -> FileState:
        parts = [_stat(folder.metadata_file)]
        parts.extend(_stat(path) for path in folder.store.files())
        return tuple(p for p in parts if p is not None)

    def study_ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            entry.name
            for entry in os.scandir(self.root)
            if entry.is_dir() and STUDY_ID.match(entry.name) and (Path(entry.path) / METADATA_FILE).is_file()
        )

    def _lookup(self, study_id: str, state: FileState, key: Any) -> Any:
        """The value cached for ``key`` under this file state, else :data:`MISSING`."""
        with self._lock:
            entry = self._cache.get(study_id)
            if entry is not None and entry.state == state and key in entry.values:
                self._cache.move_to_end(study_id)
                return entry.values[key]
        return MISSING

    def peek(self, study_id: str, key: Any) -> Any:
        """The cached value if the study's files are unchanged, else :data:`MISSING` (only stat calls)."""
        folder = self.folder(study_id)
        return self._lookup(study_id, self.file_state(folder), key)

    def cached(self, study_id: str, key: Any, compute: Callable[[StudyFolder], Any]) -> Any:
        """``compute(folder)`` for this study and key, reused while the study's files are unchanged."""
        folder = self.folder(study_id)
        for _ in range(3):  # a compaction may remove a file between listing and reading: look again
            state = self.file_state(folder)
            value = self._lookup(study_id, state, key)
            if value is not MISSING:
                return value
            try:
                value = compute(folder)
            except FileNotFoundError:
                continue
            with self._lock:
                entry = self._cache.get(study_id)
                if entry is None or entry.state != state:
                    entry = _Entry(state)
                    self._cache[study_id] = entry
                entry.values[key] = value
                self.computations += 1
                while len(self._cache) > self.max_studies:
                    self._cache.popitem(last=False)
            return value
        raise StoreError(f"{folder.path}: results kept changing while being read")

    # -- answers ----------------------------------------------------------------------------------------

    def metadata(self, study_id: str) -> dict[str, Any]:
        return self.cached(study_id, "metadata", lambda folder: folder.store.read_metadata())

    def rows(self, study_id: str) -> pd.DataFrame:
        return self.cached(study_id, "rows", lambda folder: folder.store.read())

    def status(self, study_id: str) -> str:
        return study_status(self.folder(study_id), self.metadata(study_id))

    def trials(self, study_id: str) -> pd.DataFrame:
        status = self.status(study_id)  # "running" depends on the study lock, not on the files

        def compute(folder: StudyFolder) -> pd.DataFrame:
            return trial_table(self.rows(study_id), finished=status == "finished", live=status == "running")

        return self.cached(study_id, ("trials", status), compute)

    def failures(self, study_id: str) -> dict[str, Any]:
        return self.cached(study_id, "failures", lambda folder: failures(self.rows(study_id)))

    def objective(self, study_id: str) -> tuple[str, str]:
        objective = self.metadata(study_id).get("spec", {}).get("objective", {})
        return str(objective.get("metric", "value")), str(objective.get("mode", "max"))

    def best(self, study_id: str, k: int) -> pd.DataFrame:
        _, mode = self.objective(study_id)
        return self.cached(study_id, ("best", k), lambda folder: best_trials(self.rows(study_id), mode, k=k))

    def counts(self, study_id: str) -> dict[str, int]:
        trials = self.trials(study_id)

        def compute(folder: StudyFolder) -> dict[str, int]:
            counts = {status.value: 0 for status in TrialStatus}
            for status, number in trials["status"].value_counts().items():
                counts[str(status)] = int(number)
            return counts

        return self.cached(study_id, ("counts", self.status(study_id)), compute)

    def curve(self, study_id: str, trial_id: int) -> pd.DataFrame:
        rows = self.rows(study_id)
        if rows.empty or trial_id not in set(self.trials(study_id)["trial_id"]):
            raise NotFound(f"study {study_id!r} has no trial {trial_id}")
        return rows[rows["trial_id"] == trial_id]

    def rungs(self, study_id: str) -> list[dict[str, Any]]:
        return self.cached(study_id, "rungs", lambda folder: rung_table(self.rows(study_id)))

    def best_so_far(self, study_id: str) -> list[dict[str, float]]:
        """(epochs used so far, best value so far) at every report that changed the best (the driver's rule:
        the best value at the highest fidelity reached)."""

        def compute(folder: StudyFolder) -> list[dict[str, float]]:
            _, mode = self.objective(study_id)
            return best_so_far(self.rows(study_id), mode)

        return self.cached(study_id, "best_so_far", compute)

    def summary(self, study_id: str) -> dict[str, Any]:
        metadata = self.metadata(study_id)
        best = metadata.get("best") or None
        return {
            "id": study_id,
            "status": self.status(study_id),
            "reason": metadata.get("reason"),
            "error": metadata.get("error"),
            "trials": self.counts(study_id),
            "best": best,
            "metric": self.objective(study_id)[0],
            "mode": self.objective(study_id)[1],
            "budget_used": metadata.get("budget_used") or {},
            "failures": self.failures(study_id),
            "started": metadata.get("started"),
            "updated": metadata.get("updated"),
            "ended": metadata.get("ended"),
        }


def params_json(params: Any) -> dict[str, Any]:
    return params if isinstance(params, dict) else json.loads(str(params))
