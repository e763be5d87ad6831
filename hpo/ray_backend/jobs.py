"""A study as a Ray job on a cluster (`agvp-hpo submit`, and the service's submit with `--ray-address`)."""

from __future__ import annotations

import shlex
from typing import Any

#: The environment variable a submitted study file travels in (``agvp-hpo run env:NAME`` reads it).
STUDY_ENV = "AGVP_STUDY_YAML"


def submit_study_job(client: Any, spec: Any) -> str:
    """Submit ``spec`` as a Ray job that runs ``agvp-hpo run`` on the cluster; returns the job id.

    The study file travels in the job's environment, not as a working dir: Ray may clean a job's
    working dir up while the driver still runs in it. The nodes must have the package installed."""
    from hpo.study import dump_study

    return str(
        client.submit_job(
            entrypoint=shlex.join(
                ["python", "-m", "hpo.cli", "run", f"env:{STUDY_ENV}", "--address", "auto"]
            ),
            runtime_env={"env_vars": {STUDY_ENV: dump_study(spec), "PYTHONUNBUFFERED": "1"}},
            metadata={"agvp_study": spec.name},
        )
    )
