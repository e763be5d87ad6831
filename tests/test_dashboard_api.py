"""The API the dashboard adds: parameter importance per fidelity, and the per-epoch node / checkpoint / error
of a trial's curve (its detail view); plus the vendored charting library the page loads, served offline."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from fastapi.testclient import TestClient
from service_store import write_study

from hpo.study import load_study
from hpo.study.folder import StudyFolder
from hpo.study.optuna_export import to_memory_study
from service.api import ServiceSettings, create_app


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store")
    write_study(root, "alpha")
    return root


@pytest.fixture
def client(store: Path) -> TestClient:
    return TestClient(create_app(ServiceSettings(store=store)))


def test_importance_defaults_to_the_highest_fidelity_three_trials_reached(
    client: TestClient, store: Path
) -> None:
    rows = StudyFolder.of(store, "alpha").store.read()
    reached = rows[rows["value"].notna()].groupby("resource")["trial_id"].nunique()
    expected = int(reached[reached >= 3].index.max())
    answer = client.get("/api/studies/alpha/importance").json()
    assert answer["fidelity"] == expected and answer["trials"] == int(reached[expected])
    assert answer["method"] == "optuna PED-ANOVA" and answer["note"] is None
    names = [item["param"] for item in answer["items"]]
    assert sorted(names) == ["kind", "x"]
    scores = [item["importance"] for item in answer["items"]]
    assert scores == sorted(scores, reverse=True) and math.isclose(sum(scores), 1.0, rel_tol=1e-6)


def test_importance_is_optunas_on_the_view_at_that_fidelity(client: TestClient, store: Path) -> None:
    # optuna 5.0.0 optuna/importance/__init__.py:27 get_param_importances, :128 PED-ANOVA is the default
    # evaluator (what hpo/study/plots.py importance_evaluator picks, also on Optuna 3.6-4.x).
    folder = StudyFolder.of(store, "alpha")
    view = to_memory_study(
        folder.store.read(), load_study(folder.spec_file), finished=True, live=False, fidelity=1
    )
    expected = optuna.importance.get_param_importances(
        view, evaluator=optuna.importance.PedAnovaImportanceEvaluator()
    )
    answer = client.get("/api/studies/alpha/importance", params={"fidelity": 1}).json()
    assert answer["fidelity"] == 1 and answer["trials"] == 12
    assert {i["param"]: pytest.approx(i["importance"]) for i in answer["items"]} == dict(expected)


def test_importance_with_too_few_trials_or_no_report_there(client: TestClient) -> None:
    few = client.get("/api/studies/alpha/importance", params={"fidelity": 9}).json()
    assert few["items"] == [] and few["trials"] == 1
    assert few["note"] == "1 trial(s) reported at 9: too few to compare (at least 3)"
    missing = client.get("/api/studies/alpha/importance", params={"fidelity": 10})
    assert missing.status_code == 400
    body = missing.json()
    assert body["message"].startswith("fidelity 10: no trial reported there") and "\n" not in body["message"]
    assert client.get("/api/studies/nope/importance").status_code == 404


def test_importance_is_cached_until_the_files_change(client: TestClient) -> None:
    reader = client.app.state.reader  # type: ignore[attr-defined]
    first = client.get("/api/studies/alpha/importance", params={"fidelity": 3}).content
    computed = reader.computations
    assert client.get("/api/studies/alpha/importance", params={"fidelity": 3}).content == first
    assert reader.computations == computed


def test_curve_points_carry_node_checkpoint_and_error(client: TestClient, store: Path) -> None:
    rows = StudyFolder.of(store, "alpha").store.read()
    own = rows[rows["trial_id"] == 1]
    points = client.get("/api/studies/alpha/trials/1/curve").json()["points"]
    assert [p["checkpoint"] for p in points] == list(own["checkpoint"])
    assert [p["node"] for p in points] == list(own["node"]) and all(p["error"] == "" for p in points)
    every = client.get("/api/studies/alpha/curves").json()
    assert next(c for c in every if c["trial_id"] == 1)["points"] == points


def test_the_charting_library_is_served_from_the_package(client: TestClient) -> None:
    page = client.get("/").text
    assert '<script src="/static/vendor/echarts.min.js"></script>' in page and "//cdn" not in page
    script = client.get("/static/vendor/echarts.min.js")
    assert script.status_code == 200 and len(script.content) > 500_000
    assert b"Licensed to the Apache Software Foundation" in script.content[:400]
    for name in ("echarts.LICENSE", "echarts.NOTICE"):
        assert client.get(f"/static/vendor/{name}").status_code == 200


def test_importance_is_in_the_openapi_schema(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/api/studies/{study_id}/importance"]["get"]
    assert [p["name"] for p in operation["parameters"]] == ["study_id", "fidelity"]
    assert "Importances" in operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
