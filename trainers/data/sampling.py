"""Which frames of a tracklet make up a clip of ``seq_len`` frames (TF-CLIP's temporal sampling).

A tracklet of n frames is split into ``seq_len`` equal chunks (``np.array_split``); short tracklets
(n < seq_len) are padded by repeating the last frame. Modes:

- ``chunk-random`` (training): one random frame per chunk;
- ``chunk-first`` (testing): the first frame of each chunk;
- ``dense`` (testing): every consecutive, non-overlapping ``seq_len``-frame clip, the last one padded.

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


def chunk_random(num_frames: int, seq_len: int, rng: np.random.Generator) -> np.ndarray:
    _check(num_frames, seq_len)
    if num_frames < seq_len:
        return _pad(np.arange(num_frames), seq_len)[None]
    chunks = np.array_split(np.arange(num_frames), seq_len)
    return np.array([chunk[rng.integers(len(chunk))] for chunk in chunks])[None]


def chunk_first(num_frames: int, seq_len: int) -> np.ndarray:
    _check(num_frames, seq_len)
    if num_frames < seq_len:
        return _pad(np.arange(num_frames), seq_len)[None]
    return np.array([chunk[0] for chunk in np.array_split(np.arange(num_frames), seq_len)])[None]


def dense_clips(num_frames: int, seq_len: int) -> np.ndarray:
    _check(num_frames, seq_len)
    starts = range(0, num_frames, seq_len)
    return np.stack([_pad(np.arange(s, min(s + seq_len, num_frames)), seq_len) for s in starts])


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
