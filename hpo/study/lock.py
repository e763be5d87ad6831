"""One driver per study: an exclusive OS lock on ``<study>/.lock``, held for the driver's whole life.

``fcntl.flock`` belongs to the open file, so it dies with the process - ``kill -9`` included - and a study
is never left locked by a dead driver; it also works on the NFS volumes cluster nodes share. ``run``,
``resume`` and the service's submit take it before anything else (a second driver gets one line and exit
code 2), and "is this study running?" is answered by it everywhere (``status``, ``stop``, the service), not
by a process id that another host cannot check and the system may reuse.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from trainers.errors import AgvpError

LOCK_FILE = ".lock"
#: A reader probing the lock holds it for microseconds; a starting driver waits this long for it to go.
ACQUIRE_PATIENCE_S = 2.0


class StudyLocked(AgvpError):
    """Another driver holds the study."""


class StudyLock:
    """The study's lock; ``with StudyLock(path):`` holds it (see the module docstring)."""

    def __init__(self, study_dir: Path | str) -> None:
        self.path = Path(study_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> StudyLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + ACQUIRE_PATIENCE_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _read_holder(fd)
                    os.close(fd)
                    who = f" (driver pid {holder.get('pid')} on {holder.get('host')})" if holder else ""
                    raise StudyLocked(
                        f"study {self.path.parent.name!r} is already running{who}: one driver per study"
                    ) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> StudyLock:
        return self.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}


def lock_holder(study_dir: Path | str) -> dict[str, Any] | None:
    """The driver holding the study (``{"pid", "host"}``), or None if no driver runs it.

    Probes with a shared lock, which never blocks a running driver and delays a starting one by
    microseconds at most (it waits :data:`ACQUIRE_PATIENCE_S` for probes to let go)."""
    path = Path(study_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(fd)
        os.close(fd)
        return holder or {"pid": None, "host": None}
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    return None
