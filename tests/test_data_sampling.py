from __future__ import annotations

import numpy as np
import pytest

from trainers.data.sampling import chunk_first, chunk_random, dense_clips, sample_frame_indices


def test_chunk_first_splits_into_equal_chunks() -> None:
    # 20 frames in 8 chunks: sizes 3,3,3,3,2,2,2,2 -> starts 0,3,6,9,12,14,16,18
    assert chunk_first(20, 8).tolist() == [[0, 3, 6, 9, 12, 14, 16, 18]]


def test_short_tracklets_repeat_the_last_frame() -> None:
    assert chunk_first(3, 8).tolist() == [[0, 1, 2, 2, 2, 2, 2, 2]]
    rng = np.random.default_rng(0)
    assert chunk_random(1, 4, rng).tolist() == [[0, 0, 0, 0]]


def test_chunk_random_takes_one_frame_per_chunk() -> None:
    rng = np.random.default_rng(1)
    chunks = np.array_split(np.arange(50), 8)
    draws = np.concatenate([chunk_random(50, 8, rng) for _ in range(200)])
    for column, chunk in enumerate(chunks):
        assert set(draws[:, column]) <= set(chunk)
        assert len(set(draws[:, column])) == len(chunk)  # every frame of the chunk gets drawn eventually


def test_dense_covers_every_frame_with_padding() -> None:
    clips = dense_clips(10, 4)
    assert clips.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 9, 9]]


def test_dispatch_and_errors() -> None:
    assert sample_frame_indices(9, 3, "chunk-first").shape == (1, 3)
    assert sample_frame_indices(9, 3, "dense").shape == (3, 3)
    with pytest.raises(ValueError, match="needs a seeded rng"):
        sample_frame_indices(9, 3, "chunk-random")
    with pytest.raises(ValueError, match="is not a valid SamplingMode"):
        sample_frame_indices(9, 3, "sparse")
    with pytest.raises(ValueError, match="seq_len is 0"):
        chunk_first(9, 0)
    with pytest.raises(ValueError, match="num_frames is 0"):
        chunk_first(0, 4)
