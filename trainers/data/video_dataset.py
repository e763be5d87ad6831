"""A torch ``Dataset`` of tracklets: temporal sampling + frame decoding + clip transforms.

Item ``i`` is a pure function of (seed, epoch, i): its random generator is seeded with all three, so data
loader workers, restarts and resumed runs see the same clips.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from trainers.data.index import Tracklet
from trainers.data.sampling import SamplingMode, sample_frame_indices
from trainers.data.transforms import ClipTransform
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

    - ``clip``: float tensor (T, 3, H, W), or (C, T, 3, H, W) in dense mode;
    - ``label``: class label from ``labels`` (folder id -> label), or -1 when no labels are given;
    - ``camera``: camera id; ``index``: position of the tracklet in this dataset.

    Frames are read under ``root``, or under a tracklet's own root (tracklets of extra training sources).
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
    ) -> None:
        self.root = Path(root)
        self.tracklets = tuple(tracklets)
        self.seq_len = seq_len
        self.mode = SamplingMode(mode)
        self.transform = transform
        self.labels = dict(labels) if labels is not None else None
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.tracklets)

    def __getitem__(self, index: int) -> dict[str, Any]:
        tracklet = self.tracklets[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        clips = sample_frame_indices(len(tracklet.frames), self.seq_len, self.mode, rng)
        # Decode each distinct frame once even when padding or dense clips repeat it.
        decoded = {int(i): load_frame(tracklet.frame_path(int(i), self.root)) for i in np.unique(clips)}
        tensors = [self.transform([decoded[int(i)] for i in clip], rng) for clip in clips]
        clip = tensors[0] if self.mode is not SamplingMode.DENSE else torch.stack(tensors)
        label = self.labels[tracklet.pid] if self.labels is not None else -1
        return {"clip": clip, "label": label, "camera": tracklet.camera, "index": index}
