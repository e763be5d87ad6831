"""The training loader's whole-batch path (TrackletDataset.batch, TrackletBatches) and the device-side flip:
each batch is, item for item and after ``to_model_input``, what the per-item path plus ``collate_clips``
gives, from the JPEGs or the frame cache alike, with the flips as one flag per clip. Then the in-process
loader on the frame cache (trainers/data/cache_loader.py): chosen when every training tracklet is cached,
the same batches as the JPEG path (the same training results: tests/test_tfclip_engine.py), buffers reused
only once released, errors and early exits handled in its prefetch thread."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from trainers.data.cache_loader import BufferPool, CacheLoader
from trainers.data.config import DataConfig, TransformConfig
from trainers.data.frame_cache import ensure_frame_cache
from trainers.data.index import DatasetIndex, read_dataset
from trainers.data.pipeline import BatchLoader, train_loader, validation_split
from trainers.data.sampling import SamplingMode, sample_frame_indices
from trainers.data.transforms import ClipTransform, collate_clips, to_model_input
from trainers.data.video_dataset import TrackletDataset

BASE: dict[str, Any] = {
    "transform": {"height": 32, "width": 16, "flip_p": 0.5, "erase_p": 0.7},
    "sampling": {"seq_len": 4},
    "batch": {"p": 4, "k": 2},
    "split": {"seed": 0, "fraction": 0.3},
}


@pytest.fixture(scope="module")
def index(small_root: Path) -> DatasetIndex:
    return read_dataset(small_root, splits=["train"])


def _config(**overrides: Any) -> DataConfig:
    return DataConfig.model_validate({**BASE, **overrides})


def _dataset(index: DatasetIndex, config: DataConfig, cache_dir: Path | None) -> TrackletDataset:
    _, dataset, _ = train_loader(index, validation_split(index, config), config, seed=4, cache_dir=cache_dir)
    return dataset


def _items(dataset: TrackletDataset, indices: list[tuple[int, int]]) -> dict[str, Any]:
    """The per-item reference: ``dataset[i]`` for each index (flipped in uint8), collated."""
    return collate_clips([dataset[i] for i in indices])


@pytest.mark.parametrize("fill", ["mean", "random"])
@pytest.mark.parametrize("cached", [False, True])
def test_a_batch_is_its_items(index: DatasetIndex, tmp_path: Path, cached: bool, fill: str) -> None:
    config = _config(transform={**BASE["transform"], "erase_fill": fill}, frame_cache=cached)
    dataset = _dataset(index, config, tmp_path)
    assert (dataset.frame_cache is not None) == cached
    indices = [(epoch, i) for epoch in (0, 3) for i in range(0, len(dataset), max(1, len(dataset) // 6))]
    batch, reference = dataset.batch(indices), _items(dataset, indices)
    assert batch["clip"].dtype == torch.uint8 and batch["clip"].shape == reference["clip"].shape
    assert batch["flip"].dtype == torch.bool and batch["flip"].shape == (len(indices),)
    assert 0 < int(batch["flip"].sum()) < len(indices)  # both kinds of clip were exercised
    for key in ("erase", "label", "camera", "index"):
        assert torch.equal(batch[key], reference[key]), key
    # the raw pixels are the unflipped clips: the flagged ones mirror to the reference's
    flags = batch["flip"].view(-1, 1, 1, 1, 1)
    assert torch.equal(torch.where(flags, batch["clip"].flip(-1), batch["clip"]), reference["clip"])
    assert torch.equal(
        to_model_input(batch, config.transform, "cpu"), to_model_input(reference, config.transform, "cpu")
    )


def test_cache_and_jpeg_batches_are_identical_with_workers(index: DatasetIndex, tmp_path: Path) -> None:
    """The two frame sources give the same batches, flip flags included, in process and in a worker
    (the worker's batch comes through shared memory)."""

    def first_batches(cache: bool, workers: int) -> list[dict[str, Any]]:
        config = _config(frame_cache=cache, workers=workers)
        loader, _, sampler = train_loader(
            index, validation_split(index, config), config, seed=4, cache_dir=tmp_path
        )
        batches = []
        for epoch in (0, 1):
            sampler.set_epoch(epoch)
            batches.append(next(iter(loader)))
        return batches

    reference = first_batches(False, 0)
    assert not torch.equal(reference[0]["flip"], reference[1]["flip"]) or not torch.equal(
        reference[0]["clip"], reference[1]["clip"]
    )
    for cache, workers in ((True, 0), (True, 1), (False, 1)):
        for plain, other in zip(reference, first_batches(cache, workers), strict=True):
            for key in ("clip", "erase", "flip", "label", "camera", "index"):
                assert torch.equal(plain[key], other[key]), (cache, workers, key)


def test_a_tracklet_the_cache_lacks_is_decoded(index: DatasetIndex, tmp_path: Path) -> None:
    config = _config(frame_cache=True)
    dataset = _dataset(index, config, tmp_path)
    entry = dataset.frame_cache
    assert entry is not None
    missing = dataset.tracklets[1].key
    dataset.frame_cache = dataclasses.replace(
        entry, rows={k: v for k, v in entry.rows.items() if k != missing}
    )
    indices = [(0, i) for i in range(4)]
    plain = _dataset(index, _config(frame_cache=False), tmp_path).batch(indices)
    mixed = dataset.batch(indices)
    for key in ("clip", "erase", "flip"):
        assert torch.equal(plain[key], mixed[key]), key


def test_dense_training_clips_fall_back_to_items(index: DatasetIndex) -> None:
    transform = ClipTransform(TransformConfig(height=32, width=16, flip_p=0.5, erase_p=0.5), train=True)
    dataset = TrackletDataset(
        index.root, index.tracklets[:1], seq_len=4, mode=SamplingMode.DENSE, transform=transform
    )
    batch = dataset.batch([0])
    assert "flip" not in batch  # dense items are flipped in uint8, as before
    assert torch.equal(batch["clip"], collate_clips([dataset[0]])["clip"])


def test_decide_draws_what_the_transform_draws() -> None:
    """ClipTransform.decide makes the transform's decisions, in its rng order (the batch path uses it)."""
    config = TransformConfig(height=32, width=16, flip_p=0.5, erase_p=0.7)
    frames = [np.random.default_rng(i).integers(0, 256, (32, 16, 3), dtype=np.uint8) for i in range(4)]
    transform = ClipTransform(config, train=True)
    for seed in range(20):
        pixels, erase = transform(frames, np.random.default_rng(seed))
        rng = np.random.default_rng(seed)
        flip, rectangles = transform.decide(len(frames), rng)
        unflipped = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)
        assert torch.equal(pixels, unflipped.flip(-1) if flip else unflipped)
        assert torch.equal(erase, torch.from_numpy(rectangles))
        after_call = np.random.default_rng(seed)
        transform(frames, after_call)
        assert rng.random() == after_call.random()  # the same number of draws
    assert ClipTransform(config, train=False).decide(4, None)[0] is False


def test_the_device_flip_precedes_the_erasures() -> None:
    """A flagged clip is mirrored first, then erased at the rectangle's own (flipped-frame) coordinates."""
    config = TransformConfig(height=16, width=16)
    pixels = torch.arange(2 * 3 * 3 * 16 * 16, dtype=torch.int64).remainder(251).to(torch.uint8)
    pixels = pixels.view(2, 3, 3, 16, 16)
    erase = torch.zeros(2, 3, 5, dtype=torch.int64)
    erase[0, 1] = torch.tensor([1, 0, 3, 2, 0])  # the left two columns of frame 1 of clip 0
    flip = torch.tensor([True, False])
    before = pixels.clone()
    flagged = to_model_input({"clip": pixels, "erase": erase, "flip": flip}, config, "cpu")
    assert torch.equal(pixels, before)  # the caller's batch is left as it was
    mirrored = torch.stack([pixels[0].flip(-1), pixels[1]])
    assert torch.equal(flagged, to_model_input({"clip": mirrored, "erase": erase}, config, "cpu"))
    assert bool((flagged[0, 1, :, 1:4, 0:2] == 0).all()) and not bool(
        (flagged[0, 1, :, 1:4, 14:16] == 0).any()
    )


@pytest.mark.parametrize(
    "flip", [torch.tensor([1, 0]), torch.tensor([True]), torch.tensor([[True, False]])], ids=str
)
def test_a_bad_flip_flag_is_refused(flip: torch.Tensor) -> None:
    pixels, erase = torch.zeros(2, 3, 3, 16, 16, dtype=torch.uint8), torch.zeros(2, 3, 5, dtype=torch.int64)
    with pytest.raises(ValueError, match="batch\\['flip'\\]"):
        to_model_input(
            {"clip": pixels, "erase": erase, "flip": flip}, TransformConfig(height=16, width=16), "cpu"
        )


def test_the_frame_cache_gather_reads_the_batch_rows(index: DatasetIndex, tmp_path: Path) -> None:
    """The cache path's one gather reads exactly each item's sampled frames (first row + frame index)."""
    config = _config(frame_cache=True, transform={**BASE["transform"], "flip_p": 0.0, "erase_p": 0.0})
    dataset = _dataset(index, config, tmp_path)
    entry = ensure_frame_cache(index, config.transform, tmp_path)
    batch = dataset.batch([(2, 0), (2, 5)])
    for row, position in enumerate((0, 5)):
        tracklet = dataset.tracklets[position]
        frames = entry.lookup(tracklet)
        assert frames is not None
        rng = np.random.default_rng([4, 2, position])
        chosen = sample_frame_indices(len(tracklet.frames), 4, SamplingMode.CHUNK_RANDOM, rng)[0]
        expected = torch.from_numpy(np.ascontiguousarray(frames[chosen])).permute(0, 3, 1, 2)
        assert torch.equal(batch["clip"][row], expected)


def test_pin_memory_reaches_the_loader(index: DatasetIndex) -> None:
    config = _config(frame_cache=False)
    loader, _, _ = train_loader(index, validation_split(index, config), config, pin_memory=True)
    assert loader.pin_memory and loader.batch_size is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_device_flip_matches_the_cpu_flip(index: DatasetIndex) -> None:
    config = _config(transform={**BASE["transform"], "erase_fill": "random"}, frame_cache=False)
    loader, _, _ = train_loader(index, validation_split(index, config), config, seed=4, pin_memory=True)
    batch = next(iter(loader))
    assert batch["clip"].is_pinned() and bool(batch["flip"].any())
    on_device = to_model_input(batch, config.transform, "cuda")
    torch.testing.assert_close(
        on_device.cpu(), to_model_input(batch, config.transform, "cpu"), rtol=0, atol=1e-6
    )


def test_small_fields_travel_by_value_and_arrive_as_tensors(index: DatasetIndex) -> None:
    """Only ``clip`` crosses from a worker in shared memory; the rest is numpy, tensors again on arrival."""
    config = _config(workers=1, frame_cache=False)
    loader, _, _ = train_loader(index, validation_split(index, config), config, seed=4)
    sent = loader.dataset[[(0, 0), (0, 1)]]
    assert isinstance(sent["clip"], torch.Tensor)
    assert all(isinstance(value, np.ndarray) for key, value in sent.items() if key != "clip")
    batch = next(iter(loader))
    assert all(isinstance(value, torch.Tensor) for value in batch.values())
    assert batch["label"].dtype == torch.int64 and batch["flip"].dtype == torch.bool
    assert len(loader) == len(list(loader.sampler))


# --- the in-process loader on the frame cache (trainers/data/cache_loader.py) -----------------------------

KEYS = ("clip", "erase", "flip", "label", "camera", "index")


def _loader(index: DatasetIndex, cache_dir: Path, **overrides: Any) -> Any:
    config = DataConfig.model_validate({**BASE, **overrides})
    return train_loader(index, validation_split(index, config), config, seed=4, cache_dir=cache_dir)


def _loader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "agvp-cache-loader"]


def _no_loader_thread_within(seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _loader_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    return not _loader_threads()


def test_a_fully_cached_dataset_gets_the_in_process_loader(index: DatasetIndex, tmp_path: Path) -> None:
    loader, _, sampler = _loader(index, tmp_path, frame_cache=True, workers=2)
    assert isinstance(loader, CacheLoader) and len(loader) == len(sampler)
    plain, _, _ = _loader(index, tmp_path, frame_cache=False)
    assert isinstance(plain, BatchLoader)


def test_every_batch_of_two_epochs_equals_the_jpeg_path(index: DatasetIndex, tmp_path: Path) -> None:
    """Kept batches stay intact: all of an epoch's batches are held at once and still equal the
    reference (a buffer reused too early would show as a changed clip)."""
    small = {"batch": {"p": 2, "k": 1}}  # more batches per epoch than the pool keeps buffers
    cached, _, cached_sampler = _loader(index, tmp_path, frame_cache=True, **small)
    plain, _, plain_sampler = _loader(index, tmp_path, frame_cache=False, **small)
    for epoch in (0, 1):
        cached_sampler.set_epoch(epoch)
        plain_sampler.set_epoch(epoch)
        got, want = list(cached), list(plain)
        assert len(got) == len(want) > cached.prefetch + 3
        for a, b in zip(got, want, strict=True):
            for key in KEYS:
                assert torch.equal(a[key], b[key]), (epoch, key)
    assert _no_loader_thread_within(5.0)


def test_a_released_buffer_is_reused_and_a_held_one_is_not() -> None:
    pool = BufferPool(keep=2)
    first = pool((4, 3))
    first_ptr = first.data_ptr()
    view = first[1:].permute(1, 0)  # a view alone still holds the buffer
    del first
    second = pool((4, 3))
    assert second.data_ptr() != first_ptr
    del view
    third = pool((4, 3))
    assert third.data_ptr() == first_ptr
    # all pooled buffers in use: a fresh one, not kept
    fourth = pool((4, 3))
    assert fourth.data_ptr() not in (second.data_ptr(), third.data_ptr())
    del second, third, fourth
    assert pool((4, 3)).data_ptr() in {first_ptr, *(a.ctypes.data for a in pool._arrays)}
    assert len(pool._arrays) == 2


def test_an_error_while_building_is_raised_in_the_loop(index: DatasetIndex, tmp_path: Path) -> None:
    loader, dataset, _ = _loader(index, tmp_path, frame_cache=True)
    calls = []
    original = dataset.batch

    def failing(indices: Any, **kwargs: Any) -> Any:
        calls.append(indices)
        if len(calls) == 2:
            raise RuntimeError("disk went away")
        return original(indices, **kwargs)

    dataset.batch = failing  # type: ignore[method-assign]
    received = []
    with pytest.raises(RuntimeError, match="disk went away"):
        for batch in loader:
            received.append(batch)
    assert len(received) == 1
    assert _no_loader_thread_within(5.0)


def test_leaving_the_loop_early_stops_the_thread(index: DatasetIndex, tmp_path: Path) -> None:
    loader, _, _ = _loader(index, tmp_path, frame_cache=True)
    iterator = iter(loader)
    next(iterator)
    assert _loader_threads()
    iterator.close()  # what a `break` does once the generator is dropped
    assert _no_loader_thread_within(5.0)


def test_without_prefetch_batches_are_built_in_the_callers_thread(
    index: DatasetIndex, tmp_path: Path
) -> None:
    loader, _, _ = _loader(index, tmp_path, frame_cache=True)
    threaded = list(loader)
    loader.prefetch = 0
    inline = list(loader)
    assert not _loader_threads()
    for a, b in zip(threaded, inline, strict=True):
        for key in KEYS:
            assert torch.equal(a[key], b[key]), key


def test_a_tracklet_missing_from_the_cache_keeps_the_worker_loader(
    index: DatasetIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trainers.data import pipeline

    _, dataset, _ = _loader(index, tmp_path, frame_cache=True)
    entry = dataset.frame_cache
    assert entry is not None
    missing = dataset.tracklets[0].key
    partial = dataclasses.replace(entry, rows={k: v for k, v in entry.rows.items() if k != missing})
    monkeypatch.setattr(pipeline, "frame_cache_for", lambda *args, **kwargs: partial)
    loader, _, _ = _loader(index, tmp_path, frame_cache=True)
    assert isinstance(loader, BatchLoader)


def test_pin_memory_asks_for_page_locked_buffers(index: DatasetIndex, tmp_path: Path) -> None:
    loader, _, _ = _loader(index, tmp_path, frame_cache=True)
    assert isinstance(loader._buffer, BufferPool)
    pinned, _, _ = train_loader(
        index,
        validation_split(index, DataConfig.model_validate({**BASE, "frame_cache": True})),
        DataConfig.model_validate({**BASE, "frame_cache": True}),
        cache_dir=tmp_path,
        pin_memory=True,
    )
    assert isinstance(pinned, CacheLoader) and pinned.pin_memory
    assert not isinstance(pinned._buffer, BufferPool)
    if torch.cuda.is_available():
        assert next(iter(pinned))["clip"].is_pinned()
