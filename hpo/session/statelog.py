"""The driver's append-only event log: what changed since the last full snapshot of its state.

Rewriting the whole scheduler state after every decision costs O(trials) per decision, so a study of
10,000 trials spent nearly all its time writing ``state.json``. Instead every decision appends ONE line
(a JSON event) to ``state.events.jsonl``, and the full state is written only when the log has grown as large
as the last snapshot (:class:`hpo.session.driver.StudyDriver`), so what is written stays linear in the
number of decisions and a resume replays at most one snapshot's worth of events.

The file's first line names the snapshot the events follow (``{"after": sequence}``); a log whose header
does not match the snapshot being resumed is from before that snapshot (the kill came between writing the
snapshot and starting the new log) and is ignored: everything in it is in the snapshot. A new log is
written whole and renamed into place, so a log is never half-started. Lines are appended with one
``write`` each and not fsynced (a killed process loses nothing the kernel has); :meth:`StateLog.sync`
makes them durable, which the driver does before rows reach the results store (a row must never be stored
unless the state that journals it survives a power loss). A last line cut short by a kill was never
acted on and is dropped; a damaged line before the last is an error.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainers.atomic import atomic_write_text


class StateLogError(ValueError):
    """The log is damaged before its last line (the message names the file and line)."""


class StateLog:
    """Appends events to ``path``; :meth:`start` begins a new log after a snapshot."""

    def __init__(self, path: Path, *, default: Callable[[Any], Any] | None = None) -> None:
        self.path = path
        self.default = default
        self.bytes = 0  # written since the last start
        self._descriptor: int | None = None

    def start(self, after: int) -> None:
        """A new, empty log following snapshot ``after`` (replaces the old log atomically)."""
        self.close()
        header = json.dumps({"after": after}) + "\n"
        atomic_write_text(self.path, header)
        self._descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self.bytes = 0

    @property
    def open(self) -> bool:
        return self._descriptor is not None

    def append(self, event: dict[str, Any]) -> None:
        if self._descriptor is None:
            raise RuntimeError(f"{self.path}: the log was not started after a snapshot")
        line = (json.dumps(event, separators=(",", ":"), default=self.default) + "\n").encode()
        os.write(self._descriptor, line)
        self.bytes += len(line)

    def sync(self) -> None:
        """Make every appended event durable."""
        if self._descriptor is not None:
            os.fsync(self._descriptor)

    def close(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None


def read_events(path: Path, after: int) -> list[dict[str, Any]]:
    """The events logged after snapshot ``after`` (none when the log is missing or older)."""
    try:
        lines = path.read_bytes().split(b"\n")
    except FileNotFoundError:
        return []
    if lines and lines[-1] == b"":
        lines.pop()  # the newline that ends the last complete line
    if not lines:
        return []
    try:
        header = json.loads(lines[0])
    except ValueError:
        return []  # a header cut short: the log was being started, nothing in it yet
    if not isinstance(header, dict) or header.get("after") != after:
        return []
    events: list[dict[str, Any]] = []
    for number, line in enumerate(lines[1:], start=2):
        try:
            events.append(json.loads(line))
        except ValueError:
            if number == len(lines):  # the last line, cut short by a kill: never acted on
                break
            raise StateLogError(f"{path}: line {number} is damaged (not JSON)") from None
    return events
