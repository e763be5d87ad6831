"""A study writes nothing into the user's home, even with MLflow installed and not used.

Ray Tune's usage tagging (ray/air/_internal/usage.py ``_count_callbacks``, Ray 2.60) imports
``ray.air.integrations.mlflow``, which imports ``mlflow`` whenever it is installed, and importing mlflow 3
writes ``~/.config/mlflow/telemetry.json`` (unless it sees CI or pytest). The test process may have imported
mlflow already, so the study runs in a fresh process with a home of its own and a user's environment.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="mlflow is not installed")

STUDY = """
from hpo.ray_backend.runner import run_study
from hpo.study import parse_study

spec = parse_study({
    "name": "home", "space": {"x": {"uniform": [0, 1]}}, "fidelity": {"min": 1, "max": 3, "eta": 3},
    "scheduler": "asha", "budget": {"max_trials": 2}, "resources": {"cpu": 1}, "execution": {"cpus": 2},
    "trainer": {"name": "synthetic"}, "storage": {"root": ROOT},
})
print(run_study(spec).status)
"""


def test_a_study_leaves_the_home_directory_alone(short_tmp: Path) -> None:
    home = short_tmp / "home"
    home.mkdir()
    # a user's shell: no MLflow setting, and none of the variables by which MLflow spots CI or pytest and
    # stays quiet (mlflow/telemetry/utils.py _is_ci_env_or_testing)
    quiet = ("MLFLOW_", "PYTEST_", "CI", "GITHUB_ACTIONS")
    env = {key: value for key, value in os.environ.items() if not key.startswith(quiet)}
    env["HOME"] = str(home)
    script = STUDY.replace("ROOT", repr(str(short_tmp / "results")))
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("finished"), done.stderr[-2000:]
    assert sorted(str(p.relative_to(home)) for p in home.rglob("*")) == []
