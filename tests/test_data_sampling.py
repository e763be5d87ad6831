from __future__ import annotations

import numpy as np
import pytest

from trainers.data.sampling import chunk_first, chunk_random, chunks, dense_clips, sample_frame_indices


def test_chunk_first_splits_into_equal_chunks() -> None:
    # TF-CLIP datasets/video_loader_xh.py L44-48: 20 frames, 8 chunks of ceil(20/8) = 3 over the tracklet
    # padded with its last frame to 24 -> [0-2] [3-5] ... [18, 19, 19] [19, 19, 19]; rrs_test (L145) takes
    # the first frame of each.
    assert chunk_first(20, 8).tolist() == [[0, 3, 6, 9, 12, 15, 18, 19]]
    assert chunks(20, 8)[-2:].tolist() == [[18, 19, 19], [19, 19, 19]]
    assert chunk_first(16, 8).tolist() == [[0, 2, 4, 6, 8, 10, 12, 14]]


def test_short_tracklets_repeat_the_last_frame() -> None:
    assert chunk_first(3, 8).tolist() == [[0, 1, 2, 2, 2, 2, 2, 2]]
    rng = np.random.default_rng(0)
    assert chunk_random(1, 4, rng).tolist() == [[0, 0, 0, 0]]


def test_chunk_random_takes_one_frame_per_chunk() -> None:
    # TF-CLIP datasets/video_loader_xh.py L126-127 (rrs_train): one uniform draw from each padded chunk.
    rng = np.random.default_rng(1)
    pools = chunks(50, 8)  # 8 chunks of 7 over 50 frames padded to 56
    draws = np.concatenate([chunk_random(50, 8, rng) for _ in range(300)])
    for column, pool in enumerate(pools):
        assert set(draws[:, column]) == set(pool.tolist())  # every frame of the chunk, and only those
    assert set(draws[:, 7]) == {49}  # the last chunk is [49, 49, ...]: padding


def test_dense_covers_every_frame_with_padding() -> None:
    # TF-CLIP datasets/video_loader_xh.py L91-105: consecutive clips, the last filled by cycling its frames.
    clips = dense_clips(10, 4)
    assert clips.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 8, 9]]
    assert dense_clips(8, 4).tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert dense_clips(9, 4).tolist()[-1] == [8, 8, 8, 8]


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
