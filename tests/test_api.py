"""The public Python API (``import hpo``): load / validate a study from a file or a mapping, run it (one small
synthetic study on the embedded Ray), read it back, and get the same one-line errors the CLI prints."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import hpo
from hpo.cli import app
from hpo.study import dump_study, parse_study
from hpo.study.analysis import rung_table
from hpo.study.folder import StudyFolder

runner = CliRunner()


def _raw(root: Path, **changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "api",
        "space": {"x": {"uniform": [0.0, 1.0]}, "y": {"choice": ["a", "b"]}},
        "fidelity": {"min": 1, "max": 3, "eta": 3},  # rungs at 1 and 3 epochs
        "scheduler": "asha",  # promotion: every trial pauses at epoch 1, the best go on to 3
        "searcher": {"kind": "random", "seed": 2},
        "budget": {"max_trials": 4},
        "resources": {"cpu": 1},
        "execution": {"cpus": 2},
        "trainer": {"name": "synthetic"},
        "storage": {"root": str(root / "results")},
    }
    raw.update(changes)
    return raw


def _write(path: Path, raw: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def _cli_error(args: list[str]) -> str:
    """The line the CLI prints after ``error:`` (exit code 2)."""
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.output
    return lines[0].removeprefix("error: ")


def test_import_hpo_loads_neither_ray_torch_nor_pandas_and_every_public_name_resolves() -> None:
    code = (
        "import sys, hpo; heavy = ('ray', 'torch', 'pandas'); "
        "before = [m for m in heavy if m in sys.modules]; "
        "[getattr(hpo, name) for name in hpo.__all__]; "
        "print(before, [m for m in ('ray', 'torch') if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[] []"  # nothing heavy on import; no Ray or torch for the names
    assert issubclass(hpo.StudyError, hpo.AgvpError) and issubclass(hpo.RunError, hpo.AgvpError)
    assert issubclass(hpo.StoreError, hpo.AgvpError) and issubclass(hpo.NoTrialError, hpo.AgvpError)
    assert set(hpo.__all__) <= set(dir(hpo))
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        hpo.nope  # type: ignore[attr-defined]  # noqa: B018


def test_a_study_loads_alike_from_a_file_a_mapping_and_a_spec(tmp_path: Path) -> None:
    raw = _raw(tmp_path)
    from_file = hpo.load_study(_write(tmp_path / "api.yaml", raw))
    from_dict = hpo.load_study(raw)
    assert from_file == from_dict == parse_study(raw)
    assert hpo.validate(from_dict) == from_dict
    assert hpo.load_study(raw, name="other").name == "other"
    # a spec edited without validation is checked again
    edited = from_dict.model_copy(update={"name": "not a folder name!"})
    with pytest.raises(
        hpo.StudyError, match=r"^study 'not a folder name!': name must be .*\(it names a folder\)"
    ):
        hpo.validate(edited)
    with pytest.raises(TypeError, match="a file path, a mapping or a StudySpec, not int"):
        hpo.load_study(3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"shceduler": "asha"}, "unknown key 'shceduler' (did you mean 'scheduler'?)"),  # the schema
        ({"objective": {"metric": "val_mAP"}}, "objective.metric is 'val_mAP'"),  # the trainer's metrics
        ({"trainer": {"name": "synthetic", "overrides": {"epoch_seconds": -1}}}, "epoch_seconds"),  # its keys
    ],
)
def test_errors_are_the_one_line_messages_of_the_cli(
    tmp_path: Path, change: dict[str, Any], field: str
) -> None:
    raw = _raw(tmp_path, **change)
    path = _write(tmp_path / "bad.yaml", raw)
    with pytest.raises(hpo.StudyError) as from_file:
        hpo.load_study(path)
    message = str(from_file.value)
    assert "\n" not in message and field in message and message.startswith(f"{path}: ")
    assert _cli_error(["validate", str(path)]) == message
    assert _cli_error(["run", str(path)]) == message  # run checks the same way, before anything starts
    with pytest.raises(hpo.AgvpError) as from_dict:  # the one class to catch
        hpo.load_study(raw)
    assert str(from_dict.value) == message.replace(str(path), "<study>")
    with pytest.raises(hpo.StudyError) as running:
        hpo.run(raw)
    assert str(running.value) == str(from_dict.value)
    assert not (tmp_path / "results").exists()  # nothing written


def test_options_are_keyword_only(tmp_path: Path) -> None:
    raw = _raw(tmp_path)
    study = hpo.Study(tmp_path / "results" / "api")
    calls = [
        lambda: hpo.load_study(raw, "other"),  # type: ignore[misc]
        lambda: hpo.validate(raw, "source"),  # type: ignore[misc]
        lambda: hpo.run(raw, "other"),  # type: ignore[misc]
        lambda: hpo.resume("api", tmp_path),  # type: ignore[misc]
        lambda: hpo.open_study("api", tmp_path),  # type: ignore[misc]
        lambda: hpo.list_studies(tmp_path),  # type: ignore[misc]
        lambda: study.best(3),  # type: ignore[misc]
        lambda: study.failures(3),  # type: ignore[misc]
        lambda: study.best_trainer_config(0),  # type: ignore[misc]
    ]
    for call in calls:
        with pytest.raises(TypeError, match="positional argument"):
            call()
    assert not (tmp_path / "results").exists()


def test_a_study_without_results_reads_empty_and_has_no_best(tmp_path: Path) -> None:
    with pytest.raises(hpo.StoreError) as missing:
        hpo.open_study("nope", root=tmp_path)
    assert _cli_error(["status", "nope", "--root", str(tmp_path)]) == str(missing.value)
    spec = parse_study(_raw(tmp_path))
    folder = StudyFolder.of(tmp_path / "results", "api")
    folder.path.mkdir(parents=True)
    folder.spec_file.write_text(dump_study(spec))
    folder.store.write_metadata({"name": "api", "status": "stopped", "spec": spec.to_dict()})
    study = hpo.open_study("api", root=tmp_path / "results")
    assert (study.status, study.metric, study.mode) == ("stopped", "val_map", "max")
    assert study.rows().empty and study.trials().empty and study.best(k=3).empty
    assert list(study.rungs().columns) == ["bracket", "rung", "resource", "trials", "advanced"]
    assert study.rungs().empty and study.failures() == {"count": 0, "errors": []}
    assert study.summary["budget_used"] is None and study.summary["best"] is None
    with pytest.raises(hpo.NoTrialError) as no_best:
        study.best_trainer_config()
    assert str(no_best.value) == "study api has no trial with a value yet"
    assert _cli_error(["best", str(study.path)]) == str(no_best.value)
    with pytest.raises(ValueError, match="k is 0, but must be >= 1"):
        study.best(k=0)


def test_run_then_read_the_study_back_as_the_cli_shows_it(short_tmp: Path) -> None:
    """The one Ray study of this file: run it from its file with a progress callback, then read it back."""
    path = _write(short_tmp / "api.yaml", _raw(short_tmp))
    summaries: list[hpo.StudySummary] = []
    study = hpo.run(path, progress=summaries.append)
    outcome = study.outcome
    assert outcome is not None and (outcome.status, outcome.trials) == ("finished", 4)
    assert summaries and all(isinstance(s, hpo.StudySummary) for s in summaries)
    assert summaries[-1].total_resource == outcome.total_resource and summaries[-1].trials == 4

    root = short_tmp / "results"
    opened = hpo.open_study("api", root=root)
    assert opened.path == study.path == root / "api"
    assert [s.name for s in hpo.list_studies(root=root)] == ["api"]
    assert (opened.status, opened.metric, opened.mode) == ("finished", "val_map", "max")
    rows = opened.rows()
    plain = pd.read_parquet(root / "api" / "results")  # what plain pandas reads of the folder
    assert len(plain) == len(rows) and set(plain.columns) == set(rows.columns)
    assert len(rows) == outcome.total_resource  # one row per epoch trained
    summary = opened.summary
    assert summary["status"] == "finished" and summary["budget_used"]["epochs"] == outcome.total_resource
    assert summary["best"]["trial_id"] == int(opened.best(k=1)["trial_id"].iloc[0])
    trials = opened.trials()
    assert sorted(trials["trial_id"]) == [0, 1, 2, 3]

    # best: ranked by the highest fidelity reached, then the value there - what `status --json` lists
    best = opened.best(k=2)
    assert len(best) == 2 and best["resource"].iloc[0] == 3
    shown = runner.invoke(app, ["status", str(opened.path), "--json"])
    assert shown.exit_code == 0, shown.output
    listed = json.loads(shown.output)
    assert [row["trial_id"] for row in listed["best"]] == list(opened.best(k=5)["trial_id"])
    assert opened.best_params == best["params"].iloc[0] and opened.best_value == best["value"].iloc[0]

    # the rung table `status` draws: every trial reported at epoch 1; some went on to 3
    rungs = opened.rungs()
    assert rungs.to_dict(orient="records") == rung_table(rows)
    first = rungs[rungs["resource"] == 1].iloc[0]
    assert first["trials"] == 4 and 0 < first["advanced"] < 4
    status_text = runner.invoke(app, ["status", str(opened.path)]).output
    assert "rungs" in status_text and "went further" in status_text

    # the best as a trainer config: exactly what `agvp-hpo best --yaml` prints, and best.yaml holds
    text = opened.best_trainer_config_yaml()
    printed = runner.invoke(app, ["best", str(opened.path), "--yaml"])
    assert printed.exit_code == 0 and printed.output == text
    assert (root / "api" / "best.yaml").read_text() == text
    config = opened.best_trainer_config()
    assert config["params"] == opened.best_params and config["trainer"]["name"] == "synthetic"
    other = int(trials["trial_id"][trials["trial_id"] != best["trial_id"].iloc[0]].iloc[0])
    assert opened.best_trainer_config(trial=other)["params"] == trials.set_index("trial_id")["params"][other]
    with pytest.raises(hpo.NoTrialError, match=r"^study api has no trial 99$"):
        opened.best_trainer_config(trial=99)

    exported = opened.export(short_tmp / "all.parquet")
    assert len(pd.read_parquet(exported)) == len(rows)

    # resuming a finished study: the CLI's one line, before Ray starts
    with pytest.raises(hpo.RunError) as finished:
        hpo.resume("api", root=root)
    assert str(finished.value) == "study 'api' has finished; nothing to resume"
    assert _cli_error(["resume", "api", "--root", str(root)]) == str(finished.value)
    with pytest.raises(hpo.RunError, match="already exists"):
        hpo.run(path)  # a second run of the same name is refused, also before Ray starts
