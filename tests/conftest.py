"""Shared fixtures: a small synthetic dataset generated once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainers.data.synth import SynthConfig, SynthSummary, generate_dataset

SMALL = SynthConfig(seed=7, train_ids=10, test_ids=4, distractor_ids=2, frames=(3, 12))


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
