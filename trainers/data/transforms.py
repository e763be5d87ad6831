"""Clip-level image transforms on decoded frames, split between the loader and the device.

Frames of one tracklet may differ in size (UAV crops range from ~18x37 to ~293x542 px), so each frame is
resized on its own, then the clip is stacked. A flip applies to the whole clip (a person does not mirror
between frames); random erasing is drawn per frame. All randomness comes from the ``rng`` passed in, so a
sample is a pure function of (seed, epoch, index).

The loader worker does only what is cheap in uint8: resize, stack, flip, and the erasing *decisions*
(:class:`Clip`: uint8 pixels plus one rectangle per frame). The training loader's whole batches
(:meth:`TrackletDataset.batch`) leave the flip to the device too: the same decision
(:meth:`ClipTransform.decide`), as one flag per clip. :func:`to_model_input` then moves the uint8 batch (a
quarter of the bytes of float) to the device and there flips the flagged clips, converts to float, divides
by 255, normalises by mean / std and applies the erasures - the same values, up to float rounding, as doing
all of it per sample in float. Every place a batch enters a model goes through :func:`to_model_input`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import default_collate, get_worker_info

from trainers.data.config import TransformConfig

_PIL_INTERPOLATION = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}

#: Columns of :attr:`Clip.erase`: the rectangle (top, left, height, width; height 0 = no erasure) and the
#: seed of its noise (``erase_fill: random``; 0 otherwise).
ERASE_COLUMNS = ("top", "left", "height", "width", "noise_seed")
_NOISE_SEEDS = 2**62


class Clip(NamedTuple):
    """One clip as the loader delivers it."""

    #: uint8 (T, 3, H, W), resized and (training) flipped; not normalised, not erased. Channels-last in
    #: memory (a view of (T, H, W, 3)): :func:`collate_clips` stacks it as it is.
    pixels: torch.Tensor
    #: int64 (T, 5): the erasure of each frame, see :data:`ERASE_COLUMNS`.
    erase: torch.Tensor


def erase_noise(seed: int, height: int, width: int) -> torch.Tensor:
    """The (3, height, width) standard-normal fill of an ``erase_fill: random`` rectangle: a function of its
    seed alone (drawn on the CPU, so the same on every device)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn((3, height, width), generator=generator)


@lru_cache(maxsize=16)
def _moments(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (1, 3, 1, 1)
    return (
        torch.tensor(mean, dtype=torch.float32, device=device).view(shape),
        torch.tensor(std, dtype=torch.float32, device=device).view(shape),
    )


def to_model_input(
    batch: Mapping[str, Any], config: TransformConfig, device: torch.device | str
) -> torch.Tensor:
    """The float model input of a loader batch (or of one item): ``batch["clip"]`` (uint8 (..., 3, H, W))
    moved to ``device``, divided by 255, normalised by ``config.mean`` / ``config.std``, with the
    rectangles of ``batch["erase"]`` ((..., 5)) set to 0 (``erase_fill: mean``) or to their seeded noise
    (``random``). An optional ``batch["flip"]`` (bool, one flag per clip: the training loader's batches,
    :meth:`TrackletDataset.batch`) mirrors the flagged clips first, as the loader's own flip would have.
    Returns float32 of the clip's shape."""
    pixels, erase, flip = batch["clip"], batch["erase"], batch.get("flip")
    if pixels.dtype != torch.uint8:
        raise TypeError(f"batch['clip'] is {pixels.dtype}, but the loader delivers uint8 clips")
    if pixels.shape[:-3] != erase.shape[:-1] or erase.shape[-1] != len(ERASE_COLUMNS):
        raise ValueError(
            f"batch['erase'] has shape {tuple(erase.shape)}, but clips of shape {tuple(pixels.shape)} need "
            f"{(*pixels.shape[:-3], len(ERASE_COLUMNS))}"
        )
    if flip is not None and (flip.dtype != torch.bool or flip.shape != pixels.shape[:-4]):
        raise ValueError(
            f"batch['flip'] is {flip.dtype} of shape {tuple(flip.shape)}, but clips of shape "
            f"{tuple(pixels.shape)} need bool of shape {tuple(pixels.shape[:-4])} (one flag per clip)"
        )
    device = torch.device(device)
    shape = pixels.shape
    height, width = shape[-2:]
    # the loader's channels-last uint8 made contiguous where it is cheap (on the device), before the float
    frames = pixels.to(device, non_blocking=True).reshape(-1, 3, height, width).contiguous()
    mean, std = _moments(tuple(config.mean), tuple(config.std), device)
    # the same operations, in the same order, as the per-sample float path: exact on the CPU
    clips = frames.float().div_(255.0).sub_(mean).div_(std)
    if flip is not None and bool(flip.any()):
        # the loader's flip decisions, before the erasures; on the new float tensor (``frames`` may be the
        # caller's own clip), which gives the same values as flipping the uint8 pixels
        per_frame = flip.reshape(-1, 1).expand(-1, shape[-4]).reshape(-1)
        flipped = torch.nonzero(per_frame).flatten().to(device)
        clips[flipped] = clips[flipped].flip(-1)
    boxes = erase.reshape(-1, len(ERASE_COLUMNS))
    if bool((boxes[:, 2] > 0).any()):
        if config.erase_fill == "mean":
            top, left, h, w = (column.view(-1, 1, 1) for column in boxes[:, :4].to(device).unbind(1))
            rows = torch.arange(height, device=device).view(1, -1, 1)
            cols = torch.arange(width, device=device).view(1, 1, -1)
            inside = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)
            clips.masked_fill_(inside.unsqueeze(1), 0.0)
        else:
            for n in torch.nonzero(boxes[:, 2] > 0).flatten().tolist():
                top, left, h, w, seed = boxes[n].tolist()
                clips[n, :, top : top + h, left : left + w] = erase_noise(seed, h, w).to(device)
    return clips.view(shape)


def batch_buffer(shape: Sequence[int]) -> torch.Tensor:
    """An uninitialised uint8 tensor for a batch: in shared memory inside a data loader worker (as torch's
    collate allocates its output there), so sending it to the training process copies nothing."""
    if get_worker_info() is None:
        return torch.empty(tuple(shape), dtype=torch.uint8)
    storage = torch.UntypedStorage._new_shared(math.prod(shape))
    return torch.empty(0, dtype=torch.uint8).set_(storage).view(tuple(shape))


def collate_clips(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The loader's batch of dataset items: torch's default collate, except that ``clip`` is stacked in
    the items' own memory layout (channels-last: one plain copy instead of a transposing one)."""
    batch = default_collate([{key: value for key, value in item.items() if key != "clip"} for item in items])
    # movedim gives each item's (..., H, W, 3) memory contiguously; the batch is moved back the same way
    stacked = default_collate([item["clip"].movedim(-3, -1) for item in items])
    return {"clip": stacked.movedim(-1, -3), **batch}


class ClipTransform:
    """Turn a list of HxWx3 uint8 frames into a :class:`Clip`: uint8 (T, 3, height, width) plus the
    per-frame erasures; :func:`to_model_input` normalises and erases it on the device."""

    def __init__(self, config: TransformConfig, *, train: bool) -> None:
        self.config = config
        self.train = train

    def resize(self, frame: np.ndarray) -> np.ndarray:
        size = (self.config.width, self.config.height)
        if frame.shape[1] == size[0] and frame.shape[0] == size[1]:
            return frame
        image = Image.fromarray(frame).resize(size, _PIL_INTERPOLATION[self.config.interpolation])
        return np.asarray(image)

    def __call__(self, frames: Sequence[np.ndarray], rng: np.random.Generator | None = None) -> Clip:
        if not frames:
            raise ValueError("a clip needs at least one frame")
        if self.train and rng is None:
            raise ValueError("training transforms need a seeded rng")
        stacked = torch.from_numpy(np.stack([self.resize(frame) for frame in frames]))  # (T, H, W, 3)
        flip, erase = self.decide(len(frames), rng)
        if flip:
            stacked = stacked.flip(2)  # torch's flip: ~15x faster than copying numpy's reversed view
        # (T, H, W, 3) in memory, seen as (T, 3, H, W): transposing uint8 on the CPU cost a third of a
        # worker's time; the device does it (to_model_input), and collate_clips keeps this layout
        return Clip(stacked.permute(0, 3, 1, 2), torch.from_numpy(erase))

    def decide(self, frames: int, rng: np.random.Generator | None) -> tuple[bool, np.ndarray]:
        """The random decisions of a clip of ``frames`` frames, in the order :meth:`__call__` draws them
        (the flip, then each frame's erasure): (flip the clip?, int64 (frames, 5) erasures). The training
        loader's batches (:meth:`TrackletDataset.batch`) draw them here and leave the flip to the device."""
        erase = np.zeros((frames, len(ERASE_COLUMNS)), dtype=np.int64)
        if not self.train or rng is None:
            return False, erase
        flip = bool(rng.random() < self.config.flip_p)
        if self.config.erase_p > 0:
            for row in erase:
                if rng.random() < self.config.erase_p:
                    self._erase(row, self.config.height, self.config.width, rng)
        return flip, erase

    def _erase(self, row: np.ndarray, height: int, width: int, rng: np.random.Generator) -> None:
        """Draw one random rectangle into ``row`` (Zhong et al., "Random Erasing Data Augmentation"); the
        draws, in order, are those of erasing the float frame directly, except that a noise fill draws
        one seed instead of the noise itself."""
        area = height * width
        low, high = self.config.erase_area
        log_low, log_high = (math.log(a) for a in self.config.erase_aspect)
        for _ in range(10):  # rejection sampling: a rectangle that does not fit is redrawn
            target = area * rng.uniform(low, high)
            aspect = math.exp(rng.uniform(log_low, log_high))
            h = round(math.sqrt(target * aspect))
            w = round(math.sqrt(target / aspect))
            if 0 < h < height and 0 < w < width:
                top = int(rng.integers(0, height - h + 1))
                left = int(rng.integers(0, width - w + 1))
                seed = int(rng.integers(0, _NOISE_SEEDS)) if self.config.erase_fill == "random" else 0
                row[:] = (top, left, h, w, seed)
                return
