"""The results store: immutable Parquet part files in one folder per study, written atomically, and readable
with plain pandas, pyarrow or DuckDB at every moment.

Layout under ``<results root>/<study>/``::

    study.json                               study metadata (spec, status, start/end, budget), atomic rewrite
    results -> .store/v00000003              what users read: a symlink to the current version folder
    .store/v00000003/compacted-00000041.parquet  every row of parts <= 41, merged
    .store/v00000003/part-00000042.parquet       rows appended by one call of :meth:`ResultStore.append`

Why this shape (DESIGN principle 7):

- A writer never modifies a file: :func:`trainers.atomic.atomic_write` writes a hidden temporary file in the
  same folder, fsyncs it and renames it into place. A reader never sees a torn file.
- The folder ``results`` always holds every row exactly once. Appends add a part file to it. Compaction
  never touches it: it builds the NEXT version folder (one compacted file with every row), then swaps the
  ``results`` symlink to it in one atomic rename. A reader - ours, or ``pd.read_parquet(".../results")``,
  DuckDB, ``pyarrow.dataset`` - that resolves the link before the swap reads the old version, after it the
  new one; never both, never half. The previous version is kept until the next compaction for readers
  still inside it. A kill anywhere in a compaction leaves the link on a complete version; leftovers
  (a half-built or unlinked version folder) are removed by the next compaction.
- Part numbers run on across versions, so a part number names a batch of rows for good: the driver's
  journal says which number its pending rows will be written as, and :meth:`ResultStore.append` with that
  number is a no-op once the number is stored - writing a batch is idempotent (a signal between writing a
  part and recording it cannot duplicate rows).
- Configurations are flattened into ``param_<name>`` columns (and kept as JSON in ``config``) so pandas,
  pyarrow or DuckDB can filter on them directly.

Studies written before versions existed have a plain ``results/`` folder; the first write migrates it.
One writer per study (the driver holds the study lock); any number of readers may read concurrently.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from hpo.faults import fault_point
from hpo.results import CONFIG
from trainers.atomic import atomic_write_bytes, atomic_write_text, fsync_directory
from trainers.errors import AgvpError

RESULTS_DIR = "results"
VERSIONS_DIR = ".store"
METADATA_FILE = "study.json"
PARAM_PREFIX = "param_"
_PART = re.compile(r"^part-(\d{8})\.parquet$")
_COMPACTED = re.compile(r"^compacted-(\d{8})\.parquet$")
_VERSION = re.compile(r"^v(\d{8})$")


class StoreError(AgvpError):
    """A study folder is missing or its files are not what the store wrote."""


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
        self.versions_dir = self.study_dir / VERSIONS_DIR

    # ---- files -------------------------------------------------------------------------------------------
    def _current(self) -> Path:
        """The folder holding the rows now (the target of ``results``; a legacy plain folder as is)."""
        return self.results_dir.resolve() if self.results_dir.is_symlink() else self.results_dir

    @staticmethod
    def _numbers_in(folder: Path, pattern: re.Pattern[str]) -> list[int]:
        try:
            names = os.listdir(folder)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(int(m.group(1)) for name in names if (m := pattern.match(name)))

    def _numbers(self, pattern: re.Pattern[str]) -> list[int]:
        return self._numbers_in(self._current(), pattern)

    def files(self) -> list[Path]:
        """The files that hold every row exactly once (in a version folder: all of them; in a legacy folder
        interrupted mid-compaction: the newest compacted file and the parts above it)."""
        folder = self._current()
        compacted = self._numbers_in(folder, _COMPACTED)
        covered = compacted[-1] if compacted else -1
        files = [folder / f"compacted-{covered:08d}.parquet"] if compacted else []
        parts = [folder / f"part-{n:08d}.parquet" for n in self._numbers_in(folder, _PART) if n > covered]
        return files + parts

    def last_number(self) -> int:
        """Number of the newest part stored (a compacted file carries its last part's number); -1: none."""
        numbers = self._numbers(_PART) + self._numbers(_COMPACTED)
        return max(numbers) if numbers else -1

    def covers(self, number: int) -> bool:
        """Whether the rows of part ``number`` are stored (as that part, or inside a compacted file)."""
        compacted = self._numbers(_COMPACTED)
        return (bool(compacted) and number <= compacted[-1]) or number in self._numbers(_PART)

    def missing_numbers(self, expected_last: int | None = None) -> list[int]:
        """Part numbers absent from the sequence (up to ``expected_last``, default the newest stored)."""
        compacted = self._numbers(_COMPACTED)
        start = compacted[-1] + 1 if compacted else 0
        last = self.last_number() if expected_last is None else expected_last
        present = set(self._numbers(_PART))
        return [n for n in range(start, last + 1) if n not in present]

    # ---- writing -----------------------------------------------------------------------------------------
    def _writable(self) -> Path:
        """The current version folder, created (or migrated from a legacy plain ``results/``) if needed."""
        if self.results_dir.is_symlink():
            return self.results_dir.resolve()
        legacy = self.results_dir.is_dir()
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        # A copied study folder (links followed) may bring version folders along: take the next number.
        existing = self._numbers_in(self.versions_dir, _VERSION)
        first = self.versions_dir / f"v{(existing[-1] + 1) if existing else 0:08d}"
        if legacy:
            os.replace(self.results_dir, first)  # readers briefly see no rows, never wrong ones
        else:
            first.mkdir(exist_ok=True)
        self._point_results_at(first)
        return first

    def _point_results_at(self, version: Path) -> None:
        link = self.study_dir / f".{RESULTS_DIR}.{os.getpid()}.link"
        link.unlink(missing_ok=True)
        os.symlink(os.path.relpath(version, self.study_dir), link)
        os.replace(link, self.results_dir)
        fsync_directory(self.study_dir)

    def append(self, rows: Iterable[Mapping[str, Any]], *, number: int | None = None) -> Path | None:
        """Write ``rows`` as one new immutable part file; returns its path (None when there are no rows, or
        when part ``number`` is already stored: appending a numbered batch twice writes it once)."""
        flat = [flatten_row(row) for row in rows]
        if not flat:
            return None
        folder = self._writable()
        if number is None:
            number = self.last_number() + 1
        elif self.covers(number):
            return None
        table = pa.Table.from_pandas(pd.DataFrame(flat), preserve_index=False)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        path = folder / f"part-{number:08d}.parquet"
        atomic_write_bytes(path, sink.getvalue().to_pybytes())
        return path

    def compact(self) -> Path | None:
        """Merge every row into one file in a new version folder and point ``results`` at it; drop older
        versions (but the one just replaced). None if there was nothing to merge."""
        folder = self._writable()
        files = self.files()
        versions = self._numbers_in(self.versions_dir, _VERSION)
        current = int(_VERSION.match(folder.name).group(1)) if _VERSION.match(folder.name) else -1
        # Leftovers of an interrupted compaction: half-built folders, and versions newer than the link.
        for stray in self.versions_dir.glob(".v*.tmp"):
            shutil.rmtree(stray, ignore_errors=True)
        for number in versions:
            if number > current:
                shutil.rmtree(self.versions_dir / f"v{number:08d}", ignore_errors=True)
        stored = self._numbers(_PART) + self._numbers(_COMPACTED)
        if len(stored) <= 1:  # one file (or none): nothing to merge, nothing duplicated
            return None
        covered = self.last_number()
        frame = self._read_files(files)
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink)
        version = self.versions_dir / f"v{current + 1:08d}"
        building = self.versions_dir / f".{version.name}.tmp"
        building.mkdir()
        target = building / f"compacted-{covered:08d}.parquet"
        atomic_write_bytes(target, sink.getvalue().to_pybytes())
        os.replace(building, version)
        fsync_directory(self.versions_dir)
        fault_point("compaction")
        self._point_results_at(version)
        for number in versions:
            if number < current:
                shutil.rmtree(self.versions_dir / f"v{number:08d}", ignore_errors=True)
        return version / target.name

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
        text = json.dumps(dict(metadata), indent=1, sort_keys=True, default=str) + "\n"
        atomic_write_text(self.study_dir / METADATA_FILE, text)

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
