"""How a submitted study starts: a supervised local subprocess, or a Ray job on a cluster.

Either way the study runs ``agvp-hpo run`` on a copy of the submitted file kept in
``<results root>/.submissions/<name>.yaml`` (with ``storage.root`` set to the service's results root, so the
service sees its results). Locally, the subprocess's output goes to ``.submissions/<name>.log``; a process
that exits before it wrote its study folder leaves its last output line as the reason.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUBMISSIONS_DIR = ".submissions"


@dataclass
class Launch:
    study: str
    how: str  # "local" or "ray-job"
    ref: str  # the process id or the Ray job id
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def state(self) -> dict[str, Any]:
        if self.process is None:
            return {"how": self.how, "ref": self.ref}
        code = self.process.poll()
        return {"how": self.how, "ref": self.ref, "running": code is None, "exit_code": code}


def submission_paths(root: Path, name: str) -> tuple[Path, Path]:
    folder = root / SUBMISSIONS_DIR
    return folder / f"{name}.yaml", folder / f"{name}.log"


def entrypoint(spec_file: Path) -> list[str]:
    """The local run of a submitted study: this Python, ``agvp-hpo run`` (embedded local Ray)."""
    return [sys.executable, "-m", "hpo.cli", "run", str(spec_file)]


class Launcher:
    """Starts submitted studies and remembers them (by study name) while the service runs."""

    def __init__(self, root: Path, *, ray_address: str | None = None, workdir: Path | None = None) -> None:
        self.root = root
        self.ray_address = ray_address
        self.workdir = workdir or Path.cwd()
        self.launches: dict[str, Launch] = {}
        self._lock = threading.Lock()

    def launch(self, name: str, spec_file: Path) -> Launch:
        with self._lock:
            if self.ray_address is not None:
                launch = self._ray_job(name, spec_file)
            else:
                launch = self._local(name, spec_file)
            self.launches[name] = launch
            return launch

    def _local(self, name: str, spec_file: Path) -> Launch:
        _, log = submission_paths(self.root, name)
        with log.open("wb") as output:
            process = subprocess.Popen(
                entrypoint(spec_file),
                cwd=self.workdir,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # the study outlives a restart of the service
            )
        return Launch(name, "local", str(process.pid), process)

    def _ray_job(self, name: str, spec_file: Path) -> Launch:
        from ray.job_submission import JobSubmissionClient

        from hpo.ray_backend.jobs import submit_study_job
        from hpo.study import load_study

        job_id = submit_study_job(JobSubmissionClient(self.ray_address), load_study(spec_file))
        return Launch(name, "ray-job", job_id)

    def state(self, name: str) -> dict[str, Any] | None:
        launch = self.launches.get(name)
        return None if launch is None else launch.state()

    def why_not_started(self, name: str) -> str | None:
        """For a submitted study that has no folder yet: what happened to its launch (None: not ours)."""
        launch = self.launches.get(name)
        if launch is None:
            return None
        if launch.process is None:
            return f"study {name!r} was submitted as Ray job {launch.ref} and has not written its folder yet"
        code = launch.process.poll()
        if code is None:
            return f"study {name!r} is starting (process {launch.ref})"
        _, log = submission_paths(self.root, name)
        lines = [
            line for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()
        ]
        last = lines[-1].strip() if lines else "no output"
        return f"study {name!r} did not start: its process exited with code {code}: {last}"

    def shutdown(self) -> None:
        """Reap finished local processes (running studies are left running: they are resumable)."""
        for launch in self.launches.values():
            if launch.process is not None and launch.process.poll() is not None:
                launch.process.wait()
