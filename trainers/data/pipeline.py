"""From settings to torch data: the training loader (PK batches of sampled clips) and evaluation datasets.

The trainer calls these two functions; every field of :class:`DataConfig` reaches the code it names.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch.utils.data import DataLoader

from trainers.data.config import DataConfig
from trainers.data.index import DatasetIndex, Tracklet
from trainers.data.pk_sampler import PKSampler
from trainers.data.sampling import SamplingMode
from trainers.data.split import ValidationSplit, label_map, make_validation_split, training_tracklets
from trainers.data.transforms import ClipTransform
from trainers.data.video_dataset import TrackletDataset


def validation_split(index: DatasetIndex, config: DataConfig) -> ValidationSplit:
    return make_validation_split(index, seed=config.split.seed, fraction=config.split.fraction)


def train_loader(
    index: DatasetIndex, split: ValidationSplit, config: DataConfig, *, seed: int = 0
) -> tuple[DataLoader[dict[str, object]], TrackletDataset, PKSampler]:
    """PK batches of training clips. Call ``dataset.set_epoch(e)`` and ``sampler.set_epoch(e)`` each epoch;
    together with ``seed`` they fix every sample (exact resume)."""
    tracklets = training_tracklets(index, split)
    labels = label_map(tracklets)
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
