"""The dashboard in a real headless Chromium (Debian's ``chromium``) against a served store.

Two ways in: ``--dump-dom`` / ``--screenshot`` runs (the page after its scripts ran: no console errors, every
trial in the table and the curve plot, each panel drawn by ECharts' SVG renderer, the trial detail view
opened from ``#study/trial=N``), and one session over the DevTools protocol (``websockets``) that clicks: a
trial row opens its detail, the filters narrow the table, the stop button asks for the token and stops a
running study. Screenshots go to ``.artifacts/`` (``.ci/run`` installs chromium; without it these tests are
skipped)."""

from __future__ import annotations

import base64
import json
import math
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from service_store import HELD, write_study

from hpo.study.folder import StudyFolder
from hpo.study.lock import StudyLock
from service.api import ServiceSettings, create_app
from trainers.synthetic import curve

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parent.parent / ".artifacts"
TOKEN = "dash-token"
PANELS = ("chart-curves", "chart-best", "chart-parallel", "chart-importance")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_failing_study(root: Path, name: str) -> tuple[StudyFolder, StudyLock]:
    """A *running* study (its lock held) where every trial with id % 4 == 2 reports a NaN objective at its
    first epoch (the driver fails it: "the objective val_map is nan at epoch 1"), reported from node-a/b."""

    def metrics(trial_id: int, config: Mapping[str, Any], epoch: int) -> dict[str, float]:
        return {"val_map": math.nan if trial_id % 4 == 2 else curve(config, epoch)}

    folder = write_study(
        root, name, status="running", metrics=metrics, node=lambda trial_id: f"node-{'ab'[trial_id % 2]}"
    )
    return folder, HELD.pop()  # released by the fixture, not at the end of the test process


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("dashboard-store")
    write_study(root, "alpha")
    write_study(root, "beta", scheduler="hyperband")
    _, lock = write_failing_study(root, "gamma")
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(ServiceSettings(store=root, token=TOKEN)),
            host="127.0.0.1",
            port=port,
            log_level="error",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the service did not start"
    try:
        yield f"http://127.0.0.1:{port}", root
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        lock.release()


#: Chromium's TMPDIR: short (its socket paths must stay under 108 bytes, so not under tmp_path), made and
#: removed around the module's tests.
_SCRATCH: list[Path] = []


@pytest.fixture(scope="module", autouse=True)
def chromium_scratch() -> Iterator[None]:
    _SCRATCH.append(Path(tempfile.mkdtemp(prefix="agvp-chromium-", dir="/tmp")))
    try:
        yield
    finally:
        shutil.rmtree(_SCRATCH.pop(), ignore_errors=True)


def _chromium_command(tmp: Path, *args: str) -> tuple[list[str], dict[str, str]]:
    assert CHROMIUM is not None
    command = [
        CHROMIUM,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        f"--user-data-dir={tmp / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1300,2400",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-breakpad",
        *args,
    ]
    # Chromium writes dconf and crash-report settings under HOME / XDG dirs and its singleton-socket folders
    # (org.chromium.Chromium.*, left behind when it is terminated) under TMPDIR whatever the profile: give
    # it folders of its own, so the test leaves nothing in the home or /tmp.
    home = tmp / "home"
    env = {
        **os.environ,
        "TMPDIR": str(_SCRATCH[0]),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
    }
    return command, env


def _chromium(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    command, env = _chromium_command(tmp, "--virtual-time-budget=8000", *args)
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, env=env)


def _dump(url: str, tmp: Path) -> str:
    dom = _chromium("--dump-dom", url, tmp=tmp)
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    assert not console, "console output:\n" + "\n".join(console)
    return dom.stdout


def _screenshot(url: str, name: str, tmp: Path) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / name
    shot.unlink(missing_ok=True)
    taken = _chromium(f"--screenshot={shot}", url, tmp=tmp)
    assert shot.is_file() and shot.stat().st_size > 20_000, taken.stderr[-2000:]
    print(f"dashboard screenshot: {shot}")
    return shot


def _attr(html: str, element_id: str, name: str) -> str | None:
    """The attribute ``name`` of the element with ``id`` (Chromium serialises id first, then the rest)."""
    match = re.search(rf'<[a-z]+ [^>]*id="{element_id}"[^>]*>', html)
    assert match, f"no element #{element_id}"
    value = re.search(rf'{name}="([^"]*)"', match.group(0))
    return value.group(1) if value else None


def _inner(html: str, element_id: str) -> str:
    """The markup after the opening tag of ``#element_id`` up to the next panel (enough to look inside)."""
    start = html.index(f'id="{element_id}"')
    end = html.find('class="panel', start + 1)
    return html[start : end if end > 0 else len(html)]


def _ids(text: str | None) -> set[int]:
    return {int(t) for t in text.split(",")} if text else set()


def _rows(root: Path, name: str) -> Any:
    return StudyFolder.of(root, name).store.read()


def _view_fidelity_trials(rows: Any) -> set[int]:
    """The trials the parallel plot shows by default: those that reported at the highest fidelity at least 3
    trials reached (hpo.study.plots.view_fidelity's rule)."""
    scored = rows[rows["value"].notna()]
    counts = scored.groupby("resource")["trial_id"].nunique()
    top = int(counts[counts >= 3].index.max())
    return set(scored[scored["resource"] == top]["trial_id"].astype(int))


def test_every_panel_and_every_trial(served: tuple[str, Path], tmp_path: Path) -> None:
    url, root = served
    pages = {study: _dump(f"{url}/#{study}", tmp_path) for study in ("alpha", "beta")}
    for study, html in pages.items():
        assert f'data-loaded="{study}"' in html, html[:2000]
        rows = _rows(root, study)
        every = set(rows["trial_id"].astype(int))
        assert every == set(range(12))
        assert {int(t) for t in re.findall(r'<tr data-trial="(\d+)"', html)} == every  # the trials table
        assert _ids(_attr(html, "chart-curves", "data-trials")) == every  # a curve per trial
        assert _ids(_attr(html, "chart-parallel", "data-trials")) == _view_fidelity_trials(rows)
        for panel in PANELS:
            assert _attr(html, panel, "data-rendered") == "true", panel
            inside = _inner(html, panel)
            assert "<svg" in inside and inside.count("<path") >= 3, f"{panel} drew nothing"
        assert html.count('data-study="') == 3  # every study listed
        assert "no trial failed" in _inner(html, "failures")
        assert _attr(html, "detail", "hidden") is not None  # no trial selected: no detail view
    # rung milestones of the asha study (1, 3, 9 epochs) are marked on the curve plot
    curves = _inner(pages["alpha"], "chart-curves")
    for label in ("1", "3", "9"):
        assert re.search(rf">{label}</text>", curves), f"no rung marker at {label}"
    _screenshot(f"{url}/#alpha", "dashboard.png", tmp_path)
    _screenshot(f"{url}/#beta", "dashboard-hyperband.png", tmp_path)


def test_failures_panel_and_trial_detail(served: tuple[str, Path], tmp_path: Path) -> None:
    url, root = served
    rows = _rows(root, "gamma")
    failed = set(rows[rows["status"] == "failed"]["trial_id"].astype(int))
    assert failed == {2, 6, 10}
    html = _dump(f"{url}/#gamma/trial=6", tmp_path)
    assert 'data-loaded="gamma"' in html
    failures = _inner(html, "failures")
    assert "3 trial(s) failed" in failures
    assert "3 x the objective val_map is nan at epoch 1" in failures  # distinct message with its count
    assert {int(t) for t in re.findall(r'<a href="[^"]*" data-trial="(\d+)"', failures)} == failed
    # the detail view of failed trial 6: its error, node, config and per-epoch decisions
    assert _attr(html, "detail", "data-trial") == "6" and _attr(html, "detail", "hidden") is None
    detail = html[html.index('id="detail"') : html.index('id="trials"')]
    assert "error: the objective val_map is nan at epoch 1" in detail
    assert "node node-a" in detail and "<td>kind</td>" in detail and "<td>x</td>" in detail
    points = re.findall(r'<tr data-resource="(\d+)">(.*?)</tr>', detail)
    assert [int(r) for r, _ in points] == sorted(rows[rows["trial_id"] == 6]["resource"].astype(int))
    assert "<td>failed</td>" in points[-1][1]
    # a trial that went on: its rung decisions and checkpoints
    html = _dump(f"{url}/#alpha/trial=1", tmp_path)
    detail = html[html.index('id="detail"') : html.index('id="trials"')]
    alpha = _rows(root, "alpha")
    own = alpha[alpha["trial_id"] == 1]
    cells = re.findall(r'<tr data-resource="(\d+)"><td>\d+</td><td>[^<]*</td><td>(\w+)</td>', detail)
    assert [(int(r), d) for r, d in cells] == list(
        zip(own["resource"].astype(int), own["decision"], strict=True)
    )
    assert f"checkpoint {own['checkpoint'].iloc[-1]}" in detail
    assert _ids(_attr(html, "chart-detail", "data-trials")) == {1}
    assert "<path" in _inner(html, "chart-detail")
    _screenshot(f"{url}/#gamma/trial=6", "dashboard-trial.png", tmp_path)


# -- clicking: the DevTools protocol -------------------------------------------------------------------


class DevTools:
    """Just enough of the Chrome DevTools protocol: commands on one page, events kept for inspection."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=30))
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return dict(message.get("result", {}))
            self.events.append(message)

    def eval(self, expression: str) -> Any:
        answer = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        assert "exceptionDetails" not in answer, answer
        return answer["result"].get("value")

    def wait(self, expression: str, timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.eval(expression)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {expression}")

    def problems(self) -> list[str]:
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(json.dumps(params)[:500])
            elif method == "Runtime.consoleAPICalled" and params.get("type") in (
                "error",
                "warning",
                "assert",
            ):
                found.append(json.dumps(params.get("args"))[:500])
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                if entry.get("source") == "network" and str(entry.get("url", "")).endswith("/stop"):
                    continue  # the refused stop (wrong token) the test asks for
                found.append(f"{entry.get('text')} {entry.get('url', '')}"[:500])
        return found

    def screenshot(self, name: str) -> Path:
        shot = ARTIFACTS / name
        ARTIFACTS.mkdir(exist_ok=True)
        shot.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))
        return shot


@pytest.fixture
def devtools(tmp_path: Path) -> Iterator[DevTools]:
    sync_client = pytest.importorskip("websockets.sync.client")
    port = _free_port()
    command, env = _chromium_command(tmp_path, f"--remote-debugging-port={port}", "about:blank")
    browser = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        pages: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not pages:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as answer:
                    pages = [t for t in json.load(answer) if t.get("type") == "page"]
            except OSError:
                time.sleep(0.1)
        assert pages, "chromium's DevTools endpoint did not come up"
        with sync_client.connect(pages[0]["webSocketDebuggerUrl"], max_size=None) as ws:
            tools = DevTools(ws)
            for domain in ("Runtime", "Log", "Page"):
                tools.call(f"{domain}.enable")
            yield tools
    finally:
        browser.terminate()
        try:
            browser.wait(timeout=10)
        except subprocess.TimeoutExpired:
            browser.kill()
            browser.wait(timeout=10)


def test_click_filter_and_stop(served: tuple[str, Path], devtools: DevTools) -> None:
    url, root = served
    devtools.call("Page.navigate", url=f"{url}/#gamma")
    devtools.wait("document.body !== null && document.body.dataset.loaded === 'gamma'")
    # a click on a trial row opens its detail view (and puts it in the address)
    devtools.eval("document.querySelector('#trials tr[data-trial=\"5\"]').click()")
    devtools.wait(
        "document.querySelector('#detail').dataset.trial === '5' && !document.querySelector('#detail').hidden"
    )
    assert devtools.eval("location.hash") == "#gamma/trial=5"
    assert "node-b" in devtools.eval("document.querySelector('#detail-line').textContent")
    # filters: failed trials only
    devtools.eval(
        "(() => { const s = document.querySelector('#filter-status'); s.value = 'failed';"
        " s.dispatchEvent(new Event('input')); })()"
    )
    shown = devtools.eval("[...document.querySelectorAll('#trials tbody tr')].map((r) => +r.dataset.trial)")
    assert shown == [2, 6, 10]
    assert devtools.eval("document.querySelector('#chart-curves').dataset.trials") == ""  # none reported
    devtools.eval(
        "(() => { const s = document.querySelector('#filter-status'); s.value = '';"
        " s.dispatchEvent(new Event('input'));"
        " const f = document.querySelector('#filter-fidelity'); f.value = '3';"
        " f.dispatchEvent(new Event('input')); })()"
    )
    rows = _rows(root, "gamma")
    far = sorted(set(rows[rows["resource"] >= 3]["trial_id"].astype(int)))
    shown = devtools.eval("[...document.querySelectorAll('#trials tbody tr')].map((r) => +r.dataset.trial)")
    assert shown == far
    # the stop button: no token -> asks for it; a wrong token -> the service's 403; the right one stops
    devtools.eval("window.confirm = () => true")  # the confirmation dialog
    assert devtools.eval("document.querySelector('#stop-button').disabled") is False
    devtools.eval("document.querySelector('#stop-button').click()")
    assert "token" in devtools.eval("document.querySelector('#stop-result').textContent")
    stop_file = StudyFolder.of(root, "gamma").stop_file
    for token, expected in (("wrong", "wrong token"), (TOKEN, "stop requested for study gamma")):
        devtools.eval(
            f"document.querySelector('#stop-result').dataset.done = '';"
            f"document.querySelector('#stop-token').value = {json.dumps(token)};"
            "document.querySelector('#stop-button').click()"
        )
        devtools.wait("document.querySelector('#stop-result').dataset.done === 'true'")
        assert devtools.eval("document.querySelector('#stop-result').textContent") == expected
        assert stop_file.exists() == (token == TOKEN)
    assert devtools.problems() == []
    devtools.screenshot("dashboard-stop.png")
