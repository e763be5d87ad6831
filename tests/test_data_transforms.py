from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from trainers.data.config import TransformConfig
from trainers.data.index import read_dataset
from trainers.data.split import label_map
from trainers.data.transforms import ClipTransform, to_model_input
from trainers.data.video_dataset import TrackletDataset
from trainers.errors import DataError

FRAMES = [
    np.random.default_rng(i).integers(0, 256, (40 + 3 * i, 20 + i, 3), dtype=np.uint8) for i in range(4)
]
BASE: dict[str, Any] = {"height": 32, "width": 16, "flip_p": 0.5, "erase_p": 1.0}

# Two values per field that must give different clips. A new field without an entry fails the coverage test.
ALTERNATIVES: dict[str, tuple[Any, Any]] = {
    "height": (32, 40),
    "width": (16, 20),
    "interpolation": ("bilinear", "nearest"),
    "flip_p": (0.0, 1.0),
    "erase_p": (0.0, 1.0),
    "erase_area": ((0.02, 0.05), (0.3, 0.4)),
    "erase_aspect": ((0.3, 0.4), (2.5, 3.3)),
    "erase_fill": ("mean", "random"),
    "mean": ((0.5, 0.5, 0.5), (0.4, 0.5, 0.6)),
    "std": ((0.25, 0.25, 0.25), (0.2, 0.3, 0.4)),
}


def _clip(train: bool = True, seed: int = 0, **overrides: Any) -> torch.Tensor:
    """The model input: the worker's uint8 clip, normalised and erased by ``to_model_input``."""
    config = TransformConfig(**{**BASE, **overrides})
    pixels, erase = ClipTransform(config, train=train)(FRAMES, np.random.default_rng(seed))
    return to_model_input({"clip": pixels, "erase": erase}, config, "cpu")


def test_every_field_has_a_liveness_case() -> None:
    assert set(ALTERNATIVES) == set(TransformConfig.model_fields)


@pytest.mark.parametrize("field", sorted(ALTERNATIVES))
def test_every_field_changes_the_output(field: str) -> None:
    first, second = ALTERNATIVES[field]
    a, b = _clip(**{field: first}), _clip(**{field: second})
    assert a.shape != b.shape or not torch.equal(a, b)


def test_size_shorthand() -> None:
    assert TransformConfig(size="288x144").height == 288
    assert TransformConfig(size="288x144").width == 144
    with pytest.raises(ValidationError, match="must look like 256x128"):
        TransformConfig(size="big")


def test_shape_and_normalisation() -> None:
    clip = _clip(train=False, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    assert clip.shape == (4, 3, 32, 16)
    assert clip.min() >= 0.0 and clip.max() <= 1.0


def test_flip_applies_to_the_whole_sequence() -> None:
    plain = _clip(flip_p=0.0, erase_p=0.0)
    flipped = _clip(flip_p=1.0, erase_p=0.0)
    assert torch.equal(flipped, plain.flip(-1))


def test_erasing_respects_area_and_aspect() -> None:
    for seed in range(5):
        clip = _clip(seed=seed, flip_p=0.0, erase_area=(0.1, 0.2), erase_aspect=(2.0, 3.0))
        for frame in clip:
            erased = (frame == 0).all(dim=0)
            rows, cols = erased.any(dim=1).sum().item(), erased.any(dim=0).sum().item()
            area = erased.float().mean().item()
            assert 0.05 <= area <= 0.25  # rounding of small rectangles widens the range a little
            assert rows > cols  # tall rectangles for aspect (height / width) > 1


def test_eval_transform_is_deterministic_without_rng() -> None:
    transform = ClipTransform(TransformConfig(**BASE), train=True)
    evaluation = ClipTransform(TransformConfig(**BASE), train=False)
    first, second = evaluation(FRAMES), evaluation(FRAMES)
    assert torch.equal(first.pixels, second.pixels) and not first.erase.any()
    with pytest.raises(ValueError, match="need a seeded rng"):
        transform(FRAMES)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"erase_area": (0.3, 0.1)}, "erase_area"),
        ({"erase_aspect": (0.0, 1.0)}, "erase_aspect"),
        ({"std": (0.0, 1.0, 1.0)}, "std"),
        ({"flip_p": 1.5}, "flip_p"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_invalid_settings_name_the_field(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TransformConfig(**overrides)


def test_tracklet_dataset_items(small_root: Path) -> None:
    tracklets = read_dataset(small_root, splits=["train"]).split("train")[:6]
    transform = ClipTransform(TransformConfig(height=32, width=16), train=True)
    dataset = TrackletDataset(
        small_root,
        tracklets,
        seq_len=4,
        mode="chunk-random",
        transform=transform,
        labels=label_map(tracklets),
        seed=1,
    )
    item = dataset[2]
    assert item["clip"].shape == (4, 3, 32, 16)
    assert item["label"] == label_map(tracklets)[tracklets[2].pid]
    assert item["camera"] == tracklets[2].camera
    assert torch.equal(dataset[2]["clip"], item["clip"])  # pure function of (seed, epoch, index)
    dataset.set_epoch(1)
    assert not torch.equal(dataset[2]["clip"], item["clip"])


def test_dense_mode_returns_all_clips(small_root: Path) -> None:
    tracklet = max(read_dataset(small_root, splits=["train"]).split("train"), key=lambda t: len(t.frames))
    transform = ClipTransform(TransformConfig(height=32, width=16), train=False)
    dataset = TrackletDataset(small_root, [tracklet], seq_len=4, mode="dense", transform=transform)
    clips = dataset[0]["clip"]
    assert clips.shape == (-(-len(tracklet.frames) // 4), 4, 3, 32, 16)
    assert dataset[0]["label"] == -1


def test_unreadable_frame_names_the_file(small_root: Path, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(small_root / "train", root / "train")
    tracklet = read_dataset(small_root, splits=["train"]).split("train")[0]
    (root / tracklet.frames[0]).write_bytes(b"garbage")
    transform = ClipTransform(TransformConfig(height=32, width=16), train=False)
    dataset = TrackletDataset(root, [tracklet], seq_len=4, mode="chunk-first", transform=transform)
    with pytest.raises(DataError, match=tracklet.frames[0].split("/")[-1]):
        dataset[0]
