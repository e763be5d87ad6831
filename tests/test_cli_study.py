"""The study commands' answers to bad input, and the pieces behind them that need no Ray: building the
core from a study, the trainer registry, reading result rows into trials and best configurations."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from hpo.cli import app
from hpo.study import parse_study
from hpo.study.analysis import best_config_yaml, best_trials, trial_table
from hpo.study.build import core_from_spec, max_total_epochs, trainer_settings
from hpo.study.folder import StudyFolder
from trainers.protocol import CHECKPOINT_FILE, Budget, CheckpointError, NonFiniteLossError, get_trainer
from trainers.tfclip.config import load_config, trial_config

runner = CliRunner()


def _raw(root: Path, data: Path | None = None, **changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "cli",
        "space": {"optim.lr": {"loguniform": [1e-4, 1e-2]}},
        "fidelity": {"min": 1, "max": 9, "eta": 3},
        "scheduler": "mfho",
        "budget": {"max_trials": 3},
        "trainer": {"name": "tfclip", "preset": "tiny-cpu", "data": str(data or root / "data")},
        "storage": {"root": str(root / "results")},
    }
    raw.update(changes)
    return raw


def _write(path: Path, raw: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(raw))
    return path


def test_run_with_missing_data_fails_before_ray_and_writes_nothing(tmp_path: Path) -> None:
    spec = _write(tmp_path / "s.yaml", _raw(tmp_path))
    result = runner.invoke(app, ["run", str(spec)])
    assert result.exit_code == 2
    assert "trainer.data" in result.output and "is not a folder" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "results").exists()


def test_run_refuses_an_existing_study(tmp_path: Path, small_root: Path) -> None:
    folder = StudyFolder.of(tmp_path / "results", "cli")
    folder.path.mkdir(parents=True)
    folder.store.write_metadata({"status": "finished"})
    spec = _write(tmp_path / "s.yaml", _raw(tmp_path, small_root))
    result = runner.invoke(app, ["run", str(spec)])
    assert result.exit_code == 2 and "already exists" in result.output and "--name" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["resume", "nope"], "no study at"),
        (["status", "nope"], "no study at"),
        (["best", "nope"], "no study at"),
        (["export", "nope", "--to", "x.csv"], "must end in .parquet"),
    ],
)
def test_bad_study_references(tmp_path: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, [*args, "--root", str(tmp_path)])
    assert result.exit_code == 2 and message in result.output


def test_resume_refuses_a_finished_study(tmp_path: Path, small_root: Path) -> None:
    folder = StudyFolder.of(tmp_path / "results", "cli")
    folder.path.mkdir(parents=True)
    folder.spec_file.write_text(yaml.safe_dump(_raw(tmp_path, small_root)))
    folder.store.write_metadata({"status": "finished"})
    result = runner.invoke(app, ["resume", str(folder.path)])
    assert result.exit_code == 2 and "has finished" in result.output


def test_status_of_an_empty_root(tmp_path: Path) -> None:
    result = runner.invoke(app, ["status", "--root", str(tmp_path)])
    assert result.exit_code == 0 and "no studies" in result.output


def test_core_from_spec_maps_every_section(tmp_path: Path) -> None:
    spec = parse_study(_raw(tmp_path, budget={"max_trials": 5, "max_resource": 2, "unit": "fbe"}))
    core = core_from_spec(spec)
    assert (core.name, core.max_resource, core.reduction_factor, core.max_trials) == ("mfho", 9, 3, 5)
    assert core.max_total_resource == max_total_epochs(spec) == 18
    stopping = core_from_spec(parse_study(_raw(tmp_path, scheduler={"kind": "asha", "mode": "stopping"})))
    assert stopping.asha_mode == "stopping"  # type: ignore[attr-defined]
    rounds = core_from_spec(
        parse_study(_raw(tmp_path, scheduler={"kind": "mfho", "promote_fraction": 0.5, "max_rounds": 4}))
    )
    assert (rounds.promote_fraction, rounds.max_rounds, rounds.round_size) == (0.5, 4, 4)  # type: ignore[attr-defined]
    hedge = core_from_spec(parse_study(_raw(tmp_path, scheduler={"kind": "mfho-hedge", "min_pairs": 5})))
    assert (hedge.name, hedge.min_pairs) == ("mfho-hedge", 5)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="has no core"):
        core_from_spec(parse_study(_raw(tmp_path, scheduler="ray-asha")))


def test_trainer_settings_resolve_paths_and_defaults(tmp_path: Path, small_root: Path) -> None:
    spec = parse_study(_raw(tmp_path, small_root, resources={"cpu": 2}))
    settings = trainer_settings(spec)
    assert settings["data"] == str(small_root.resolve())
    assert settings["overrides"] == {"optim.epochs": 9, "runtime.threads": 2}
    config = trial_config(settings, {"optim.lr": 0.002})
    assert (config.optim.lr, config.optim.epochs, config.runtime.threads) == (0.002, 9, 2)
    fixed = parse_study(
        _raw(
            tmp_path,
            small_root,
            trainer={**_raw(tmp_path)["trainer"], "overrides": {"optim": {"epochs": 20}}},
        )
    )
    assert trainer_settings(fixed)["overrides"]["optim.epochs"] == 20
    assert trial_config(trainer_settings(fixed), {}).optim.epochs == 20
    cached = parse_study(
        _raw(
            tmp_path,
            small_root,
            trainer={**_raw(tmp_path)["trainer"], "overrides": {"runtime": {"cache_dir": "rel/cache"}}},
        )
    )
    assert trainer_settings(cached)["overrides"]["runtime.cache_dir"] == str(Path("rel/cache").resolve())


def test_synthetic_trainer_resumes_exactly_and_fails_on_request(tmp_path: Path) -> None:
    trainer = get_trainer("synthetic")
    reports: list[dict[str, Any]] = []
    trainer.fit(
        {}, {"x": 0.3}, budget=Budget(2), checkpoint_dir=tmp_path, resume_from=None, report=reports.append
    )
    trainer.fit(
        {},
        {"x": 0.3},
        budget=Budget(4),
        checkpoint_dir=tmp_path,
        resume_from=tmp_path / CHECKPOINT_FILE,
        report=reports.append,
    )
    assert [r["epoch"] for r in reports] == [1, 2, 3, 4]
    assert reports[3]["val_map"] > reports[0]["val_map"] > 0
    with pytest.raises(CheckpointError, match="different configuration"):
        trainer.fit(
            {},
            {"x": 0.4},
            budget=Budget(5),
            checkpoint_dir=tmp_path / "b",
            resume_from=tmp_path / CHECKPOINT_FILE,
            report=reports.append,
        )
    with pytest.raises(RuntimeError, match="synthetic crash at epoch 2"):
        trainer.fit(
            {},
            {"crash": True},
            budget=Budget(3),
            checkpoint_dir=tmp_path / "c",
            resume_from=None,
            report=reports.append,
        )
    with pytest.raises(NonFiniteLossError):
        trainer.fit(
            {},
            {"diverge": True},
            budget=Budget(3),
            checkpoint_dir=tmp_path / "d",
            resume_from=None,
            report=reports.append,
        )
    # a smaller data fraction lowers the curve; the budget refuses nonsense
    low: list[dict[str, Any]] = []
    trainer.fit(
        {},
        {"x": 0.3},
        budget=Budget(2, 0.25),
        checkpoint_dir=tmp_path / "e",
        resume_from=None,
        report=low.append,
    )
    assert low[1]["val_map"] < reports[1]["val_map"]
    for epochs, fraction in ((0, 1.0), (2, 0.0), (2, 1.5), (2, float("nan"))):
        with pytest.raises(ValueError, match="budget"):
            Budget(epochs, fraction)
    with pytest.raises(Exception, match="must be one of tfclip, synthetic"):
        get_trainer("nope")


def _rows(records: list[tuple[int, int, float, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "trial_id": t,
                "resource": r,
                "value": v,
                "status": s,
                "bracket": 0,
                "config": json.dumps({"a": t}),
            }
            for t, r, v, s in records
        ]
    )


def test_trials_and_best_rank_by_fidelity_then_value(tmp_path: Path) -> None:
    rows = _rows(
        [
            (0, 1, 0.9, "paused"),
            (1, 1, 0.5, "paused"),
            (1, 2, 0.6, "completed"),
            (2, 1, 0.7, "running"),
            (2, 2, math.nan, "failed"),
            (3, 1, 0.2, "stopped"),
        ]
    )
    table = trial_table(rows, finished=True).set_index("trial_id")
    assert table.loc[0, "status"] == "stopped"  # a paused trial of a finished study never resumes
    assert (table.loc[2, "resource"], table.loc[2, "value"]) == (1, 0.7)  # the last value, not the NaN
    ranked = best_trials(rows, "max", k=3)
    assert list(ranked["trial_id"]) == [1, 0, 3]  # 2 failed; 2 epochs beat 1; then by value
    assert list(best_trials(rows, "min", k=3)["trial_id"]) == [1, 3, 0]
    assert best_trials(_rows([]), "max").empty


def test_best_config_yaml_is_a_trainer_config(tmp_path: Path, small_root: Path) -> None:
    spec = parse_study(_raw(tmp_path, small_root))
    path = tmp_path / "best.yaml"
    path.write_text(best_config_yaml(spec, {"optim.lr": 0.003}))
    config = load_config(path)
    assert (config.optim.lr, config.optim.epochs, config.runtime.threads) == (0.003, 9, None)


def test_rung_spread_uses_the_highest_rung_with_two_trials() -> None:
    from hpo.cli.study import rung_spread

    rows = _rows(
        [(0, 1, 0.2, "paused"), (1, 1, 0.3, "paused"), (2, 1, 0.1, "stopped"), (1, 3, 0.5, "paused")]
    )
    rows["rung"] = [0, 0, 0, 1]
    assert rung_spread(rows) == (1, 3, 0.1, 0.3)  # rung 1 has a single trial
    rows.loc[len(rows)] = {**rows.iloc[3].to_dict(), "trial_id": 0, "value": 0.45}
    assert rung_spread(rows) == (3, 2, 0.45, 0.5)
    assert rung_spread(rows.iloc[:0]) is None
