"""The Ray Tune backend end to end: real Ray (a local instance per study), the real TF-CLIP trainer on a tiny
dataset, and the synthetic trainer where a failure must be injected.

Ray's temp dir holds Unix sockets whose paths must stay short, so studies here live in a short folder made
under the system temp dir for each test and removed after it (with Ray shut down).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from hpo.cli import app
from hpo.ray_backend import runner as runner_module
from hpo.ray_backend.runner import RunError, run_study
from hpo.study import parse_study
from hpo.study.folder import StudyFolder
from trainers.tfclip.config import load_config

runner = CliRunner()
TINY_OVERRIDES = {
    "data.batch.p": 4,
    "data.batch.k": 2,
    "data.split.fraction": 0.3,
    "runtime.eval_batch_size": 64,
}


def _tiny_study(root: Path, data: Path, **changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "tiny",
        "space": {
            "optim.lr": {"loguniform": [3.0e-4, 3.0e-3]},
            "loss.triplet_margin": {"uniform": [0.1, 0.5]},
        },
        "fidelity": {"min": 1, "max": 4, "eta": 2},  # rungs at 1, 2, 4 epochs
        "scheduler": {"kind": "asha"},  # promotion: trials pause at every rung and resume later
        "searcher": {"kind": "random", "seed": 3},
        "budget": {"max_trials": 4},
        "resources": {"cpu": 1},
        "execution": {"cpus": 2},
        "trainer": {"name": "tfclip", "preset": "tiny-cpu", "data": str(data), "overrides": TINY_OVERRIDES},
        "storage": {"root": str(root / "results")},
    }
    raw.update(changes)
    return raw


def _epochs_are_exact(rows: pd.DataFrame) -> None:
    """Per trial the reported epochs are 1, 2, 3, ...: a resumed job continues at the next epoch, never
    restarts (which would report an epoch twice) and never skips one."""
    reports = rows[rows["status"] != "failed"]
    for trial_id, group in reports.groupby("trial_id"):
        assert list(group["resource"]) == list(range(1, len(group) + 1)), f"trial {trial_id}"


def test_study_runs_to_completion_and_paused_trials_resume_at_their_epoch(
    short_tmp: Path, small_root: Path
) -> None:
    spec = parse_study(_tiny_study(short_tmp, small_root))
    outcome = run_study(spec)
    assert outcome.status == "finished" and outcome.trials == 4
    folder = StudyFolder.of(short_tmp / "results", "tiny")
    rows = folder.store.read()
    _epochs_are_exact(rows)
    # ASHA (promotion) paused every trial at epoch 1; the best were resumed at epoch 2 by a new Ray trial.
    paused = rows[rows["decision"] == "pause"]
    assert set(paused[paused["resource"] == 1]["trial_id"]) == {0, 1, 2, 3}
    resumed = rows[(rows["resource"] == 2)]["trial_id"].tolist()
    assert resumed, "no trial was promoted"
    assert rows["total_resource"].iloc[-1] == outcome.total_resource == len(rows)
    metadata = folder.store.read_metadata()
    assert metadata["status"] == "finished" and metadata["budget_used"]["epochs"] == outcome.total_resource
    assert metadata["best"]["resource"] == rows["resource"].max()
    # The best configuration is a trainer config that `agvp-hpo train` reads as is.
    config = load_config(folder.best_file)
    assert config.optim.epochs == 4 and str(config.data.root) == str(small_root.resolve())
    # Trials that will never run again left no checkpoint behind; the completed one kept its last.
    for trial_id in range(4):
        last = rows[rows["trial_id"] == trial_id].iloc[-1]
        kept = folder.trial_dir(trial_id).exists()
        assert kept == (last["status"] in ("completed", "paused")), trial_id
    completed = rows[rows["status"] == "completed"].iloc[-1]
    assert Path(completed["checkpoint"]).is_file()

    # The CLI reads the same folder.
    shown = runner.invoke(app, ["status", "tiny", "--root", str(short_tmp / "results")])
    assert shown.exit_code == 0, shown.output
    assert "finished" in shown.output and "best so far" in shown.output
    listed = runner.invoke(app, ["status", "--root", str(short_tmp / "results"), "--json"])
    assert listed.exit_code == 0 and '"tiny"' in listed.output
    best = runner.invoke(app, ["best", str(folder.path), "--yaml"])
    assert best.exit_code == 0 and yaml.safe_load(best.output)["preset"] == "tiny-cpu"
    exported = runner.invoke(app, ["export", str(folder.path), "--to", str(short_tmp / "all.parquet")])
    assert exported.exit_code == 0, exported.output
    assert len(pd.read_parquet(short_tmp / "all.parquet")) == len(rows)
    # --retrain: the best configuration at full budget, then the test protocol.
    retrained = runner.invoke(app, ["best", str(folder.path), "--k", "2", "--retrain"])
    assert retrained.exit_code == 0, retrained.output
    report = json.loads((folder.path / "retrain" / "test-report.json").read_text())
    assert "overall" in json.dumps(report)
    assert (folder.path / "retrain" / "submission.csv").is_file()


def test_failed_trials_are_recorded_and_the_study_goes_on(short_tmp: Path) -> None:
    """A trainer that raises is retried from its checkpoint (max_failures), then recorded as failed; a
    non-finite loss is recorded as failed at once. The other trials complete."""
    raw = {
        "name": "faulty",
        "space": {
            "x": {"uniform": [0.0, 1.0]},
            "crash": {"choice": [False, True]},
            "diverge": {"choice": [False, True]},
        },
        "fidelity": {"min": 1, "max": 3, "eta": 3},
        "scheduler": "fifo",
        "searcher": {"seed": 1},
        "budget": {"max_trials": 8},
        "resources": {"cpu": 1},
        "execution": {"cpus": 2, "max_failures": 1},
        "trainer": {"name": "synthetic", "overrides": {"crash_epoch": 2}},
        "storage": {"root": str(short_tmp / "results")},
    }
    outcome = run_study(parse_study(raw))
    assert outcome.status == "finished" and outcome.trials == 8
    folder = StudyFolder.of(short_tmp / "results", "faulty")
    rows = folder.store.read()
    trials = {int(t): group for t, group in rows.groupby("trial_id")}
    failures = 0
    for trial_id, group in trials.items():
        params = yaml.safe_load(group["config"].iloc[0])
        last = group.iloc[-1]
        if params["diverge"] or params["crash"]:
            failures += 1
            assert last["status"] == "failed", trial_id
            assert last["resource"] == 1  # epoch 1 was reported, epoch 2 never was
            expected = "synthetic crash at epoch 2" if params["crash"] and not params["diverge"] else ""
            assert expected in last["error"]
            if params["diverge"] and not params["crash"]:
                assert "non-finite loss" in last["error"]
        else:
            assert last["status"] == "completed" and list(group["resource"]) == [1, 2, 3]
    assert 0 < failures < 8
    assert folder.store.read_metadata()["trials"]["failed"] == failures


def test_resources_no_node_has_fail_fast(short_tmp: Path, small_root: Path) -> None:
    spec = parse_study(_tiny_study(short_tmp, small_root, resources={"cpu": 1, "gpu": 1}))
    with pytest.raises(RunError, match=r"resources.gpu is 1 per trial, but no Ray node has that many GPUs"):
        run_study(spec)
    assert not (short_tmp / "results").exists()  # nothing written: no study folder, no Ray session folder


def test_ray_asha_baseline_runs(short_tmp: Path) -> None:
    raw = {
        "name": "baseline",
        "space": {"x": {"uniform": [0.0, 1.0]}},
        "fidelity": {"min": 1, "max": 9, "eta": 3},
        "scheduler": "ray-asha",
        "budget": {"max_trials": 6},
        "execution": {"cpus": 2},
        "trainer": {"name": "synthetic"},
        "storage": {"root": str(short_tmp / "results")},
    }
    outcome = run_study(parse_study(raw))
    assert outcome.trials == 6
    rows = StudyFolder.of(short_tmp / "results", "baseline").store.read()
    _epochs_are_exact(rows)
    assert set(rows["decision"]) <= {"continue", "stop"}  # Ray's ASHA stops, never pauses
    assert (rows["status"] == "completed").any()


def test_kill_minus_nine_then_resume_loses_nothing(short_tmp: Path, small_root: Path) -> None:
    """Kill the driver mid-study, resume: every row written before the kill is still there, each report
    appears once, resumed trials continue at their exact epoch, and the rungs match the rows."""
    raw = _tiny_study(short_tmp, small_root, name="killed", budget={"max_trials": 6})
    spec_file = short_tmp / "killed.yaml"
    spec_file.write_text(yaml.safe_dump(raw))
    command = [sys.executable, "-m", "hpo.cli", "run", str(spec_file)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        command,
        cwd=short_tmp,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    folder = StudyFolder.of(short_tmp / "results", "killed")
    deadline = time.monotonic() + 240
    before = pd.DataFrame()
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if folder.path.exists():
                before = folder.store.read()
                if len(before) >= 5:
                    break
            time.sleep(0.2)
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        assert len(before) >= 5, "the study did not get going"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        time.sleep(1.0)
        # The Ray processes the killed driver started go down with it, as on a crashed machine.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    before = folder.store.read()  # what the killed driver had written
    assert folder.store.read_metadata()["status"] == "running"
    shown = runner.invoke(app, ["status", str(folder.path)])
    assert "interrupted" in shown.output

    resumed = runner.invoke(app, ["resume", str(folder.path)])
    assert resumed.exit_code == 0, resumed.output
    after = folder.store.read()
    key = ["trial_id", "resource", "decision", "value"]
    merged = before[key].merge(after[key], how="left", indicator=True)
    assert (merged["_merge"] == "both").all(), "a row written before the kill is missing"
    reports = after[after["status"] != "failed"]
    assert not reports.duplicated(["trial_id", "resource"]).any()
    _epochs_are_exact(after)
    metadata = folder.store.read_metadata()
    assert metadata["status"] == "finished" and metadata["sessions"] == 2
    # Rungs intact: the restored ASHA rung of each milestone holds exactly the trials whose rows reached it.
    state = json.loads(folder.state_file.read_text())
    rungs = state["core"]["extra"]["rungs"]
    for k, members in enumerate(rungs):
        milestone = [1, 2][k]
        reached = set(after[after["resource"] == milestone]["trial_id"])
        assert set(members) == reached, (milestone, members, reached)
    assert all(
        t["status"] in ("completed", "stopped", "paused", "failed") for _, t in state["core"]["trials"]
    )


def test_ctrl_c_stops_the_study_resumably(short_tmp: Path) -> None:
    """SIGINT (Ctrl-C) ends `run` with exit 130 and status stopped/interrupted; running trials are not
    failed, and `resume` finishes the study with every report exactly once."""
    raw = {
        "name": "interrupted",
        "space": {"x": {"uniform": [0.0, 1.0]}},
        "fidelity": {"min": 1, "max": 9, "eta": 3},
        "scheduler": "asha",
        "budget": {"max_trials": 12},
        "execution": {"cpus": 2},
        "trainer": {"name": "synthetic", "overrides": {"epoch_seconds": 0.5}},
        "storage": {"root": str(short_tmp / "results")},
    }
    spec_file = short_tmp / "interrupted.yaml"
    spec_file.write_text(yaml.safe_dump(raw))
    process = subprocess.Popen(
        [sys.executable, "-m", "hpo.cli", "run", str(spec_file)],
        cwd=short_tmp,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    folder = StudyFolder.of(short_tmp / "results", "interrupted")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if folder.path.exists() and len(folder.store.read()) >= 3:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 130, output
    assert f"agvp-hpo resume {folder.path}" in output.replace("\n", "")
    metadata = folder.store.read_metadata()
    assert (metadata["status"], metadata["reason"]) == ("stopped", "interrupted")
    before = folder.store.read()
    assert not (before["status"] == "failed").any()

    resumed = runner.invoke(app, ["resume", str(folder.path)])
    assert resumed.exit_code == 0, resumed.output
    after = folder.store.read()
    assert not after.duplicated(["trial_id", "resource"]).any() and not (after["status"] == "failed").any()
    _epochs_are_exact(after)
    assert folder.store.read_metadata()["status"] == "finished"


def test_ray_temp_dir_stays_short_enough_for_ray_sockets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ray's Unix sockets (<temp>/session_<date>_<pid>/sockets/...) must stay under 108 bytes.
    short = Path("/tmp/r")
    assert runner_module.ray_temp_dir(short) == short.resolve() / ".ray"
    long_root = tmp_path / ("x" * 60)
    chosen = runner_module.ray_temp_dir(long_root)
    assert len(str(chosen)) <= runner_module._MAX_TEMP_DIR and chosen.name.startswith("agvp-ray-")
    # a long TMPDIR too: /tmp is the last resort
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path / ("t" * 60)))
    assert runner_module.ray_temp_dir(long_root).parent == Path("/tmp")
    monkeypatch.setattr(runner_module, "_MAX_TEMP_DIR", 5)
    with pytest.raises(RunError, match="set TMPDIR to a short writable folder"):
        runner_module.ray_temp_dir(long_root)


def test_embedded_ray_gets_a_private_token_and_respects_the_users(monkeypatch: pytest.MonkeyPatch) -> None:
    # Without one, Ray 2.60 writes a new token to ~/.ray/auth_token when ray.init starts a local cluster.
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"):
        monkeypatch.delenv(name, raising=False)
    runner_module._private_cluster_token()
    token = os.environ["RAY_AUTH_TOKEN"]
    assert len(token) == 64
    runner_module._private_cluster_token()
    assert os.environ["RAY_AUTH_TOKEN"] == token  # one per process
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", "/somewhere/token")
    runner_module._private_cluster_token()
    assert "RAY_AUTH_TOKEN" not in os.environ
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    runner_module._private_cluster_token()
    assert "RAY_AUTH_TOKEN" not in os.environ
    runner_module.reset_ray_token_cache()
