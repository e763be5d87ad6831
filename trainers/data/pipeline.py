"""From settings to torch data: the training loader (PK batches of sampled clips) and evaluation datasets.

The trainer calls these two functions; every field of :class:`DataConfig` reaches the code it names.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from trainers.data.cache_loader import CacheLoader
from trainers.data.config import DataConfig
from trainers.data.frame_cache import FrameCache, auto_frame_cache, ensure_frame_cache
from trainers.data.index import DatasetIndex, Tracklet, read_dataset
from trainers.data.pk_sampler import PKSampler
from trainers.data.sampling import SamplingMode
from trainers.data.sources import read_extra_sources
from trainers.data.split import (
    ValidationSplit,
    identity_subset,
    label_map,
    make_validation_split,
    training_tracklets,
)
from trainers.data.transforms import ClipTransform
from trainers.data.video_dataset import TrackletBatches, TrackletDataset


def read_training_index(root: Path | str, config: DataConfig) -> DatasetIndex:
    """The AG-VPReID train split at ``root`` plus every source of ``config.extra_sources`` (identities
    renumbered after the largest AG-VPReID id); raises :class:`DataError` naming the file or config field."""
    sources = config.extra_sources if config.use_extra_sources else ()
    return read_extra_sources(read_dataset(root, splits=["train"]), sources)


def validation_split(index: DatasetIndex, config: DataConfig) -> ValidationSplit:
    return make_validation_split(index, seed=config.split.seed, fraction=config.split.fraction)


def frame_cache_for(index: DatasetIndex, config: DataConfig, cache_dir: Path | None) -> FrameCache | None:
    """The shared frame cache of ``index`` at the configured frame size (built on first use), or None when
    ``data.frame_cache`` is off (or ``auto`` and the cache would not fit, :func:`auto_frame_cache`)."""
    if config.frame_cache is False:
        return None
    if config.frame_cache == "auto":
        return auto_frame_cache(index, config.transform, cache_dir)
    return ensure_frame_cache(index, config.transform, cache_dir)


class EpochBatches(Sampler[list[tuple[int, int]]]):
    """A PK sampler's batches as ``(epoch, index)`` pairs, so persistent loader workers need no
    ``set_epoch`` of their dataset copy."""

    def __init__(self, sampler: PKSampler) -> None:
        self.sampler = sampler

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch = self.sampler.epoch
        return iter([[(epoch, i) for i in batch] for batch in self.sampler])

    def __len__(self) -> int:
        return len(self.sampler)


def _as_built(batch: dict[str, Any]) -> dict[str, Any]:
    """The worker's collate step of a whole-batch loader: the batch as :class:`TrackletBatches` built it."""
    return batch


class BatchLoader(DataLoader[dict[str, Any]]):
    """The training loader: a ``DataLoader`` over :class:`TrackletBatches` whose batches arrive with the
    small per-clip fields (sent by value as numpy) turned back into tensors; ``clip`` is the worker's
    shared-memory (or, with ``pin_memory``, pinned) tensor."""

    def __iter__(self) -> Iterator[dict[str, Any]]:  # type: ignore[override]
        for batch in super().__iter__():
            yield {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in batch.items()}


#: What :func:`train_loader` returns: both iterate the epoch's batches as dicts of tensors.
TrainLoader = BatchLoader | CacheLoader


def train_loader(
    index: DatasetIndex,
    split: ValidationSplit,
    config: DataConfig,
    *,
    seed: int = 0,
    data_fraction: float = 1.0,
    cache_dir: Path | None = None,
    pin_memory: bool = False,
) -> tuple[TrainLoader, TrackletDataset, PKSampler]:
    """PK batches of training clips. Call ``dataset.set_epoch(e)`` and ``sampler.set_epoch(e)`` each epoch;
    together with ``seed`` they fix every sample (exact resume). With ``data_fraction`` < 1 only that share
    of the training identities is sampled (:func:`identity_subset`, seeded by ``data.split.subset_seed``);
    the class labels still cover every training identity, so a checkpoint continues on a larger fraction.
    ``cache_dir``: root of the frame cache (``runtime.cache_dir``; None = $AGVP_CACHE or ~/.cache/agvp-hpo).
    Batches are built whole (:meth:`TrackletDataset.batch`: the flips are a flag per clip, applied by
    ``to_model_input``). When every tracklet is in the frame cache (and clips are not dense) a
    :class:`~trainers.data.cache_loader.CacheLoader` gathers them in this process, ``config.workers``
    unused; otherwise ``config.workers`` persistent worker processes build them (the batches carry the
    epoch, see :class:`EpochBatches`). ``pin_memory`` (for a CUDA device) gives page-locked batches."""
    tracklets = training_tracklets(index, split)
    labels = label_map(tracklets)
    tracklets = identity_subset(
        tracklets, data_fraction, seed=config.split.subset_seed, min_ids=config.batch.p
    )
    dataset = TrackletDataset(
        index.root,
        tracklets,
        seq_len=config.sampling.seq_len,
        mode=config.sampling.train_mode,
        transform=ClipTransform(config.transform, train=True),
        labels=labels,
        seed=seed,
        frame_cache=frame_cache_for(index, config, cache_dir),
    )
    sampler = PKSampler([labels[t.pid] for t in tracklets], p=config.batch.p, k=config.batch.k, seed=seed)
    cache = dataset.frame_cache
    if (
        cache is not None
        and dataset.mode is not SamplingMode.DENSE
        and all(cache.first_row(t) is not None for t in tracklets)
    ):
        # every clip is one gather from the cache: cheaper in this process than any worker's hand-over
        return CacheLoader(dataset, EpochBatches(sampler), pin_memory=pin_memory), dataset, sampler
    # each worker builds whole batches (TrackletDataset.batch: one frame-cache gather per batch, no
    # per-item collate); the batch sampler's lists reach the dataset as they are (batch_size=None)
    loader = BatchLoader(
        TrackletBatches(dataset),
        sampler=EpochBatches(sampler),
        batch_size=None,
        collate_fn=_as_built,
        num_workers=config.workers,
        persistent_workers=config.workers > 0,
        pin_memory=pin_memory,
        # its own generator: a DataLoader draws its workers' base seed at every fresh iterator (each epoch
        # without workers, once with persistent ones), which from torch's global generator would shift the
        # training's random stream (dropout, ...) by the worker count and away from the CacheLoader's
        generator=torch.Generator().manual_seed(seed),
    )
    return loader, dataset, sampler


def eval_dataset(
    index: DatasetIndex,
    tracklets: Sequence[Tracklet],
    config: DataConfig,
    *,
    mode: SamplingMode | None = None,
    cache_dir: Path | None = None,
) -> TrackletDataset:
    """Deterministic clips (``mode``, default the test sampling mode; no augmentation) for feature
    extraction; frames from the frame cache of ``index`` when ``data.frame_cache`` is on."""
    return TrackletDataset(
        index.root,
        tracklets,
        seq_len=config.sampling.seq_len,
        mode=mode or config.sampling.test_mode,
        transform=ClipTransform(config.transform, train=False),
        frame_cache=frame_cache_for(index, config, cache_dir),
    )
