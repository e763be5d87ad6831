"""Shared fixtures: a small synthetic dataset generated once per test session; every test isolated from the
user's home."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from trainers.data.synth import SynthConfig, SynthSummary, generate_dataset

SMALL = SynthConfig(seed=7, train_ids=10, test_ids=4, distractor_ids=2, frames=(3, 12))
_HOME: list[Path] = []


def pytest_configure(config: pytest.Config) -> None:
    """The session runs with HOME at an empty folder of its own: no test may depend on the user's home (a
    fresh machine has no ~/.ray) or write to it (a shared machine's is not ours)."""
    home = Path(tempfile.mkdtemp(prefix="agvp-home-"))
    _HOME.append(home)
    os.environ["HOME"] = str(home)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Whatever a test wrote under HOME fails the run (and is removed with the folder)."""
    if not _HOME:
        return
    home = _HOME.pop()
    written = sorted(str(p.relative_to(home)) for p in home.rglob("*") if not p.is_dir())
    shutil.rmtree(home, ignore_errors=True)
    if written:
        print(f"\nerror: tests wrote into the home directory: {', '.join(written[:10])}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SynthSummary]:
    root = tmp_path_factory.mktemp("synth") / "agvp"
    summary = generate_dataset(root, SMALL)
    return root, summary


@pytest.fixture(scope="session")
def small_root(small_dataset: tuple[Path, SynthSummary]) -> Path:
    return small_dataset[0]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Content-keyed caches (the CLIP identity memory) go to a per-session temp folder, never to ~/.cache."""
    monkeypatch.setenv("AGVP_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A folder under /tmp with a short path (Ray's socket paths must stay under 108 bytes), removed after
    the test with any Ray instance the test started shut down."""
    folder = Path(tempfile.mkdtemp(prefix="agvp-", dir="/tmp"))
    try:
        yield folder
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(folder, ignore_errors=True)
