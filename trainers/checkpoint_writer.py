"""Checkpoints written in the background, one at a time, while the validation pass runs.

``fit`` hands what an epoch's checkpoint holds to :class:`CheckpointWriter`, which writes it atomically
(:func:`trainers.atomic.atomic_write`) in a thread while the validation pass runs. It hands the live
tensors, not copies: validation changes no state (a test pins that), and the next epoch starts only after
the report, which waits for the write. Copying 1.2 GB (ViT-B/16 with Adam) to CPU memory cost about as much
as writing it on the 2-core machine (benchmarks/trial_start.py); :func:`snapshot` is there for a caller
whose state does change while the file is written. The rules that keep a report honest:

- at most one write is in flight: :meth:`CheckpointWriter.submit` first waits for the previous one;
- :meth:`CheckpointWriter.wait` returns only once the file is complete on disk (fsynced and renamed) and
  raises the write's own error if it failed; ``fit`` calls it before ``report`` names the file, so a
  scheduler never sees a checkpoint that is not there;
- :meth:`CheckpointWriter.close` (``fit``'s ``finally``) waits too, so no thread outlives ``fit`` and a
  write error is never lost (when ``fit`` is already failing, that error wins and the write's is dropped).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from trainers.atomic import atomic_write


def snapshot(value: Any) -> Any:
    """A copy of ``value`` (nested dicts, lists, tuples of tensors and plain values) whose tensors live in
    fresh CPU memory: training may go on changing the originals while the copy is written."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: snapshot(item) for key, item in value.items()}
    if isinstance(value, list):
        return [snapshot(item) for item in value]
    if isinstance(value, tuple):
        return tuple(snapshot(item) for item in value)
    return value


def save_payload(payload: dict[str, Any], path: Path) -> None:
    torch.save(payload, path)


class CheckpointWriter:
    """Writes one checkpoint at a time in a background thread (see the module docstring)."""

    def __init__(self, save: Callable[[dict[str, Any], Path], None] = save_payload) -> None:
        self._save = save
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.written_seconds = 0.0  # how long the last write took, in its thread

    def submit(self, path: Path, payload: dict[str, Any]) -> None:
        """Start writing ``payload`` (already a :func:`snapshot`) to ``path``, after the previous write."""
        self.wait()
        self._error = None
        self._thread = threading.Thread(
            target=self._write, args=(Path(path), payload), name="agvp-checkpoint", daemon=True
        )
        self._thread.start()

    def _write(self, path: Path, payload: dict[str, Any]) -> None:
        started = time.perf_counter()
        try:
            atomic_write(path, lambda temporary: self._save(payload, temporary))
        except BaseException as error:  # handed to the training thread by wait()
            self._error = error
        self.written_seconds = time.perf_counter() - started

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self) -> None:
        """Block until the write in flight (if any) is complete on disk; raise its error if it failed."""
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        error, self._error = self._error, None
        if error is not None:
            raise error

    def close(self, *, failing: bool = False) -> None:
        """Wait for the write in flight; with ``failing`` (an error is already on its way) drop its error."""
        try:
            self.wait()
        except BaseException:
            if not failing:
                raise
