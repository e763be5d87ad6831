"""Your own trainer (issue 16, part 2): ``trainer.name`` as an installed entry point or an import path, and
the example package ``examples/custom_trainer`` (``agvp-toy-trainer``) run end to end.

The example is installed once per module into a temporary ``--target`` folder (never into the shared venv:
``pip install -e`` would change it for everyone), from a copy of the folder (a setuptools build writes
``build/`` and ``*.egg-info`` next to its sources). That folder goes on ``sys.path`` for this process and on
``PYTHONPATH`` for the processes it starts - the CLI subprocess and the embedded Ray's workers, which inherit
the driver's environment. Entry points are found through the ``*.dist-info`` folder pip writes there.

Entry points and object references follow the PyPA entry-points specification
(packaging.python.org/en/latest/specifications/entry-points/, "Data model": an object reference is
``importable.module:object.attr``); ``importlib.metadata.entry_points(group=...)`` reads them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from hpo.cli import app
from hpo.ray_backend.runner import run_study
from hpo.study import parse_study
from hpo.study.folder import StudyFolder
from hpo.study.loader import StudyError
from hpo.study.validate import validate_study
from trainers.protocol import (
    ENTRY_POINT_GROUP,
    Budget,
    CheckpointError,
    NonFiniteLossError,
    TrainerConfigError,
    TrainerLoadError,
    get_trainer,
    installed_trainers,
)
from trainers.synthetic import SyntheticTrainer

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "custom_trainer"
IMPORT_PATH = "agvp_toy_trainer:ToyTrainer"
runner = CliRunner()


@pytest.fixture(scope="module")
def toy_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The example installed into a folder of its own, importable here and in every child process."""
    base = tmp_path_factory.mktemp("toy-trainer")
    source, site = base / "src", base / "site"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--no-build-isolation",  # the venv's setuptools; nothing is downloaded
        "--no-index",
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--quiet",
        "--target",
        str(site),
        str(source),
    ]
    # pip's user agent runs `rustc --version`; a rustup proxy then writes its settings under RUSTUP_HOME
    env = {**os.environ, "TMPDIR": str(base), "RUSTUP_HOME": str(base / "rustup")}
    done = subprocess.run(command, cwd=base, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(site))
        inherited = os.environ.get("PYTHONPATH")
        patch.setenv("PYTHONPATH", os.pathsep.join([str(site), *([inherited] if inherited else [])]))
        yield site
        for name in [m for m in sys.modules if m.split(".")[0] == "agvp_toy_trainer"]:
            del sys.modules[name]


@pytest.fixture
def keep_threads() -> Iterator[None]:
    """The toy trainer sets torch's thread count (``threads``); give this process its own back."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _study(root: Path, **changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "toy",
        "space": {"optim.lr": {"loguniform": [0.003, 0.3]}, "model.hidden": {"randint": [8, 32]}},
        "fidelity": {"min": 1, "max": 3, "eta": 3},  # rungs at 1 and 3 epochs
        "scheduler": {"kind": "asha"},  # promotion: trials pause at epoch 1, the best resume to 3
        "searcher": {"kind": "random", "seed": 1},
        "objective": {"metric": "val_acc", "mode": "max"},
        "budget": {"max_trials": 4},
        "resources": {"cpu": 1},
        "execution": {"cpus": 2},
        "trainer": {"name": "toy", "preset": "tiny-cpu", "overrides": {"optim.batch_size": 64}},
        "storage": {"root": str(root / "results")},
    }
    raw.update(changes)
    return raw


def _trainer(**changes: Any) -> dict[str, Any]:
    return {"name": "toy", "preset": "tiny-cpu", "overrides": {"optim.batch_size": 64}, **changes}


# --- resolution ---------------------------------------------------------------------------------------------


def test_the_entry_point_and_the_import_path_name_the_installed_toy_trainer(toy_site: Path) -> None:
    entry = installed_trainers()["toy"]
    assert entry.group == ENTRY_POINT_GROUP and entry.value == IMPORT_PATH
    assert entry.dist is not None and Path(str(entry.dist.locate_file(""))) == toy_site
    by_entry, by_path = get_trainer("toy"), get_trainer(IMPORT_PATH)
    assert type(by_entry).__name__ == type(by_path).__name__ == "ToyTrainer"
    assert type(by_entry).__module__ == "agvp_toy_trainer.trainer"
    assert by_entry.metric_names({}) == ("val_acc", "val_loss", "train_loss")


def _write_plugin(folder: Path) -> None:
    """A module of near-trainers, a module whose own import fails, and a distribution whose entry points
    clash with a built-in name."""
    (folder / "agvp_plugins_for_test.py").write_text(
        textwrap.dedent(
            """
            class Complete:
                name = "complete"
                def check(self, settings, params): pass
                def metric_names(self, settings): return ("score",)
                def resolved_config(self, settings, params): return dict(params)
                def fit(self, settings, params, *, budget, checkpoint_dir, resume_from, report): pass

            class NoFit:
                def check(self, settings, params): pass
                def metric_names(self, settings): return ("score",)
                def resolved_config(self, settings, params): return {}

            class FitNotCallable(NoFit):
                fit = 3

            class NeedsArguments(Complete):
                def __init__(self, size): self.size = size

            INSTANCE = Complete()
            """
        ),
        encoding="utf-8",
    )
    (folder / "agvp_plugin_missing_dependency.py").write_text(
        "import agvp_no_such_dependency  # noqa: F401\n", encoding="utf-8"
    )
    dist = folder / "agvp_clash-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: agvp-clash\nVersion: 0.1\n", encoding="utf-8"
    )
    (dist / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nsynthetic = agvp_plugins_for_test:Complete\n"
        "complete = agvp_plugins_for_test:INSTANCE\n",
        encoding="utf-8",
    )


def test_builtins_win_over_entry_points_and_instances_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_plugin(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "agvp_plugins_for_test", raising=False)
    assert installed_trainers()["synthetic"].value == "agvp_plugins_for_test:Complete"
    assert isinstance(get_trainer("synthetic"), SyntheticTrainer)  # the built-in, not the entry point
    instance = get_trainer("complete")  # an entry point naming an instance: used as it is
    assert instance is sys.modules["agvp_plugins_for_test"].INSTANCE
    created = get_trainer("agvp_plugins_for_test:Complete")  # a class: created with no arguments
    assert type(created).__name__ == "Complete" and created is not instance


@pytest.mark.parametrize(
    ("name", "fragments"),
    [
        (
            "tyo",
            [
                "trainer is 'tyo', but must be one of tfclip, synthetic, an entry point of group "
                "agvp_hpo.trainers (",
                "toy",
                "or an import path module:attribute (did you mean toy?)",
            ],
        ),
        (
            "agvp_no_such_module:Trainer",
            [
                "trainer 'agvp_no_such_module:Trainer' (import path): cannot import module "
                "'agvp_no_such_module' (ModuleNotFoundError: No module named 'agvp_no_such_module')",
                "importable on every node (installed, or on PYTHONPATH)",
            ],
        ),
        (
            "agvp_plugin_missing_dependency:Trainer",
            [
                "cannot import module 'agvp_plugin_missing_dependency' (ModuleNotFoundError: No module "
                "named 'agvp_no_such_dependency')"
            ],
        ),
        (
            "agvp_toy_trainer:ToyTrainr",
            ["module 'agvp_toy_trainer' has no attribute 'ToyTrainr'", "ToyTrainer?"],
        ),
        (
            "agvp_plugins_for_test:NoFit",
            ["class NoFit is not a trainer: no method fit (a trainer has check,"],
        ),
        ("agvp_plugins_for_test:FitNotCallable", ["class FitNotCallable is not a trainer: no method fit "]),
        (
            "agvp_plugins_for_test:NeedsArguments",
            ["class NeedsArguments cannot be created with no arguments (TypeError:", "size"],
        ),
        ("agvp_plugins_for_test:INSTANCE.name", ["(import path): an instance of str is not a trainer"]),
    ],
)
def test_a_name_that_gives_no_trainer_is_one_line(
    toy_site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, fragments: list[str]
) -> None:
    _write_plugin(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for module in ("agvp_plugins_for_test", "agvp_plugin_missing_dependency"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(TrainerLoadError) as caught:
        get_trainer(name)
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("my_pkg.train:", "an import path must be module:attribute"),
        ("a:b:c", "an import path must be module:attribute"),
        ("1pkg:Trainer", "an import path must be module:attribute"),
        ("my trainer", "an entry-point name (letters, digits, _ . -)"),
    ],
)
def test_the_name_syntax_is_checked_when_the_file_is_read(name: str, rule: str) -> None:
    with pytest.raises(StudyError) as caught:
        parse_study(_study(Path("r"), trainer=_trainer(name=name)), source="s.yaml")
    assert caught.value.field == "trainer.name" and rule in str(caught.value)
    assert str(caught.value).startswith(f"s.yaml: trainer.name is {name!r}")


def test_a_well_formed_name_is_resolved_only_by_validation() -> None:
    # nothing is imported while reading: the module need only exist where the study is validated and run
    spec = parse_study(_study(Path("r"), trainer=_trainer(name="agvp_absent.pkg:Trainer")), source="s.yaml")
    assert "agvp_absent" not in sys.modules
    with pytest.raises(StudyError) as caught:
        validate_study(spec, source="s.yaml")
    assert caught.value.field == "trainer.name"
    assert str(caught.value).startswith(
        "s.yaml: trainer.name: trainer 'agvp_absent.pkg:Trainer' (import path)"
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("tyo", "trainer.name: trainer is 'tyo', but must be one of tfclip, synthetic"),
        ("agvp_no_such_module:Trainer", "trainer.name: trainer 'agvp_no_such_module:Trainer' (import path)"),
    ],
)
def test_cli_validate_reports_a_bad_name_with_the_file_and_field(
    toy_site: Path, tmp_path: Path, name: str, expected: str
) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(_study(tmp_path, trainer=_trainer(name=name))), encoding="utf-8")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: {expected}"), result.output


# --- the toy trainer's settings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "params", "key", "message"),
    [
        (
            {"overrides": {"optim.lrr": 0.1}},
            {},
            "optim.lrr",
            "unknown key optim.lrr (did you mean optim.lr?)",
        ),
        ({}, {"optim.lr": -1.0}, "optim.lr", "optim.lr: must be a number > 0, got -1.0"),
        ({}, {"model.hidden": 2.5}, "model.hidden", "model.hidden: must be an integer in [1, 4096], got 2.5"),
        ({}, {"model.dropout": True}, "model.dropout", "model.dropout: must be a number in [0, 1), got True"),
        ({}, {"model.depth": 9}, "model.depth", "model.depth: must be an integer in [1, 8], got 9"),
        ({}, {"optim.momentum": "high"}, "optim.momentum", "must be a number in [0, 1), got 'high'"),
        (
            {"overrides": {"optim": {"batch_size": 500}}},  # nested overrides are the same keys
            {},
            "optim.batch_size",
            "optim.batch_size: must be at most the 384 training samples, got 500",
        ),
        ({"preset": "hardd"}, {}, None, "preset 'hardd' is not one of tiny-cpu, hard (did you mean hard?)"),
        ({"data": "/data"}, {}, None, "trainer.data: the toy trainer generates its data"),
    ],
)
def test_the_toy_trainer_refuses_bad_settings_naming_the_key(
    toy_site: Path, settings: dict[str, Any], params: dict[str, Any], key: str | None, message: str
) -> None:
    trainer = get_trainer("toy")
    with pytest.raises(TrainerConfigError) as caught:
        trainer.check({"preset": "tiny-cpu", **settings}, params)
    assert caught.value.key == key and message in str(caught.value) and "\n" not in str(caught.value)


def test_the_toy_trainer_resolves_preset_overrides_and_params(toy_site: Path) -> None:
    trainer = get_trainer("toy")
    config = trainer.resolved_config(
        {"preset": "hard", "overrides": {"optim": {"momentum": 0.5}}}, {"optim.lr": 0.2, "model.hidden": 16.0}
    )
    assert config["problem.classes"] == 8 and config["optim.momentum"] == 0.5 and config["optim.lr"] == 0.2
    assert config["model.hidden"] == 16 and isinstance(config["model.hidden"], int)
    assert config["optim.batch_size"] == 32  # the default


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        (
            {"trainer": _trainer(overrides={"optim.lrr": 0.1})},
            "trainer.overrides.optim.lrr",
            "trainer.overrides.optim.lrr: is not a key of trainer 'toy' (did you mean optim.lr?)",
        ),
        (
            {"space": {"model.depth": {"randint": [1, 12]}}},
            "space.model.depth",
            "space.model.depth: the trainer refuses values 9..12 of [1, 12]",
        ),
        (
            {"space": {"optim.lrate": {"uniform": [0.01, 0.1]}}},
            "space.optim.lrate",
            "space.optim.lrate: is not a key of trainer 'toy' (did you mean optim.lr?)",
        ),
        (
            {"trainer": _trainer(preset="hardd")},
            "trainer.preset",
            "trainer.preset: preset 'hardd' is not one",
        ),
        (
            {"objective": {"metric": "val_map", "mode": "max"}},
            "objective.metric",
            "objective.metric is 'val_map', but trainer 'toy' reports val_acc, val_loss, train_loss",
        ),
    ],
)
def test_a_study_with_a_bad_toy_setting_fails_validation_naming_the_field(
    toy_site: Path, tmp_path: Path, changes: dict[str, Any], field: str, fragment: str
) -> None:
    spec = parse_study(_study(tmp_path, **changes), source="toy.yaml")
    with pytest.raises(StudyError) as caught:
        validate_study(spec, source="toy.yaml")
    assert caught.value.field == field and str(caught.value).startswith(f"toy.yaml: {fragment}"), caught.value


# --- the toy trainer's fit ------------------------------------------------------------------------------


def test_the_toy_trainer_learns_resumes_exactly_and_refuses_another_configs_checkpoint(
    toy_site: Path, tmp_path: Path, keep_threads: None
) -> None:
    import torch

    trainer = get_trainer("toy")
    settings = {"preset": "tiny-cpu", "overrides": {"model.dropout": 0.2}}  # dropout: a random stream too
    params = {"optim.lr": 0.05, "model.hidden": 24}
    straight: list[dict[str, Any]] = []
    trainer.fit(
        settings,
        params,
        budget=Budget(3),
        checkpoint_dir=tmp_path / "a",
        resume_from=None,
        report=straight.append,
    )
    assert [r["epoch"] for r in straight] == [1, 2, 3]
    assert straight[-1]["val_acc"] > 0.5  # 4 classes: chance is 0.25
    assert Path(straight[-1]["checkpoint"]) == tmp_path / "a" / "checkpoint.pt"
    first: list[dict[str, Any]] = []
    trainer.fit(
        settings,
        params,
        budget=Budget(1),
        checkpoint_dir=tmp_path / "b",
        resume_from=None,
        report=first.append,
    )
    saved = tmp_path / "b1.pt"
    shutil.copyfile(tmp_path / "b" / "checkpoint.pt", saved)
    rest: list[dict[str, Any]] = []
    trainer.fit(
        settings,
        params,
        budget=Budget(3),
        checkpoint_dir=tmp_path / "b",
        resume_from=saved,
        report=rest.append,
    )
    assert [r["epoch"] for r in rest] == [2, 3]  # continues, never restarts
    strip = [{k: v for k, v in r.items() if k != "checkpoint"} for r in [*first, *rest]]
    assert strip == [{k: v for k, v in r.items() if k != "checkpoint"} for r in straight]
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 3
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    momentum_a = [s["momentum_buffer"] for s in a["optimizer"]["state"].values()]
    momentum_b = [s["momentum_buffer"] for s in b["optimizer"]["state"].values()]
    assert all(torch.equal(x, y) for x, y in zip(momentum_a, momentum_b, strict=True))
    with pytest.raises(CheckpointError, match="different configuration"):
        trainer.fit(
            settings,
            {**params, "model.hidden": 25},
            budget=Budget(3),
            checkpoint_dir=tmp_path / "c",
            resume_from=saved,
            report=lambda _: None,
        )


def test_the_toy_trainer_trains_on_a_data_fraction_and_fails_on_a_non_finite_loss(
    toy_site: Path, tmp_path: Path, keep_threads: None
) -> None:
    trainer = get_trainer("toy")
    settings = {"preset": "tiny-cpu", "overrides": {}}
    full: list[dict[str, Any]] = []
    half: list[dict[str, Any]] = []
    trainer.fit(
        settings, {}, budget=Budget(1), checkpoint_dir=tmp_path / "f", resume_from=None, report=full.append
    )
    trainer.fit(
        settings,
        {},
        budget=Budget(1, 0.25),
        checkpoint_dir=tmp_path / "h",
        resume_from=None,
        report=half.append,
    )
    assert full[0]["train_loss"] != half[0]["train_loss"] and full[0]["val_acc"] != half[0]["val_acc"]
    with pytest.raises(NonFiniteLossError) as caught:
        trainer.fit(
            settings,
            {"optim.lr": 1.0e6},
            budget=Budget(2),
            checkpoint_dir=tmp_path / "n",
            resume_from=None,
            report=lambda _: None,
        )
    assert caught.value.epoch == 1


def test_the_example_study_validates_in_a_fresh_cli_process(toy_site: Path, tmp_path: Path) -> None:
    """The bundled study file, through the installed console script: the entry point is found in a process
    that only has the folder on PYTHONPATH (as a Ray worker has)."""
    cli = Path(sys.executable).parent / "agvp-hpo"
    done = subprocess.run(
        [str(cli), "validate", str(EXAMPLE / "study.yaml")],
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "valid" in done.stdout and "trainer toy (preset tiny-cpu)" in done.stdout
    assert not any(tmp_path.iterdir())  # validate writes nothing


# --- studies on Ray -------------------------------------------------------------------------------------


# One Ray study (each costs ~40 s here): by entry point. The import path resolves through the same
# get_trainer in the workers, tested without Ray above.
@pytest.mark.parametrize("name", ["toy"])
def test_a_study_with_the_toy_trainer_runs_end_to_end_on_ray(
    toy_site: Path, short_tmp: Path, keep_threads: None, name: str
) -> None:
    spec = parse_study(_study(short_tmp, trainer=_trainer(name=name)), source="toy.yaml")
    outcome = run_study(spec, source="toy.yaml")
    assert outcome.status == "finished" and outcome.trials == 4
    folder = StudyFolder.of(short_tmp / "results", "toy")
    rows = folder.store.read()
    for trial_id, group in rows.groupby("trial_id"):  # each epoch once: a promoted trial never restarts
        assert list(group["resource"]) == list(range(1, len(group) + 1)), trial_id
    assert set(rows[(rows["resource"] == 1) & (rows["decision"] == "pause")]["trial_id"]) == {0, 1, 2, 3}
    promoted = rows[rows["resource"] == 3]
    assert len(promoted) >= 1, "no trial was promoted"
    assert {"metric_val_loss", "metric_train_loss"} <= set(rows.columns)
    assert rows["node"].astype(str).str.len().min() > 0  # reported from a Ray worker, which imported it
    # The promoted job resumed the epoch-1 checkpoint in a new Ray trial: its epoch-3 result is exactly
    # what one uninterrupted run of 3 epochs gives here.
    last = promoted.iloc[0]
    params = json.loads(last["config"])
    direct: list[dict[str, Any]] = []
    get_trainer(name).fit(
        {"preset": "tiny-cpu", "overrides": {"optim.batch_size": 64}},
        params,
        budget=Budget(3),
        checkpoint_dir=short_tmp / "direct",
        resume_from=None,
        report=direct.append,
    )
    assert last["value"] == pytest.approx(direct[-1]["val_acc"], abs=1e-9)
    assert last["metric_train_loss"] == pytest.approx(direct[-1]["train_loss"], rel=1e-6)
    best = yaml.safe_load(folder.best_file.read_text(encoding="utf-8"))
    assert best["trainer"]["name"] == name and set(best["params"]) == {"optim.lr", "model.hidden"}
    shown = runner.invoke(app, ["best", str(folder.path), "--yaml"])
    assert shown.exit_code == 0 and yaml.safe_load(shown.output)["trainer"]["name"] == name, shown.output


def test_a_wrong_toy_key_fails_before_ray_starts(toy_site: Path, short_tmp: Path) -> None:
    import ray

    path = short_tmp / "toy.yaml"
    raw = _study(short_tmp, trainer=_trainer(overrides={"optim.batch_sise": 64}))
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == (
        f"error: {path}: trainer.overrides.optim.batch_sise: is not a key of trainer 'toy' "
        "(did you mean optim.batch_size?)"
    )
    assert not ray.is_initialized() and not (short_tmp / "results").exists()
