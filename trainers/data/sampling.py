"""Which frames of a tracklet make up a clip of ``seq_len`` frames (TF-CLIP's temporal sampling).

As in TF-CLIP's ``datasets/video_loader_xh.py``: a tracklet of n frames is padded with its last frame to
``ceil(n / seq_len) * seq_len`` frames and cut into ``seq_len`` chunks of ``ceil(n / seq_len)`` consecutive
frames (so the last chunks may hold only the repeated last frame); a short tracklet (n < seq_len) gives
one-frame chunks ``0, 1, ..., n - 1, n - 1, ...``. Modes:

- ``chunk-random`` (training, the reference's ``rrs_train``): one random frame per chunk;
- ``chunk-first`` (testing, ``rrs_test``): the first frame of each chunk;
- ``dense`` (testing and the identity memory): every consecutive, non-overlapping ``seq_len``-frame clip;
  the last, shorter one is filled by cycling through its own frames (``[8, 9] -> [8, 9, 8, 9]``).

All functions return an integer array of shape (clips, seq_len): one clip except in dense mode.
"""

from __future__ import annotations

from enum import Enum

import numpy as np


class SamplingMode(str, Enum):
    CHUNK_RANDOM = "chunk-random"
    CHUNK_FIRST = "chunk-first"
    DENSE = "dense"


def _check(num_frames: int, seq_len: int) -> None:
    if num_frames < 1:
        raise ValueError(f"num_frames is {num_frames}, but a tracklet needs at least 1 frame")
    if seq_len < 1:
        raise ValueError(f"seq_len is {seq_len}, but must be >= 1")


def _pad(indices: np.ndarray, seq_len: int) -> np.ndarray:
    if len(indices) >= seq_len:
        return indices
    return np.concatenate([indices, np.full(seq_len - len(indices), indices[-1], dtype=indices.dtype)])


def chunks(num_frames: int, seq_len: int) -> np.ndarray:
    """(seq_len, chunk size) frame indices: the padded tracklet cut into equal consecutive chunks."""
    _check(num_frames, seq_len)
    if num_frames < seq_len:
        return _pad(np.arange(num_frames), seq_len)[:, None]
    size = -(-num_frames // seq_len)
    return _pad(np.arange(num_frames), size * seq_len).reshape(seq_len, size)


def chunk_random(num_frames: int, seq_len: int, rng: np.random.Generator) -> np.ndarray:
    pools = chunks(num_frames, seq_len)
    return pools[np.arange(seq_len), rng.integers(pools.shape[1], size=seq_len)][None]


def chunk_first(num_frames: int, seq_len: int) -> np.ndarray:
    return chunks(num_frames, seq_len)[:, 0][None]


def dense_clips(num_frames: int, seq_len: int) -> np.ndarray:
    _check(num_frames, seq_len)
    starts = range(0, num_frames, seq_len)
    return np.stack([np.resize(np.arange(s, min(s + seq_len, num_frames)), seq_len) for s in starts])


def sample_frame_indices(
    num_frames: int, seq_len: int, mode: SamplingMode | str, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Dispatch on ``mode``; ``chunk-random`` needs ``rng``."""
    mode = SamplingMode(mode)
    if mode is SamplingMode.CHUNK_RANDOM:
        if rng is None:
            raise ValueError("chunk-random sampling needs a seeded rng")
        return chunk_random(num_frames, seq_len, rng)
    if mode is SamplingMode.CHUNK_FIRST:
        return chunk_first(num_frames, seq_len)
    return dense_clips(num_frames, seq_len)
