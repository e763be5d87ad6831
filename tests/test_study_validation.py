"""Malformed study files fail before a GPU is spent: ``agvp-hpo validate`` and ``agvp-hpo run`` exit 2 with
exactly one stderr line naming the file and the field, no traceback, nothing written; ``POST /api/studies``
answers 422 with the same rule.

Each case mutates one valid study (the tfclip trainer on the tiny-cpu preset) in one place: YAML syntax,
unknown keys at every level, trainer keys and values in the space and in the overrides, couplings between
the space and the fidelity, absurd numbers, mixed types, an objective the trainer does not report, paths.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from hpo.cli import app
from service.api import ServiceSettings, create_app

runner = CliRunner()
TOKEN = "validation-token"


def base() -> dict[str, Any]:
    return {
        "name": "probe",
        "space": {
            "optim.lr": {"loguniform": [1.0e-4, 1.0e-2]},
            "loss.triplet_margin": {"uniform": [0.1, 0.6]},
            "model.temporal_pool": {"choice": ["mean", "attention"]},
        },
        "fidelity": {"min": 1, "max": 9, "eta": 3},
        "scheduler": {"kind": "asha"},
        "searcher": {"kind": "random", "seed": 0},
        "objective": {"metric": "val_map", "mode": "max"},
        "budget": {"max_trials": 6},
        "resources": {"cpu": 1, "gpu": 0},
        "execution": {"max_failures": 1},
        "trainer": {"name": "tfclip", "preset": "tiny-cpu", "data": "DATA", "overrides": {}},
        "storage": {"root": "RESULTS"},
    }


Mutation = Callable[[dict[str, Any]], Any]


def space(**params: Any) -> Mutation:
    return lambda s: s["space"].update({k.replace("__", "."): v for k, v in params.items()})


def section(name: str, **values: Any) -> Mutation:
    return lambda s: s[name].update(values) if isinstance(s.get(name), dict) else s.update({name: values})


def top(**values: Any) -> Mutation:
    return lambda s: s.update(values)


def override(**values: Any) -> Mutation:
    return lambda s: s["trainer"]["overrides"].update({k.replace("__", "."): v for k, v in values.items()})


# (case id, mutation of the base study or raw text, the field the message must name)
CASES: list[tuple[str, Mutation | str, str]] = [
    # -- YAML syntax and the file itself
    ("yaml-unclosed", "name: probe\nspace: {optim.lr: [1, 2\n", ""),
    ("yaml-indent", "name: probe\nspace:\n  a: 1\n b: 2\n", ""),
    ("yaml-duplicate-key", "name: a\nname: b\n", ""),
    ("yaml-tab", "name: probe\n\tspace: 1\n", ""),
    ("empty-file", "", ""),
    ("top-level-list", "- a\n- b\n", ""),
    ("top-level-scalar", "probe\n", ""),
    # -- unknown keys, every level
    ("unknown-top", top(shceduler="asha"), "shceduler"),
    ("unknown-fidelity", section("fidelity", maxx=9), "fidelity.maxx"),
    ("unknown-scheduler", section("scheduler", modee="promotion"), "scheduler.modee"),
    ("unknown-searcher", section("searcher", sed=1), "searcher.sed"),
    ("unknown-objective", section("objective", metrik="val_map"), "objective.metrik"),
    ("unknown-budget", section("budget", max_trial=3), "budget.max_trial"),
    ("unknown-resources", section("resources", gpus=1), "resources.gpus"),
    ("unknown-execution", section("execution", cpu=2), "execution.cpu"),
    ("unknown-trainer", section("trainer", preset_="tfclip"), "trainer.preset_"),
    ("unknown-storage", section("storage", rooot="x"), "storage.rooot"),
    ("unknown-param-field", space(optim__lr={"type": "float", "low": 1e-4, "hihg": 1e-2}), "space.optim.lr"),
    ("unknown-scheduler-kind", section("scheduler", kind="ashaa"), "scheduler.kind"),
    ("unknown-searcher-kind", section("searcher", kind="tpee"), "searcher.kind"),
    # -- trainer keys in the space
    ("space-key-lrr", space(optim__lrr={"loguniform": [1e-4, 1e-2]}), "space.optim.lrr"),
    ("space-key-nek", space(model__nek={"choice": ["bn", "in"]}), "space.model.nek"),
    ("space-key-hieght", space(data__transform__hieght={"choice": [64, 96]}), "space.data.transform.hieght"),
    ("space-key-pp", space(data__batch__pp={"choice": [4, 8]}), "space.data.batch.pp"),
    ("space-key-section", space(modle__tmd={"choice": [True, False]}), "space.modle.tmd"),
    ("space-key-leaf-of-section", space(optim={"choice": [1, 2]}), "space.optim"),
    # -- trainer values in the space
    (
        "space-choice-pool",
        space(model__temporal_pool={"choice": ["mean", "max_pool"]}),
        "space.model.temporal_pool",
    ),
    ("space-choice-batch-p", space(data__batch__p={"choice": [0, -1]}), "space.data.batch.p"),
    (
        "space-smoothing-high",
        space(loss__label_smoothing={"uniform": [0.0, 1.5]}),
        "space.loss.label_smoothing",
    ),
    ("space-seq-len-zero", space(data__sampling__seq_len={"choice": [0, 4]}), "space.data.sampling.seq_len"),
    ("space-neck-ln", space(model__neck={"choice": ["bn", "ln"]}), "space.model.neck"),
    (
        "space-size-format",
        space(data__transform__size={"choice": ["64x32", "64-32"]}),
        "space.data.transform.size",
    ),
    ("space-dropout-one", space(model__ssp_dropout={"uniform": [0.0, 1.0]}), "space.model.ssp_dropout"),
    ("space-precision", space(optim__precision={"choice": ["fp32", "fp16"]}), "space.optim.precision"),
    ("space-weight-negative", space(loss__id_weight={"uniform": [-1.0, 1.0]}), "space.loss.id_weight"),
    # -- trainer keys and values in the overrides
    ("override-key", override(optim__lrr=1e-3), "trainer.overrides.optim.lrr"),
    (
        "override-nested-key",
        lambda s: s["trainer"].update({"overrides": {"optim": {"lrr": 1}}}),
        "trainer.overrides.optim.lrr",
    ),
    ("override-value", override(optim__lr=-1.0), "trainer.overrides.optim.lr"),
    ("override-choice", override(model__neck="xx"), "trainer.overrides.model.neck"),
    ("override-and-space", override(optim__lr=1e-3), "trainer.overrides.optim.lr"),
    ("unknown-preset", section("trainer", preset="tiny"), "trainer.preset"),
    (
        "synthetic-setting",
        lambda s: s["trainer"].update({"name": "synthetic", "overrides": {"epoch_secs": 1}}),
        "trainer.overrides.epoch_secs",
    ),
    # -- couplings between the space, the overrides and the fidelity
    ("warmup-vs-fidelity", space(optim__warmup_epochs={"randint": [1, 10]}), "space.optim.warmup_epochs"),
    ("milestones-vs-epochs", override(optim__milestones=[20, 10]), "trainer.overrides.optim.milestones"),
    ("tmd-off-frame-loss", space(model__tmd={"choice": [True, False]}), "space.model.tmd"),
    (
        "hyperband-one-rung",
        lambda s: s.update({"scheduler": "hyperband", "fidelity": {"min": 4, "max": 9, "eta": 3}}),
        "fidelity.max",
    ),
    (
        "initial-fidelity",
        lambda s: s.update({"scheduler": {"kind": "mfho", "initial_fidelity": 9}}),
        "scheduler.initial_fidelity",
    ),
    (
        "grace-period",
        lambda s: s.update({"scheduler": {"kind": "ray-asha", "grace_period": 9}}),
        "scheduler.grace_period",
    ),
    ("fidelity-order", section("fidelity", min=9, max=9), "fidelity.max"),
    # -- absurd numbers
    ("fidelity-max-1e21", section("fidelity", max=1e21), "fidelity.max"),
    ("fidelity-max-huge", section("fidelity", max=10**9), "fidelity.max"),
    ("max-trials-1e300", section("budget", max_trials=1.0e300), "budget.max_trials"),
    ("eta-1000", section("fidelity", eta=1000), "fidelity.eta"),
    ("eta-fraction", section("fidelity", eta=2.5), "fidelity.eta"),
    ("cpu-1e9", section("resources", cpu=1e9), "resources.cpu"),
    ("gpu-fraction", section("resources", gpu=1.5), "resources.gpu"),
    ("wall-clock-years", section("budget", wall_clock="99999d"), "budget.wall_clock"),
    ("max-resource-1e30", section("budget", max_resource=1e30), "budget.max_resource"),
    ("fidelity-min-zero", section("fidelity", min=0), "fidelity.min"),
    ("max-failures", section("execution", max_failures=1000), "execution.max_failures"),
    ("cpus-zero", section("execution", cpus=0), "execution.cpus"),
    ("bool-count", section("budget", max_trials=True), "budget.max_trials"),
    ("no-budget", lambda s: s.update({"budget": {}}), "budget"),
    # -- mixed types and malformed parameters
    ("mixed-bool-str", space(model__tmd={"choice": [False, "", True]}), "space.model.tmd.choices"),
    ("mixed-num-str", space(data__batch__p={"choice": [4, "8"]}), "space.data.batch.p.choices"),
    ("loguniform-three", space(optim__lr={"loguniform": [1e-4, 1e-3, 1e-2]}), "space.optim.lr.loguniform"),
    ("loguniform-strings", space(optim__lr={"loguniform": ["a", "b", "c"]}), "space.optim.lr.loguniform"),
    ("loguniform-zero", space(optim__lr={"loguniform": [0, 1e-2]}), "space.optim.lr.low"),
    ("randint-float", space(data__batch__p={"randint": [2.5, 8]}), "space.data.batch.p.low"),
    (
        "uniform-reversed",
        space(loss__triplet_margin={"uniform": [0.6, 0.1]}),
        "space.loss.triplet_margin.low",
    ),
    ("choice-empty", space(model__neck={"choice": []}), "space.model.neck.choice"),
    ("choice-repeated", space(model__neck={"choice": ["bn", "bn"]}), "space.model.neck.choices[1]"),
    ("empty-space", lambda s: s.update({"space": {}}), "space"),
    # -- the objective
    ("metric-unreported", section("objective", metric="val_mAP"), "objective.metric"),
    ("metric-loss", section("objective", metric="loss"), "objective.metric"),
    ("mode-word", section("objective", mode="maximize"), "objective.mode"),
    # -- names and paths
    ("name-slash", top(name="a/b"), "name"),
    ("name-empty", top(name=""), "name"),
    ("data-empty", lambda s: s["trainer"].update({"data": ""}), "trainer.data"),
    ("data-missing", lambda s: s["trainer"].pop("data"), "trainer.data"),
    ("weights-empty", lambda s: s["trainer"].update({"weights": " "}), "trainer.weights"),
]


def _text(case: Mutation | str, data: Path, results: Path) -> str:
    if isinstance(case, str):
        return case
    study = base()
    case(study)
    text = yaml.safe_dump(study, sort_keys=False)
    return text.replace("DATA", str(data)).replace("RESULTS", str(results))


def test_there_are_at_least_sixty_cases_and_the_base_is_valid(tmp_path: Path) -> None:
    assert len(CASES) >= 60 and len({c[0] for c in CASES}) == len(CASES)
    path = tmp_path / "base.yaml"
    path.write_text(_text(lambda s: None, tmp_path, tmp_path / "results"))
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "valid" in result.stdout


@pytest.mark.parametrize(("case", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_malformed_study_is_one_line_and_writes_nothing(tmp_path: Path, case: Any, field: str) -> None:
    results = tmp_path / "results"
    path = tmp_path / "study.yaml"
    text = _text(case, tmp_path, results)
    path.write_text(text)
    for command in (["validate", str(path)], ["run", str(path)]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, (command, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        line = lines[0]
        assert line.startswith(f"error: {path}: "), line
        assert field in line, (field, line)
        assert "Traceback" not in result.output and "  ," not in line and " , " not in line
        assert not results.exists(), "a failed check wrote something"
    client = TestClient(create_app(ServiceSettings(store=results, token=TOKEN)))
    results.mkdir()
    response = client.post(
        "/api/studies",
        content=text.encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "content-type": "application/yaml"},
    )
    assert response.status_code == 422, response.json()
    rule = line.removeprefix(f"error: {path}: ")
    assert response.json()["message"] == f"<submitted study>: {rule}"
    assert list(results.iterdir()) == []  # nothing submitted, nothing written


@pytest.mark.parametrize(
    ("bundled", "plan"),
    [
        ("demo.yaml", "each round (configurations at epochs): 9 at 1 -> 3 at 3 -> 1 at 9"),
        ("mfho.yaml", "hyperband trains it alone to 81 epochs first"),
        ("hyperband.yaml", "one pass: 1581 epochs"),
    ],
)
def test_validate_prints_the_plan_of_each_scheduler(bundled: str, plan: str) -> None:
    result = runner.invoke(app, ["validate", bundled, "--epoch-time", "20m"])
    assert result.exit_code == 0, result.output
    assert plan in " ".join(result.stdout.split()), result.stdout
    assert "budget:" in result.stdout


def test_validate_explains_the_hedge(tmp_path: Path) -> None:
    from search_spaces import BUNDLED_DIR

    study = yaml.safe_load((BUNDLED_DIR / "mfho.yaml").read_text(encoding="utf-8"))
    study["scheduler"] = {"kind": "mfho-hedge"}
    path = tmp_path / "hedge.yaml"
    path.write_text(yaml.safe_dump(study), encoding="utf-8")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "mfho-hedge uses these brackets but not these counts" in text
    assert "it is the first configuration" in text  # the prior, without Hyperband's probe
