"""A study as a Ray job on a cluster (`agvp-hpo submit`, and the service's submit with `--ray-address`)."""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from typing import Any

#: The environment variable a submitted study file travels in (``agvp-hpo run env:NAME`` reads it).
STUDY_ENV = "AGVP_STUDY_YAML"


#: Ray's job server answers this (HTTP 500) while the head's job agent is still starting, e.g. right after
#: ``ray start --head``: the submission is retried for up to :data:`AGENT_WAIT_S` seconds.
NO_AGENT_YET = "No available agent to submit job"
AGENT_WAIT_S = 30.0


def submit_study_job(
    client: Any, spec: Any, *, agent_wait_s: float = AGENT_WAIT_S, sleep: Callable[[float], None] = time.sleep
) -> str:
    """Submit ``spec`` as a Ray job that runs ``agvp-hpo run`` on the cluster; returns the job id.

    The study file travels in the job's environment, not as a working dir: Ray may clean a job's
    working dir up while the driver still runs in it. The nodes must have the package installed. A job
    server whose agent is not up yet (:data:`NO_AGENT_YET`) is asked again each second for up to
    ``agent_wait_s``; any other error, or that one after the wait, is raised as it came."""
    from hpo.study import dump_study

    deadline = time.monotonic() + agent_wait_s
    while True:
        try:
            return str(
                client.submit_job(
                    entrypoint=shlex.join(
                        ["python", "-m", "hpo.cli", "run", f"env:{STUDY_ENV}", "--address", "auto"]
                    ),
                    runtime_env={"env_vars": {STUDY_ENV: dump_study(spec), "PYTHONUNBUFFERED": "1"}},
                    metadata={"agvp_study": spec.name},
                )
            )
        except RuntimeError as error:
            if NO_AGENT_YET not in str(error) or time.monotonic() >= deadline:
                raise
            sleep(1.0)
