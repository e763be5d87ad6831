"""uint8 clips from the loader, normalised and erased on the device (trainers/data/transforms.py
``to_model_input``): the model sees the values of the per-sample float path, to float rounding."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from trainers.data.config import DataConfig, TransformConfig
from trainers.data.index import DatasetIndex, read_dataset
from trainers.data.pipeline import eval_dataset, train_loader, validation_split
from trainers.data.sampling import SamplingMode, sample_frame_indices
from trainers.data.transforms import ClipTransform, to_model_input
from trainers.data.video_dataset import load_frame

FRAMES = [
    np.random.default_rng(i).integers(0, 256, (40 + 3 * i, 20 + i, 3), dtype=np.uint8) for i in range(6)
]
TRAIN: dict[str, Any] = {"height": 32, "width": 16, "flip_p": 0.5, "erase_p": 0.7}


def _reference(config: TransformConfig, frames: list[np.ndarray], rng: np.random.Generator) -> torch.Tensor:
    """The former per-sample float path, kept here as the reference: resize, to float / 255, flip, normalise,
    then erase each frame in place. The random draws are the same, in the same order; a noise fill draws a
    seed and fills with ``torch.randn`` of a CPU generator seeded with it. The flip precedes normalisation as
    in TF-CLIP (AsuradaYuci/TF-CLIP datasets/make_dataloader_clipreid.py L130-134: RectScale,
    RandomHorizontalFlip, RandomSizedEarser, ToTensor, Normalize); erasing after normalisation (0 = the mean)
    is this project's existing choice, unchanged here."""
    resize = ClipTransform(config, train=False).resize
    stacked = np.stack([resize(frame) for frame in frames])
    clip = torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous().float().div_(255.0)
    if rng.random() < config.flip_p:
        clip = clip.flip(-1)
    mean = torch.tensor(config.mean).view(1, 3, 1, 1)
    std = torch.tensor(config.std).view(1, 3, 1, 1)
    clip = (clip - mean) / std
    _, _, height, width = clip.shape
    for frame in clip:
        if not rng.random() < config.erase_p:
            continue
        for _ in range(10):
            target = height * width * rng.uniform(*config.erase_area)
            aspect = math.exp(rng.uniform(*(math.log(a) for a in config.erase_aspect)))
            h, w = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < h < height and 0 < w < width:
                top = int(rng.integers(0, height - h + 1))
                left = int(rng.integers(0, width - w + 1))
                if config.erase_fill == "mean":
                    frame[:, top : top + h, left : left + w] = 0.0
                else:
                    generator = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
                    frame[:, top : top + h, left : left + w] = torch.randn((3, h, w), generator=generator)
                break
    return clip


@pytest.fixture(scope="module")
def index(small_root: Path) -> DatasetIndex:
    return read_dataset(small_root, splits=["train"])


@pytest.mark.parametrize("fill", ["mean", "random"])
def test_uint8_clip_plus_device_normalisation_equals_the_float_path(fill: str) -> None:
    config = TransformConfig(**TRAIN, erase_fill=fill, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.25))
    transform = ClipTransform(config, train=True)
    flipped = erased = 0
    for seed in range(12):
        pixels, erase = transform(FRAMES, np.random.default_rng(seed))
        assert pixels.dtype == torch.uint8 and pixels.shape == (6, 3, 32, 16)
        assert erase.dtype == torch.int64 and erase.shape == (6, 5)
        plain = ClipTransform(config.model_copy(update={"flip_p": 0.0}), train=True)
        flipped += not torch.equal(pixels, plain(FRAMES, np.random.default_rng(seed)).pixels)
        erased += int((erase[:, 2] > 0).sum())
        model_input = to_model_input({"clip": pixels, "erase": erase}, config, "cpu")
        expected = _reference(config, FRAMES, np.random.default_rng(seed))
        assert model_input.dtype == torch.float32
        torch.testing.assert_close(model_input, expected, rtol=0.0, atol=1e-6)
    assert 0 < flipped < 12 and erased > 20  # both flips and many erasures were exercised


def test_a_seeded_training_batch_equals_the_float_path(index: DatasetIndex) -> None:
    config = DataConfig(
        transform={**TRAIN, "erase_fill": "random"},
        sampling={"seq_len": 4},
        batch={"p": 2, "k": 2},
        split={"fraction": 0.3},
    )
    loader, dataset, sampler = train_loader(index, validation_split(index, config), config, seed=5)
    sampler.set_epoch(1)
    batch = next(iter(loader))
    assert batch["clip"].dtype == torch.uint8 and batch["erase"].shape == (4, 4, 5)
    model_input = to_model_input(batch, config.transform, torch.device("cpu"))
    for row, position in enumerate(batch["index"].tolist()):
        tracklet = dataset.tracklets[position]
        rng = np.random.default_rng([5, 1, position])  # the item's generator: (seed, epoch, index)
        chosen = sample_frame_indices(len(tracklet.frames), 4, SamplingMode.CHUNK_RANDOM, rng)[0]
        frames = [load_frame(tracklet.frame_path(int(i), index.root)) for i in chosen]
        expected = _reference(config.transform, frames, rng)
        torch.testing.assert_close(model_input[row], expected, rtol=0.0, atol=1e-6)


def test_random_fill_is_a_pure_function_of_seed_epoch_and_index(index: DatasetIndex) -> None:
    config = DataConfig(
        transform={**TRAIN, "erase_p": 1.0, "erase_fill": "random"},
        sampling={"seq_len": 4},
        batch={"p": 2, "k": 2},
        split={"fraction": 0.3},
    )
    loader, _, _ = train_loader(index, validation_split(index, config), config, seed=2)
    first, again = next(iter(loader)), next(iter(loader))
    a, b = (to_model_input(batch, config.transform, "cpu") for batch in (first, again))
    assert torch.equal(a, b)
    other = first["erase"].clone()
    other[..., 4] += 1  # another noise seed: other noise in the same rectangles
    changed = to_model_input({"clip": first["clip"], "erase": other}, config.transform, "cpu")
    assert not torch.equal(a, changed)


def test_dense_eval_items_have_leading_clip_axes(index: DatasetIndex) -> None:
    config = DataConfig(transform={"height": 32, "width": 16}, sampling={"seq_len": 4})
    tracklet = max(index.tracklets, key=lambda t: len(t.frames))
    item = eval_dataset(index, [tracklet], config, mode=SamplingMode.DENSE)[0]
    clips = item["clip"].shape[0]
    assert item["erase"].shape == (clips, 4, 5) and not item["erase"].any()  # no erasing at evaluation
    model_input = to_model_input(item, config.transform, "cpu")
    assert model_input.shape == item["clip"].shape
    mean = torch.tensor(config.transform.mean).view(3, 1, 1)
    std = torch.tensor(config.transform.std).view(3, 1, 1)
    torch.testing.assert_close(model_input, (item["clip"].float() / 255 - mean) / std, rtol=0, atol=1e-6)


def test_bad_batches_are_refused() -> None:
    config = TransformConfig(height=32, width=16)
    pixels, erase = ClipTransform(config, train=False)(FRAMES)
    with pytest.raises(TypeError, match="uint8"):
        to_model_input({"clip": pixels.float(), "erase": erase}, config, "cpu")
    with pytest.raises(ValueError, match="batch\\['erase'\\] has shape"):
        to_model_input({"clip": pixels, "erase": erase[:3]}, config, "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_device_path_matches_the_cpu_path() -> None:
    for fill in ("mean", "random"):
        config = TransformConfig(**TRAIN, erase_fill=fill)
        pixels, erase = ClipTransform(config, train=True)(FRAMES, np.random.default_rng(3))
        batch = {"clip": pixels.unsqueeze(0), "erase": erase.unsqueeze(0)}
        on_device = to_model_input(batch, config, "cuda")
        assert on_device.device.type == "cuda"
        torch.testing.assert_close(on_device.cpu(), to_model_input(batch, config, "cpu"), rtol=0, atol=1e-6)
