"""A torch ``Dataset`` of tracklets: temporal sampling + frame decoding + clip transforms.

Item ``i`` is a pure function of (seed, epoch, i): its random generator is seeded with all three, so data
loader workers, restarts and resumed runs see the same clips.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from trainers.data.frame_cache import FrameCache
from trainers.data.index import Tracklet
from trainers.data.sampling import SamplingMode, sample_frame_indices
from trainers.data.transforms import ClipTransform, batch_buffer, collate_clips
from trainers.errors import DataError


def load_frame(path: Path) -> np.ndarray:
    """Decode one frame to an HxWx3 uint8 array; unreadable files raise :class:`DataError` naming the file."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as error:
        raise DataError(f"cannot decode image ({type(error).__name__})", path=path) from None


class TrackletDataset(Dataset[dict[str, Any]]):
    """Clips of tracklets. Each item is a dict:

    - ``clip``: uint8 tensor (T, 3, H, W), or (C, T, 3, H, W) in dense mode: resized and flipped, not yet
      normalised - :func:`trainers.data.transforms.to_model_input` makes the model input of a batch;
    - ``erase``: int64 (T, 5) (or (C, T, 5)): each frame's erasing rectangle and noise seed, applied by
      ``to_model_input`` (all zero outside training);
    - ``label``: class label from ``labels`` (folder id -> label), or -1 when no labels are given;
    - ``camera``: camera id; ``index``: position of the tracklet in this dataset.

    Frames are read under ``root``, or under a tracklet's own root (tracklets of extra training sources);
    with a ``frame_cache`` (:mod:`trainers.data.frame_cache`) they come already resized from it instead,
    which gives identical clips. An index may also be an ``(epoch, index)`` pair: the training loader's
    batches carry the epoch, so persistent workers (which keep their copy of the dataset) still follow it.
    """

    def __init__(
        self,
        root: Path | str,
        tracklets: Sequence[Tracklet],
        *,
        seq_len: int,
        mode: SamplingMode | str,
        transform: ClipTransform,
        labels: Mapping[int, int] | None = None,
        seed: int = 0,
        frame_cache: FrameCache | None = None,
    ) -> None:
        if frame_cache is not None and not frame_cache.matches(transform.config):
            raise ValueError(
                f"frame cache {frame_cache.folder} holds {frame_cache.height}x{frame_cache.width} "
                f"{frame_cache.interpolation} frames, but the transform needs {transform.config.height}x"
                f"{transform.config.width} {transform.config.interpolation}"
            )
        self.root = Path(root)
        self.tracklets = tuple(tracklets)
        self.seq_len = seq_len
        self.mode = SamplingMode(mode)
        self.transform = transform
        self.labels = dict(labels) if labels is not None else None
        self.seed = seed
        self.epoch = 0
        self.frame_cache = frame_cache

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.tracklets)

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any]:
        epoch, index = index if isinstance(index, tuple) else (self.epoch, index)
        tracklet = self.tracklets[index]
        rng = np.random.default_rng([self.seed, epoch, index])
        clips = sample_frame_indices(len(tracklet.frames), self.seq_len, self.mode, rng)
        cached = self.frame_cache.lookup(tracklet) if self.frame_cache is not None else None
        # Decode each distinct frame once even when padding or dense clips repeat it.
        decoded = {
            int(i): cached[i] if cached is not None else load_frame(tracklet.frame_path(int(i), self.root))
            for i in np.unique(clips)
        }
        outs = [self.transform([decoded[int(i)] for i in clip], rng) for clip in clips]
        if self.mode is SamplingMode.DENSE:
            pixels, erase = torch.stack([o.pixels for o in outs]), torch.stack([o.erase for o in outs])
        else:
            pixels, erase = outs[0]
        label = self.labels[tracklet.pid] if self.labels is not None else -1
        return {"clip": pixels, "erase": erase, "label": label, "camera": tracklet.camera, "index": index}

    def batch(
        self,
        indices: Sequence[int | tuple[int, int]],
        *,
        buffer: Callable[[tuple[int, ...]], torch.Tensor] = batch_buffer,
    ) -> dict[str, Any]:
        """The batch of ``indices``, built at once (the training loader's worker calls this, see
        :class:`TrackletBatches`): item for item the clips of ``self[i]``, from the same generator in the
        same order, so still a pure function of (seed, epoch, index), but the frames are written straight
        into one batch array (one gather from the frame cache for the whole batch, or each decoded JPEG
        copied once) and the flips are left to the device: ``flip`` holds one flag per clip, which
        :func:`~trainers.data.transforms.to_model_input` applies. Dense mode (several clips per item)
        falls back to the items and :func:`~trainers.data.transforms.collate_clips`. ``buffer(shape)`` gives
        the contiguous uint8 array the frames are written into (default :func:`batch_buffer`: shared memory
        in a loader worker)."""
        if self.mode is SamplingMode.DENSE:
            return collate_clips([self[i] for i in indices])
        config = self.transform.config
        count, seq_len = len(indices), self.seq_len
        flips: list[bool] = []
        erase = np.empty((count, seq_len, 5), dtype=np.int64)
        labels, cameras, positions = [], [], []
        picks: list[np.ndarray] = []  # each item's (seq_len,) frame indices
        cached: list[int | None] = []  # each item's first row in the frame cache
        tracklets: list[Tracklet] = []
        for row, item in enumerate(indices):
            epoch, index = item if isinstance(item, tuple) else (self.epoch, item)
            tracklet = self.tracklets[index]
            tracklets.append(tracklet)
            rng = np.random.default_rng([self.seed, epoch, index])
            clip = sample_frame_indices(len(tracklet.frames), seq_len, self.mode, rng)[0]
            flip, rectangles = self.transform.decide(seq_len, rng)
            flips.append(flip)
            erase[row] = rectangles
            picks.append(clip)
            cached.append(self.frame_cache.first_row(tracklet) if self.frame_cache is not None else None)
            labels.append(self.labels[tracklet.pid] if self.labels is not None else -1)
            cameras.append(tracklet.camera)
            positions.append(index)
        pixels = buffer((count * seq_len, config.height, config.width, 3))
        out = pixels.numpy()
        if self.frame_cache is not None and all(first is not None for first in cached):
            rows = np.concatenate([first + clip for first, clip in zip(cached, picks, strict=True)])
            rows = rows.astype(np.int64, copy=False)
            # one read of the memory map for the whole batch, straight into the batch array; in torch,
            # which releases the GIL (np.take holds it), so a loader thread gathers while training runs
            torch.index_select(self.frame_cache.tensor, 0, torch.from_numpy(rows), out=pixels)
        else:
            for row, (tracklet, clip, first) in enumerate(zip(tracklets, picks, cached, strict=True)):
                block = out[row * seq_len : (row + 1) * seq_len]
                if first is not None and self.frame_cache is not None:
                    np.take(self.frame_cache.frames, first + clip, axis=0, out=block, mode="clip")
                    continue
                decoded: dict[int, np.ndarray] = {}  # each distinct frame decoded once
                for position, i in enumerate(clip.tolist()):
                    if i not in decoded:
                        decoded[i] = self.transform.resize(load_frame(tracklet.frame_path(i, self.root)))
                    block[position] = decoded[i]
        # (B, T, H, W, 3) in memory, seen as (B, T, 3, H, W): the layout collate_clips delivers
        clips = pixels.view(count, seq_len, config.height, config.width, 3).permute(0, 1, 4, 2, 3)
        return {
            "clip": clips,
            "erase": torch.from_numpy(erase),
            "flip": torch.tensor(flips, dtype=torch.bool),
            "label": torch.tensor(labels, dtype=torch.int64),
            "camera": torch.tensor(cameras, dtype=torch.int64),
            "index": torch.tensor(positions, dtype=torch.int64),
        }


class TrackletBatches(Dataset[dict[str, Any]]):
    """A :class:`TrackletDataset` read a batch at a time: ``self[indices]`` is ``dataset.batch(indices)``
    with every field but ``clip`` as numpy: a loader worker sends those small arrays by value, where each
    tensor would cost a shared-memory segment and a passed file descriptor (the pipeline's loader turns
    them back into tensors, :class:`trainers.data.pipeline.BatchLoader`). With ``batch_size=None`` and a
    sampler of index lists each worker builds whole batches, with no per-item collate."""

    def __init__(self, dataset: TrackletDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, indices: Sequence[int | tuple[int, int]]) -> dict[str, Any]:  # type: ignore[override]
        batch = self.dataset.batch(indices)
        return {key: value if key == "clip" else value.numpy() for key, value in batch.items()}
