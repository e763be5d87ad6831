"""One driver per study: the OS lock, what it tells readers, and that a killed driver never leaves it held."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hpo.study.folder import StudyFolder, study_status
from hpo.study.lock import LOCK_FILE, StudyLock, StudyLocked, lock_holder

HOLD = (
    "import sys, time; from hpo.study.lock import StudyLock; StudyLock(sys.argv[1]).acquire(); "
    "print('held', flush=True); time.sleep(600)"
)


def _holder(path: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


def test_a_second_driver_is_refused_and_kill_minus_nine_frees_the_lock(tmp_path: Path) -> None:
    process = _holder(tmp_path / "study")
    try:
        holder = lock_holder(tmp_path / "study")
        assert holder is not None and holder["pid"] == process.pid
        with pytest.raises(StudyLocked, match=rf"already running \(driver pid {process.pid} on "):
            StudyLock(tmp_path / "study").acquire()
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert lock_holder(tmp_path / "study") is None
    with StudyLock(tmp_path / "study"):
        assert lock_holder(tmp_path / "study") is not None
    assert lock_holder(tmp_path / "study") is None
    assert lock_holder(tmp_path / "never") is None  # no lock file: nobody runs it


def test_a_probe_never_makes_a_starting_driver_fail(tmp_path: Path) -> None:
    with StudyLock(tmp_path):
        pass
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:  # probes in a tight loop while a driver takes and drops the lock
        assert lock_holder(tmp_path) is None
        with StudyLock(tmp_path):
            assert lock_holder(tmp_path) is not None


def test_status_interrupted_means_running_with_no_driver(tmp_path: Path) -> None:
    folder = StudyFolder(tmp_path / "s")
    folder.path.mkdir()
    assert study_status(folder, {"status": "running"}) == "interrupted"
    with StudyLock(folder.path):
        assert study_status(folder, {"status": "running"}) == "running"
    assert study_status(folder, {"status": "finished"}) == "finished"
    assert study_status(folder, {}) == "unknown"
    assert (folder.path / LOCK_FILE).is_file()
