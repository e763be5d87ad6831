"""The results store: immutable Parquet part files in one folder per study, written atomically.

Layout under ``<results root>/<study>/``::

    study.json                         study metadata (spec, status, start/end, budget used), atomic rewrite
    results/part-00000042.parquet      rows appended by one call of :meth:`ResultStore.append`
    results/compacted-00000042.parquet every part up to and including 42, merged

Why this shape (DESIGN principle 7):

- A writer never modifies a file: it writes ``.tmp`` in the same folder, fsyncs it, renames it to its final
  name and fsyncs the folder. A reader lists only final names, so it never sees a torn file, and a crash
  leaves at most a stray ``.tmp`` (ignored, removed by the next compaction).
- Compaction writes one ``compacted-N`` file covering parts ``<= N`` and only then deletes those parts and
  older compacted files. A reader takes the newest compacted file and the parts numbered above it, so a
  reader running during compaction sees every row exactly once, before or after.
- Configurations are flattened into ``param_<name>`` columns (and kept as JSON in ``config``) so pandas,
  pyarrow or DuckDB can filter on them directly.

One writer per study (the driver) is assumed; any number of readers (CLI, service) may read concurrently.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from hpo.faults import fault_point
from hpo.results import CONFIG
from trainers.errors import AgvpError

RESULTS_DIR = "results"
METADATA_FILE = "study.json"
PARAM_PREFIX = "param_"
_PART = re.compile(r"^part-(\d{8})\.parquet$")
_COMPACTED = re.compile(r"^compacted-(\d{8})\.parquet$")


class StoreError(AgvpError):
    """A study folder is missing or its files are not what the store wrote."""


def _fsync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the complete new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        _fsync_dir(path.parent)
    finally:
        temporary.unlink(missing_ok=True)


def flatten_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A result row with its configuration also spread into ``param_<name>`` columns."""
    flat = dict(row)
    config = row.get(CONFIG)
    if isinstance(config, str):
        config = json.loads(config)
    if isinstance(config, Mapping):
        flat[CONFIG] = json.dumps(dict(config), sort_keys=True, separators=(",", ":"))
        for name, value in config.items():
            flat[f"{PARAM_PREFIX}{name}"] = value
    return flat


class ResultStore:
    """Append-only Parquet rows of one study, plus its metadata."""

    def __init__(self, study_dir: Path | str) -> None:
        self.study_dir = Path(study_dir)
        self.results_dir = self.study_dir / RESULTS_DIR

    # ---- files -------------------------------------------------------------------------------------------
    def _numbers(self, pattern: re.Pattern[str]) -> list[int]:
        if not self.results_dir.is_dir():
            return []
        return sorted(int(m.group(1)) for name in os.listdir(self.results_dir) if (m := pattern.match(name)))

    def _part(self, number: int) -> Path:
        return self.results_dir / f"part-{number:08d}.parquet"

    def _compacted(self, number: int) -> Path:
        return self.results_dir / f"compacted-{number:08d}.parquet"

    def files(self) -> list[Path]:
        """The files that currently hold every row exactly once (newest compaction + newer parts)."""
        compacted = self._numbers(_COMPACTED)
        covered = compacted[-1] if compacted else -1
        files = [self._compacted(covered)] if compacted else []
        return files + [self._part(n) for n in self._numbers(_PART) if n > covered]

    def last_number(self) -> int:
        """Number of the newest part written (a compacted file carries its last part's number); -1: none."""
        numbers = self._numbers(_PART) + self._numbers(_COMPACTED)
        return max(numbers) if numbers else -1

    # ---- writing -----------------------------------------------------------------------------------------
    def append(self, rows: Iterable[Mapping[str, Any]]) -> Path | None:
        """Write ``rows`` as one new immutable part file; returns its path (None when there are no rows)."""
        flat = [flatten_row(row) for row in rows]
        if not flat:
            return None
        number = self.last_number() + 1
        table = pa.Table.from_pandas(pd.DataFrame(flat), preserve_index=False)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        path = self._part(number)
        atomic_write_bytes(path, sink.getvalue().to_pybytes())
        return path

    def compact(self) -> Path | None:
        """Merge every part into one compacted file, then delete what it replaced. None if nothing to do."""
        files = self.files()
        parts = self._numbers(_PART)
        if len(files) <= 1 or not parts:
            return None
        frame = self._read_files(files)
        covered = parts[-1]
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink)
        target = self._compacted(covered)
        atomic_write_bytes(target, sink.getvalue().to_pybytes())
        fault_point("compaction")
        for number in parts:
            if number <= covered:
                self._part(number).unlink(missing_ok=True)
        for number in self._numbers(_COMPACTED):
            if number < covered:
                self._compacted(number).unlink(missing_ok=True)
        for stray in self.results_dir.glob(".*.tmp"):
            stray.unlink(missing_ok=True)
        return target

    # ---- reading -----------------------------------------------------------------------------------------
    @staticmethod
    def _read_files(files: list[Path]) -> pd.DataFrame:
        frames = [pq.read_table(path).to_pandas() for path in files]
        frames = [frame for frame in frames if not frame.empty]
        if not frames:
            return pd.DataFrame()
        return pd.concat(frames, ignore_index=True, sort=False)

    def read(self) -> pd.DataFrame:
        """Every row, in append order. Safe while a writer appends or compacts."""
        for _ in range(3):  # a compaction may delete a file between listing and reading: list again
            try:
                return self._read_files(self.files())
            except FileNotFoundError:
                time.sleep(0.01)
        return self._read_files(self.files())

    def export(self, target: Path | str) -> Path:
        """All rows as one Parquet file at ``target`` (written atomically)."""
        target = Path(target)
        frame = self.read()
        if frame.empty:
            raise StoreError(f"{self.study_dir}: study has no results to export")
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink)
        atomic_write_bytes(target, sink.getvalue().to_pybytes())
        return target

    # ---- metadata ----------------------------------------------------------------------------------------
    def write_metadata(self, metadata: Mapping[str, Any]) -> None:
        data = json.dumps(dict(metadata), indent=1, sort_keys=True, default=str) + "\n"
        atomic_write_bytes(self.study_dir / METADATA_FILE, data.encode())

    def update_metadata(self, **changes: Any) -> dict[str, Any]:
        metadata = self.read_metadata() if (self.study_dir / METADATA_FILE).exists() else {}
        metadata.update(changes)
        self.write_metadata(metadata)
        return metadata

    def read_metadata(self) -> dict[str, Any]:
        path = self.study_dir / METADATA_FILE
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise StoreError(f"{self.study_dir}: not a study folder (no {METADATA_FILE})") from None
        except json.JSONDecodeError as error:
            raise StoreError(f"{path}: unreadable study metadata ({error.msg})") from None
