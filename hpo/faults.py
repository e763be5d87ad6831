"""Fault injection: named points on the study driver's write paths where a test or a benchmark can make the
process receive a signal (SIGKILL, SIGTERM or SIGINT) the n-th time it gets there.

Crash safety is only as good as the moments it was tried at. Timing a ``kill`` from outside with sleeps
finds the common paths; the narrow windows (between writing a part file and recording it, inside a
compaction, between releasing a trial and saving the state that says so) need the kill to land exactly
there. Off unless ``AGVP_FAULT`` is set (one environment lookup per process):

    AGVP_FAULT=part-written:3:KILL   # the 3rd time a result part is on disk, SIGKILL this process

The points (see :data:`POINTS`) are called by the driver and the store; ``benchmarks/fault_injection.py``
and ``tests/test_crash_safety.py`` drive them.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

FAULT_ENV = "AGVP_FAULT"

#: Every point, with where it is.
POINTS: dict[str, str] = {
    "ray-started": "Ray is up, no study file written yet",
    "folder-created": "a new study's folder and spec exist, its state and metadata not yet",
    "state-written": "state.json was rewritten after a decision",
    "part-written": "a result part file is on disk, the driver has not recorded it yet",
    "released": "a trial is released (the state saying so is on disk), its checkpoints not yet deleted",
    "compaction": "a compaction wrote its merged file, the files it replaces are still in place",
    "finishing": "the study's last rows are stored, its final metadata and best.yaml not all written",
}


@dataclass(frozen=True)
class _Fault:
    point: str
    nth: int
    signal: signal.Signals


_SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM, "INT": signal.SIGINT}
_configured: list[_Fault | None] = []
_counts: dict[str, int] = {}


def parse_fault(text: str) -> _Fault:
    """``point:nth[:KILL|TERM|INT]`` -> the fault (raises ValueError naming what is wrong)."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or parts[0] not in POINTS:
        raise ValueError(
            f"{FAULT_ENV} is {text!r}, but must be POINT:N[:KILL|TERM|INT], POINT one of {list(POINTS)}"
        )
    try:
        nth = int(parts[1])
    except ValueError:
        raise ValueError(f"{FAULT_ENV} is {text!r}: {parts[1]!r} is not a count") from None
    name = parts[2] if len(parts) == 3 else "KILL"
    if name not in _SIGNALS or nth < 1:
        raise ValueError(f"{FAULT_ENV} is {text!r}: the count must be >= 1 and the signal KILL, TERM or INT")
    return _Fault(parts[0], nth, _SIGNALS[name])


def fault_point(point: str) -> None:
    """Mark that the process reached ``point``; signal itself if ``AGVP_FAULT`` asks for this visit."""
    if not _configured:
        text = os.environ.get(FAULT_ENV)
        _configured.append(parse_fault(text) if text else None)
    fault = _configured[0]
    if fault is None or fault.point != point:
        return
    _counts[point] = _counts.get(point, 0) + 1
    if _counts[point] == fault.nth:
        os.kill(os.getpid(), fault.signal)
