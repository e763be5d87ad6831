"""The dashboard in a real headless Chromium (Debian's ``chromium``) against a served store: the page loads
without console errors, its plots and table hold the study's trials, and a screenshot is saved to
``.artifacts/dashboard.png`` (``.ci/run`` installs chromium; without it this test is skipped)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from service_store import write_study

from service.api import ServiceSettings, create_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parent.parent / ".artifacts"
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("dashboard-store")
    write_study(root, "alpha")
    write_study(root, "beta", scheduler="hyperband")
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(ServiceSettings(store=root)), host="127.0.0.1", port=port, log_level="error"
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


def _chromium(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
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
        "--window-size=1300,1500",
        "--virtual-time-budget=8000",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-breakpad",
        *args,
    ]
    # Chromium writes dconf and crash-report settings under HOME / XDG dirs whatever the profile: give it
    # folders of its own, so the test leaves nothing in the user's home.
    home = tmp / "home"
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
    }
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, env=env)


def test_dashboard_loads_and_plots_every_trial(served: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = served
    dom = _chromium("--dump-dom", f"{url}/#alpha", tmp=tmp_path)
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    assert not console, "console output:\n" + "\n".join(console)
    html = dom.stdout
    assert 'data-loaded="alpha"' in html, html[:2000]
    curves = set(re.findall(r'class="curve" data-trial="(\d+)"', html))
    parallel = set(re.findall(r'class="parallel-line" data-trial="(\d+)"', html))
    table = set(re.findall(r'<tr data-trial="(\d+)"', html))
    assert curves == parallel == table == {str(t) for t in range(12)}
    assert 'class="best-line"' in html
    assert html.count('data-study="') == 2  # both studies listed

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    shot.unlink(missing_ok=True)
    taken = _chromium(f"--screenshot={shot}", f"{url}/#alpha", tmp=tmp_path)
    assert shot.is_file() and shot.stat().st_size > 20_000, taken.stderr[-2000:]
    print(f"dashboard screenshot: {shot}")
