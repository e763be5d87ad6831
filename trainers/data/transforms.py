"""Clip-level image transforms on decoded frames.

Frames of one tracklet may differ in size (UAV crops range from ~18x37 to ~293x542 px), so each frame is
resized on its own, then the clip is stacked. A flip applies to the whole clip (a person does not mirror
between frames); random erasing is drawn per frame. All randomness comes from the ``rng`` passed in, so a
sample is a pure function of (seed, epoch, index).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from trainers.data.config import TransformConfig

_PIL_INTERPOLATION = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}


class ClipTransform:
    """Turn a list of HxWx3 uint8 frames into a normalised float tensor of shape (T, 3, height, width)."""

    def __init__(self, config: TransformConfig, *, train: bool) -> None:
        self.config = config
        self.train = train
        self._mean = torch.tensor(config.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(config.std, dtype=torch.float32).view(1, 3, 1, 1)

    def resize(self, frame: np.ndarray) -> np.ndarray:
        size = (self.config.width, self.config.height)
        if frame.shape[1] == size[0] and frame.shape[0] == size[1]:
            return frame
        image = Image.fromarray(frame).resize(size, _PIL_INTERPOLATION[self.config.interpolation])
        return np.asarray(image)

    def __call__(self, frames: Sequence[np.ndarray], rng: np.random.Generator | None = None) -> torch.Tensor:
        if not frames:
            raise ValueError("a clip needs at least one frame")
        if self.train and rng is None:
            raise ValueError("training transforms need a seeded rng")
        stacked = np.stack([self.resize(frame) for frame in frames])  # (T, H, W, 3) uint8
        # contiguous before the arithmetic: the same values, ~1.7x faster than on the permuted view
        clip = torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous().float().div_(255.0)
        if self.train and rng is not None and rng.random() < self.config.flip_p:
            clip = clip.flip(-1)
        clip = (clip - self._mean) / self._std
        if self.train and rng is not None and self.config.erase_p > 0:
            for frame in clip:
                if rng.random() < self.config.erase_p:
                    self._erase(frame, rng)
        return clip

    def _erase(self, frame: torch.Tensor, rng: np.random.Generator) -> None:
        """Erase one random rectangle in place (Zhong et al., "Random Erasing Data Augmentation")."""
        _, height, width = frame.shape
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
                if self.config.erase_fill == "mean":
                    frame[:, top : top + h, left : left + w] = 0.0
                else:
                    noise = rng.standard_normal((3, h, w)).astype(np.float32)
                    frame[:, top : top + h, left : left + w] = torch.from_numpy(noise)
                return
