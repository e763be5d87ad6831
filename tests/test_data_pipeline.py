"""Every DataConfig field reaches the loader it configures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from trainers.data.index import DatasetIndex, read_dataset
from trainers.data.pipeline import BatchLoader, DataConfig, eval_dataset, train_loader, validation_split
from trainers.data.transforms import to_model_input

BASE: dict[str, Any] = {
    "transform": {"height": 32, "width": 16},
    "sampling": {"seq_len": 4},
    "batch": {"p": 2, "k": 2},
    "split": {"seed": 0, "fraction": 0.3},
}


@pytest.fixture(scope="module")
def index(small_root: Path) -> DatasetIndex:
    return read_dataset(small_root, splits=["train"])


def _config(**sections: dict[str, Any]) -> DataConfig:
    merged = {key: {**BASE[key], **sections.get(key, {})} for key in BASE}
    return DataConfig(**merged)


def _first_batch(index: DatasetIndex, config: DataConfig) -> dict[str, Any]:
    loader, _, _ = train_loader(index, validation_split(index, config), config, seed=0)
    return next(iter(loader))


def test_batches_are_pk_clips(index: DatasetIndex) -> None:
    batch = _first_batch(index, _config())
    assert batch["clip"].shape == (4, 4, 3, 32, 16)
    labels = batch["label"].tolist()
    assert labels[0] == labels[1] and labels[2] == labels[3] and labels[0] != labels[2]


@pytest.mark.parametrize(
    ("section", "change"),
    [
        ("sampling", {"seq_len": 3}),
        ("sampling", {"train_mode": "chunk-first"}),
        ("batch", {"p": 3}),
        ("batch", {"k": 3}),
        ("split", {"seed": 5}),
        ("split", {"fraction": 0.5}),
        ("transform", {"flip_p": 0.0}),
    ],
)
def test_training_settings_are_live(index: DatasetIndex, section: str, change: dict[str, Any]) -> None:
    base_config, changed_config = _config(), _config(**{section: change})
    # the model's input: the loader leaves each clip's flip (a flag in the batch) to to_model_input
    base, changed = _first_batch(index, base_config), _first_batch(index, changed_config)
    seen = to_model_input(base, base_config.transform, "cpu")
    seen_changed = to_model_input(changed, changed_config.transform, "cpu")
    same = seen.shape == seen_changed.shape and torch.equal(seen, seen_changed)
    assert not same or base["label"].tolist() != changed["label"].tolist()


def test_test_mode_and_workers(index: DatasetIndex) -> None:
    tracklet = max(index.tracklets, key=lambda t: len(t.frames))
    first = eval_dataset(index, [tracklet], _config())[0]["clip"]
    dense = eval_dataset(index, [tracklet], _config(sampling={"test_mode": "dense"}))[0]["clip"]
    assert first.shape == (4, 3, 32, 16)
    assert dense.ndim == 5
    config = DataConfig(**{**BASE, "workers": 1, "frame_cache": False})  # workers decode the JPEGs
    loader, _, _ = train_loader(index, validation_split(index, config), config)
    assert isinstance(loader, BatchLoader) and loader.num_workers == 1
    batch = next(iter(loader))
    assert torch.equal(batch["clip"], _first_batch(index, _config())["clip"])  # workers change nothing


def test_unknown_keys_are_rejected() -> None:
    with pytest.raises(ValueError, match="seq_length"):
        DataConfig(sampling={"seq_length": 8})  # type: ignore[arg-type]
