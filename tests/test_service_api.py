"""The REST API against real study folders: reads, caching by file state, errors, authentication, submit."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from service_store import synthetic_spec, write_study

from hpo.results import STUDY
from hpo.study.lock import StudyLock
from service.api import ServiceSettings, create_app

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store")
    write_study(root, "alpha")
    write_study(root, "beta", scheduler="hyperband", status="running")
    return root


@pytest.fixture
def client(store: Path) -> TestClient:
    return TestClient(create_app(ServiceSettings(store=store, token=TOKEN)))


def test_health_and_list(client: TestClient) -> None:
    health = client.get("/api/health").json()
    assert health == {
        "status": "ok",
        "store": health["store"],
        "studies": 2,
        "writes_enabled": True,
        "version": "1",
    }
    studies = client.get("/api/studies").json()
    assert [s["id"] for s in studies] == ["alpha", "beta"]
    alpha = studies[0]
    assert alpha["status"] == "finished" and alpha["metric"] == "val_map" and alpha["mode"] == "max"
    assert sum(alpha["trials"].values()) == 12 and alpha["best"]["resource"] == 9
    assert studies[1]["status"] == "running"  # no driver pid recorded: not known to be dead


def test_study_trials_filter_sort_page(client: TestClient) -> None:
    detail = client.get("/api/studies/alpha").json()
    assert detail["spec"]["name"] == "alpha" and detail["best_so_far"][-1]["value"] == detail["best"]["value"]
    everything = client.get("/api/studies/alpha/trials", params={"limit": 1000}).json()
    assert everything["total"] == 12 and [t["trial_id"] for t in everything["items"]] == list(range(12))
    completed = client.get("/api/studies/alpha/trials", params={"state": "completed"}).json()
    assert completed["total"] >= 1 and all(t["status"] == "completed" for t in completed["items"])
    by_value = client.get(
        "/api/studies/alpha/trials", params={"sort": "value", "order": "desc", "limit": 3}
    ).json()
    values = [t["value"] for t in by_value["items"]]
    assert values == sorted(values, reverse=True) and len(values) == 3
    page = client.get("/api/studies/alpha/trials", params={"offset": 10, "limit": 5}).json()
    assert [t["trial_id"] for t in page["items"]] == [10, 11]
    rung1 = client.get("/api/studies/alpha/trials", params={"rung": 1}).json()
    assert 0 < rung1["total"] < 12


def test_best_curve_and_rungs(client: TestClient) -> None:
    best = client.get("/api/studies/alpha/best", params={"k": 3}).json()
    assert len(best["items"]) == 3 and best["items"][0]["resource"] == 9
    config = yaml.safe_load(best["yaml"])
    assert config["params"] == best["items"][0]["params"]  # the synthetic trainer's best-config form
    text = client.get("/api/studies/alpha/best.yaml")
    assert text.status_code == 200 and text.headers["content-type"].startswith("application/yaml")
    top = best["items"][0]["trial_id"]
    curve = client.get(f"/api/studies/alpha/trials/{top}/curve").json()
    assert [p["resource"] for p in curve["points"]] == list(range(1, 10))
    rungs = client.get("/api/studies/alpha/rungs").json()
    assert rungs[0] == {**rungs[0], "rung": 0, "resource": 1, "trials": 12}
    assert rungs[0]["advanced"] == rungs[1]["trials"]
    curves = client.get("/api/studies/alpha/curves").json()
    assert len(curves) == 12


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/api/studies/nope", 404, "no study named 'nope'"),
        ("/api/studies/a.b", 400, "must be 1-64 letters"),
        ("/api/studies/..%2F..%2Fetc", 404, "Not Found"),
        ("/api/studies/%2Fetc", 404, "Not Found"),
        ("/api/studies/alpha/trials/999/curve", 404, "has no trial 999"),
        ("/api/studies/alpha/trials?limit=0", 422, "limit"),
        ("/api/studies/alpha/trials?state=dancing", 422, "state"),
        ("/api/nothing", 404, "Not Found"),
    ],
)
def test_errors_are_json_with_a_message(client: TestClient, path: str, status: int, message: str) -> None:
    response = client.get(path)
    assert response.status_code == status
    body = response.json()
    assert body["status"] == status and message in body["message"]


def test_reads_are_cached_until_the_files_change(store: Path) -> None:
    app = create_app(ServiceSettings(store=store))
    client = TestClient(app)
    reader = app.state.reader
    client.get("/api/studies/alpha/best")
    computed = reader.computations
    for _ in range(5):
        client.get("/api/studies/alpha/best")
    assert reader.computations == computed  # unchanged files: nothing recomputed
    folder = reader.folder("alpha")
    rows = folder.store.read()
    extra = rows.iloc[[-1]].to_dict("records")
    extra[0]["trial_id"] = 99
    extra[0][STUDY] = "alpha"
    folder.store.append(extra)
    try:
        client.get("/api/studies/alpha/best")
        assert reader.computations > computed
        assert client.get("/api/studies/alpha/trials", params={"limit": 1000}).json()["total"] == 13
    finally:
        part = folder.store.files()[-1]
        part.unlink()


def test_writes_need_the_token(store: Path, client: TestClient) -> None:
    assert client.post("/api/studies/beta/stop").status_code == 401
    wrong = client.post("/api/studies/beta/stop", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403 and wrong.json()["message"] == "wrong token"
    disabled = TestClient(create_app(ServiceSettings(store=store)))
    refused = disabled.post("/api/studies/beta/stop", headers={"Authorization": f"Bearer {TOKEN}"})
    assert refused.status_code == 403 and "writes are disabled" in refused.json()["message"]
    finished = client.post("/api/studies/alpha/stop", headers={"Authorization": f"Bearer {TOKEN}"})
    assert finished.status_code == 409
    stopped = client.post("/api/studies/beta/stop", headers={"Authorization": f"Bearer {TOKEN}"})
    assert stopped.status_code == 202 and (store / "beta" / "STOP").is_file()
    (store / "beta" / "STOP").unlink()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("name: [unclosed", "invalid YAML"),
        ("name: x\n", "space is required"),
        ("- a list", "must be a mapping"),
    ],
)
def test_submit_rejects_invalid_study_files(client: TestClient, body: str, message: str) -> None:
    response = client.post(
        "/api/studies",
        content=body,
        headers={"Authorization": f"Bearer {TOKEN}", "content-type": "application/yaml"},
    )
    assert response.status_code == 422 and message in response.json()["message"], response.json()


def test_submit_runs_the_study_locally() -> None:
    root = Path(tmp_path_short := _short_dir())
    try:
        app = create_app(ServiceSettings(store=root, token=TOKEN, workdir=root))
        client = TestClient(app)
        spec = synthetic_spec(root, "submitted", budget={"max_trials": 3}, scheduler="fifo")
        text = yaml.safe_dump({**spec.to_dict(), "storage": {"root": "/elsewhere"}})
        headers = {"Authorization": f"Bearer {TOKEN}", "content-type": "application/yaml"}
        response = client.post("/api/studies", content=text, headers=headers)
        assert response.status_code == 202, response.json()
        assert response.json()["how"] == "local"
        again = client.post("/api/studies", content=text, headers=headers)
        assert again.status_code == 409
        deadline = time.monotonic() + 120
        status = None
        while time.monotonic() < deadline:
            study = client.get("/api/studies/submitted")
            if study.status_code == 200:
                status = study.json()["status"]
                if status == "finished" and study.json()["launch"]["exit_code"] is not None:
                    break
            time.sleep(0.5)
        assert status == "finished", (root / ".submissions" / "submitted.log").read_text()
        detail = client.get("/api/studies/submitted").json()
        assert detail["launch"]["how"] == "local" and detail["launch"]["exit_code"] == 0
        assert sum(detail["trials"].values()) == 3  # results went to the service's root, not /elsewhere
    finally:
        import shutil

        shutil.rmtree(tmp_path_short, ignore_errors=True)


def _short_dir() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="agvp-", dir="/tmp")  # Ray's socket paths must stay short


def test_a_submitted_study_that_cannot_start_says_why(tmp_path: Path) -> None:
    client = TestClient(create_app(ServiceSettings(store=tmp_path, token=TOKEN, workdir=tmp_path)))
    study = {
        "name": "nodata",
        "space": {"optim.lr": {"loguniform": [1e-4, 1e-2]}},
        "fidelity": {"min": 1, "max": 3, "eta": 3},
        "scheduler": "fifo",
        "budget": {"max_trials": 1},
        "trainer": {"name": "tfclip", "data": "missing-folder"},
    }
    headers = {"Authorization": f"Bearer {TOKEN}", "content-type": "application/yaml"}
    assert client.post("/api/studies", content=yaml.safe_dump(study), headers=headers).status_code == 202
    deadline = time.monotonic() + 60
    message = ""
    while time.monotonic() < deadline:
        message = client.get("/api/studies/nodata").json()["message"]
        if "did not start" in message:
            break
        time.sleep(0.3)
    assert "exited with code 2" in message and "trainer.data" in message, message


def test_submit_refuses_a_study_a_driver_holds(tmp_path: Path) -> None:
    # A driver that has not written study.json yet still holds the study: a second one must not start.
    client = TestClient(create_app(ServiceSettings(store=tmp_path, token=TOKEN, workdir=tmp_path)))
    spec = synthetic_spec(tmp_path, "held")
    headers = {"Authorization": f"Bearer {TOKEN}", "content-type": "application/yaml"}
    with StudyLock(tmp_path / "held"):
        response = client.post("/api/studies", content=yaml.safe_dump(spec.to_dict()), headers=headers)
    assert response.status_code == 409 and "already exists" in response.json()["message"]
