"""``agvp-hpo export STUDY --to sqlite:///...`` (our rows as an Optuna study, loaded back with Optuna) and
``agvp-hpo plot`` (Optuna's figures of it).

Optuna behaviour these tests rely on, read in the installed optuna 5.0.0 (optuna/optuna on GitHub):
``optuna/trial/_frozen.py`` ``FrozenTrial._validate`` L315-321 (a FAIL trial has no value, a COMPLETE one
a non-NaN value, any other finished state may carry one); ``optuna/visualization/_intermediate_values.py``
L96 and ``optuna/visualization/matplotlib/_intermediate_values.py`` L61 (one trace / line per trial named
``Trial{number}``, which the learning-curve figure recolours by bracket).

Study folders are written by the simulator (hpo/simulator: a scheduler core on the synthetic trainer's
curve, no Ray, no driver), stored as ``run`` stores them: rows in the Parquet store, study.yaml,
study.json.
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState
from service_store import synthetic_spec
from typer.testing import CliRunner

from hpo.cli import app
from hpo.results import RESOURCE, STATUS, TRIAL_ID, VALUE
from hpo.simulator import simulate
from hpo.space import parse_space
from hpo.study import dump_study, load_study
from hpo.study.analysis import best_trials, trial_table
from hpo.study.build import core_from_spec
from hpo.study.folder import StudyFolder
from hpo.study.optuna_export import build_trials, optuna_distribution
from hpo.study.plots import FIGURES, view_fidelity
from trainers.synthetic import curve

runner = CliRunner()


def write_study(
    root: Path, name: str, *, status: str = "finished", fails: Any = None, **changes: Any
) -> StudyFolder:
    """A study folder with every row of a simulated run of the study's scheduler (one row per epoch)."""
    spec = synthetic_spec(root, name, **changes)
    result = simulate(
        core_from_spec(spec),
        lambda config, epoch: curve(config, epoch),
        report_every_epoch=True,
        study=name,
        metric=spec.objective.metric,
        fails=fails,
    )
    folder = StudyFolder.of(root, name)
    folder.path.mkdir(parents=True)
    folder.spec_file.write_text(dump_study(spec))
    folder.store.append(result.rows)
    folder.store.write_metadata({"name": name, "spec": spec.to_dict(), "status": status})
    return folder


@pytest.fixture(scope="module")
def hyperband_study(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A finished Hyperband study (3 brackets, 15 trials on the synthetic curve)."""
    root = tmp_path_factory.mktemp("optuna-export")
    return write_study(root, "hb", scheduler="hyperband", budget={"max_trials": 15})


@pytest.fixture(autouse=True)
def _matplotlib_config(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """matplotlib caches its font list under MPLCONFIGDIR (default ~/.config or ~/.cache): not the home."""
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path_factory.getbasetemp() / "matplotlib"))


def _export(folder: Any, url: str, *extra: str) -> Any:
    return runner.invoke(app, ["export", str(folder.path), "--to", url, *extra])


def test_exported_study_loads_back_with_the_same_trials_values_and_best(
    hyperband_study: Any, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    result = _export(hyperband_study, url)
    assert result.exit_code == 0, result.output
    assert "15 trials" in result.output and "optuna-dashboard" in result.output

    study = optuna.load_study(study_name="hb", storage=url)
    rows = hyperband_study.store.read()
    table = trial_table(rows, finished=True).set_index("trial_id")
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert study.metric_names == ["val_map"]
    assert len(study.trials) == rows[TRIAL_ID].nunique() == 15
    expected_state = {"completed": TrialState.COMPLETE, "stopped": TrialState.PRUNED}
    for trial in study.trials:
        ours = int(trial.user_attrs["trial_id"])
        assert trial.number == ours
        own = rows[rows[TRIAL_ID] == ours]
        assert trial.state == expected_state[table.loc[ours, "status"]]
        assert trial.state != TrialState.COMPLETE or int(own[RESOURCE].max()) == 9
        assert trial.value == pytest.approx(float(own.loc[own[RESOURCE].idxmax(), VALUE]))
        assert trial.intermediate_values == pytest.approx(dict(zip(own[RESOURCE], own[VALUE], strict=True)))
        assert trial.params == table.loc[ours, "params"]
        assert trial.distributions == {
            "x": FloatDistribution(0.0, 1.0),
            "kind": CategoricalDistribution(["a", "b"]),
        }
        assert trial.user_attrs["bracket"] == int(own["bracket"].iloc[-1])
        assert trial.user_attrs["rung"] == int(own["rung"].max())
        assert trial.user_attrs["resource"] == int(own[RESOURCE].max())
    counts = pd.Series([t.state.name for t in study.trials]).value_counts().to_dict()
    assert counts == {
        "COMPLETE": (table["status"] == "completed").sum(),
        "PRUNED": (table["status"] == "stopped").sum(),
    }
    best = best_trials(rows, "max", k=1).iloc[0]
    assert study.best_trial.user_attrs["trial_id"] == best["trial_id"]
    assert study.best_value == pytest.approx(best["value"])
    assert not list(tmp_path.glob(".*.tmp")), "the temporary database was left behind"


def test_every_param_kind_maps_to_its_distribution_and_inactive_ones_are_absent(tmp_path: Path) -> None:
    space = {
        "lr": {"loguniform": [1e-5, 1e-2]},
        "width": {"lograndint": [8, 64]},
        "depth": {"randint": [1, 4]},
        "pool": {"choice": ["mean", "attention"]},
        "heads": {"choice": [2, 4], "when": {"pool": "attention"}},
        "seed": 7,
    }
    parsed = parse_space(space)
    assert optuna_distribution(parsed.params["lr"]) == FloatDistribution(1e-5, 1e-2, log=True)
    assert optuna_distribution(parsed.params["width"]) == IntDistribution(8, 64, log=True)
    assert optuna_distribution(parsed.params["depth"]) == IntDistribution(1, 4)
    assert optuna_distribution(parsed.params["heads"]) == CategoricalDistribution([2, 4])

    folder = write_study(tmp_path, "kinds", space=space, scheduler="fifo", fidelity={"min": 1, "max": 2})
    rows = folder.store.read()
    trials = build_trials(rows, load_study(folder.spec_file), finished=True, live=False)
    assert len(trials) == rows[TRIAL_ID].nunique() == 12
    pools = {t.params["pool"] for t in trials}
    assert pools == {"mean", "attention"}, "the seeded draw should try both poolings"
    for trial in trials:
        assert ("heads" in trial.params) == (trial.params["pool"] == "attention")
        assert set(trial.distributions) == set(trial.params)
        assert "seed" not in trial.params and trial.user_attrs["fixed"] == {"seed": 7}
        assert trial.state == TrialState.COMPLETE


def test_failed_paused_and_running_trials(hyperband_study: Any) -> None:
    spec = load_study(hyperband_study.spec_file)
    rows = hyperband_study.store.read()
    # trial 4 failed at its first epoch (as the driver writes it: value NaN, status failed, an error)
    failed = rows.index[rows[TRIAL_ID] == 4][-1]
    rows.loc[failed, [VALUE, STATUS, "error"]] = [math.nan, "failed", "RuntimeError: boom"]
    # trial 0 is paused (its last row), trial 9 running, in a study that is not finished
    rows.loc[rows.index[rows[TRIAL_ID] == 9][-1], STATUS] = "running"
    rows.loc[rows.index[rows[TRIAL_ID] == 0][-1], STATUS] = "paused"
    by_id = {t.user_attrs["trial_id"]: t for t in build_trials(rows, spec, finished=False, live=True)}
    assert by_id[4].state == TrialState.FAIL and by_id[4].value is None
    assert by_id[4].user_attrs["error"] == "RuntimeError: boom"
    for trial_id, status in ((0, "paused"), (9, "running")):
        trial = by_id[trial_id]
        assert trial.state == TrialState.PRUNED
        assert trial.user_attrs["status"] == status and trial.user_attrs["resumable"] is True
        assert trial.value == pytest.approx(max(trial.intermediate_values.items())[1])
    last = rows.groupby(TRIAL_ID)[STATUS].last()
    for trial_id in last.index[last.isin(["stopped", "completed"])]:
        assert by_id[trial_id].user_attrs["resumable"] is False
    # a finished study never resumes a paused trial: stopped, not resumable
    finished = {t.user_attrs["trial_id"]: t for t in build_trials(rows, spec, finished=True, live=False)}
    assert finished[0].user_attrs["status"] == "stopped" and finished[0].user_attrs["resumable"] is False
    # the view at one fidelity: exactly the trials that reported there, COMPLETE with their value there
    view = build_trials(rows, spec, finished=True, live=False, fidelity=3)
    at_three = rows[(rows[RESOURCE] == 3) & rows[VALUE].notna()]
    assert sorted(t.user_attrs["trial_id"] for t in view) == sorted(at_three[TRIAL_ID].unique())
    for trial in view:
        assert trial.state == TrialState.COMPLETE and max(trial.intermediate_values) == 3
        assert trial.value == pytest.approx(trial.intermediate_values[3])


def test_an_existing_optuna_study_is_refused_unless_overwrite(hyperband_study: Any, tmp_path: Path) -> None:
    db = tmp_path / "study.db"
    url = f"sqlite:///{db}"
    assert _export(hyperband_study, url).exit_code == 0
    before = db.read_bytes()
    again = _export(hyperband_study, url)
    assert again.exit_code == 2
    assert "exists already" in again.output and "--overwrite" in again.output
    assert len(again.output.strip().splitlines()) == 1 and "Traceback" not in again.output
    assert db.read_bytes() == before, "a refused export must not touch the database"

    other = _export(hyperband_study, url, "--study-name", "hb-copy")
    assert other.exit_code == 0, other.output
    assert sorted(optuna.get_all_study_names(storage=url)) == ["hb", "hb-copy"]
    replaced = _export(hyperband_study, url, "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert sorted(optuna.get_all_study_names(storage=url)) == ["hb", "hb-copy"]
    assert len(optuna.load_study(study_name="hb", storage=url).trials) == 15
    with sqlite3.connect(db) as connection:  # the rename left a sound database file
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.db"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--to", "sqlite:///{tmp}/missing/study.db"], "does not exist"),
        (["--to", "nosuchdialect://x/y"], "cannot open the Optuna storage"),
        (["--format", "optuna", "--to", "{tmp}/study.parquet"], "is not an Optuna storage URL"),
        (["--format", "csv", "--to", "{tmp}/x.csv"], "must be parquet or optuna"),
        (["--to", "{tmp}/x.csv"], "must end in .parquet"),
        (["--to", "{tmp}/x.parquet", "--overwrite"], "apply to an Optuna export only"),
    ],
)
def test_export_errors_are_one_line_and_write_nothing(
    hyperband_study: Any, tmp_path: Path, args: list[str], message: str
) -> None:
    filled = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = runner.invoke(app, ["export", str(hyperband_study.path), *filled])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_parquet_export_still_works(hyperband_study: Any, tmp_path: Path) -> None:
    result = _export(hyperband_study, str(tmp_path / "all.parquet"))
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "all.parquet"), hyperband_study.store.read())


def test_plot_writes_html_and_png_for_every_figure(hyperband_study: Any, tmp_path: Path) -> None:
    out = tmp_path / "figures"
    result = runner.invoke(app, ["plot", str(hyperband_study.path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "skipped" not in result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["plotly.min.js", *(f"{f}.{ext}" for f in FIGURES for ext in ("html", "png"))])
    for figure in FIGURES:
        assert (out / f"{figure}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        page = (out / f"{figure}.html").read_text()
        assert 'src="plotly.min.js"' in page, "the pages share the folder's plotly.min.js (offline)"
    curves = (out / "learning_curves.html").read_text()
    assert all(f'"bracket {b}"' in curves for b in (0, 1, 2)), "learning curves are coloured by bracket"
    assert "Trial0" not in curves
    # three trials reached 9 epochs: the parameter figures compare them there
    assert "fidelity 9" in result.output and "trials at 9 epochs" in (out / "slice.html").read_text()


def test_plot_fidelity_choice_and_errors(hyperband_study: Any, tmp_path: Path) -> None:
    rows = hyperband_study.store.read()
    assert view_fidelity(rows) == 9
    assert view_fidelity(rows, 3) == 3
    assert view_fidelity(rows[rows[RESOURCE] <= 3]) == 3
    assert view_fidelity(rows[rows[RESOURCE] <= 8]) == 8  # trials 1, 10 and 14 trained on to 9 epochs
    two_went_on = rows[(rows[RESOURCE] <= 8) & (rows[TRIAL_ID] != 14)]
    assert view_fidelity(two_went_on) == 3  # 4..8 epochs: two trials, fewer than 3
    assert view_fidelity(rows[rows[TRIAL_ID] == 14]) == 9  # nowhere 3 trials: the most, then the highest
    bad = runner.invoke(app, ["plot", str(hyperband_study.path), "--out", str(tmp_path), "--fidelity", "10"])
    assert bad.exit_code == 2 and "--fidelity 10: no trial reported there" in bad.output
    missing = runner.invoke(app, ["plot", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert missing.exit_code == 2 and "no study at" in missing.output
    assert list(tmp_path.iterdir()) == []


def test_plot_without_plotly_names_the_package_and_the_install_command(
    hyperband_study: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "plotly" else real(name, *a)
    )
    result = runner.invoke(app, ["plot", str(hyperband_study.path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "needs plotly" in result.output and "pip install plotly" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_a_trial_that_crashed_is_a_failed_optuna_trial_without_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the simulator's trainer crashes trial configurations of kind "b" at their 2nd epoch
    folder = write_study(
        tmp_path,
        "crashy",
        scheduler="fifo",
        budget={"max_trials": 6},
        fidelity={"min": 1, "max": 3},
        fails=lambda config, epoch: config["kind"] == "b" and epoch == 2,
    )
    rows = folder.store.read()
    crashed = set(rows.loc[rows[STATUS] == "failed", TRIAL_ID])
    assert crashed and len(crashed) < 6, "the seeded draw should give both kinds"
    monkeypatch.chdir(tmp_path)  # a relative sqlite path is relative to the working directory
    assert _export(folder, "sqlite:///crashy.db").exit_code == 0
    study = optuna.load_study(study_name="crashy", storage="sqlite:///crashy.db")
    for trial in study.trials:
        if trial.number in crashed:
            assert trial.state == TrialState.FAIL and trial.value is None
            assert list(trial.intermediate_values) == [1], "the report before the crash is kept"
        else:
            assert trial.state == TrialState.COMPLETE and sorted(trial.intermediate_values) == [1, 2, 3]


def test_a_figure_optuna_cannot_draw_is_skipped_with_its_reason(
    hyperband_study: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import optuna.visualization

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("needs at least two trials")

    monkeypatch.setattr(optuna.visualization, "plot_slice", refuse)
    out = tmp_path / "figures"
    result = runner.invoke(app, ["plot", str(hyperband_study.path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "skipped slice: needs at least two trials" in result.output
    assert not (out / "slice.html").exists() and not (out / "slice.png").exists()
    assert (out / "param_importances.html").is_file() and (out / "param_importances.png").is_file()
