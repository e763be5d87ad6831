"""From settings to torch data: the training loader (PK batches of sampled clips) and evaluation datasets.

The trainer calls these two functions; every field of :class:`DataConfig` reaches the code it names.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch.utils.data import DataLoader

from trainers.data.config import DataConfig
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
from trainers.data.video_dataset import TrackletDataset


def read_training_index(root: Path | str, config: DataConfig) -> DatasetIndex:
    """The AG-VPReID train split at ``root`` plus every source of ``config.extra_sources`` (identities
    renumbered after the largest AG-VPReID id); raises :class:`DataError` naming the file or config field."""
    sources = config.extra_sources if config.use_extra_sources else ()
    return read_extra_sources(read_dataset(root, splits=["train"]), sources)


def validation_split(index: DatasetIndex, config: DataConfig) -> ValidationSplit:
    return make_validation_split(index, seed=config.split.seed, fraction=config.split.fraction)


def train_loader(
    index: DatasetIndex,
    split: ValidationSplit,
    config: DataConfig,
    *,
    seed: int = 0,
    data_fraction: float = 1.0,
) -> tuple[DataLoader[dict[str, object]], TrackletDataset, PKSampler]:
    """PK batches of training clips. Call ``dataset.set_epoch(e)`` and ``sampler.set_epoch(e)`` each epoch;
    together with ``seed`` they fix every sample (exact resume). With ``data_fraction`` < 1 only that share
    of the training identities is sampled (:func:`identity_subset`, seeded by ``data.split.subset_seed``);
    the class labels still cover every training identity, so a checkpoint continues on a larger fraction."""
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
    )
    sampler = PKSampler([labels[t.pid] for t in tracklets], p=config.batch.p, k=config.batch.k, seed=seed)
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=config.workers,
        persistent_workers=False,
    )
    return loader, dataset, sampler


def eval_dataset(
    index: DatasetIndex,
    tracklets: Sequence[Tracklet],
    config: DataConfig,
    *,
    mode: SamplingMode | None = None,
) -> TrackletDataset:
    """Deterministic clips (``mode``, default the test sampling mode; no augmentation) for feature
    extraction."""
    return TrackletDataset(
        index.root,
        tracklets,
        seq_len=config.sampling.seq_len,
        mode=mode or config.sampling.test_mode,
        transform=ClipTransform(config.transform, train=False),
    )
