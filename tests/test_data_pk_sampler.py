from __future__ import annotations

from collections import Counter

import pytest

from trainers.data.pk_sampler import PKSampler

# 6 identities: id 0 has 1 tracklet, id 1 has 2, the others 5 each
LABELS = [0] + [1] * 2 + [2] * 5 + [3] * 5 + [4] * 5 + [5] * 5


def test_every_batch_is_p_ids_times_k_tracklets() -> None:
    sampler = PKSampler(LABELS, p=3, k=4, seed=0)
    batches = list(sampler)
    assert batches
    for batch in batches:
        assert len(batch) == 12
        per_id = Counter(LABELS[i] for i in batch)
        assert len(per_id) == 3
        assert set(per_id.values()) == {4}


def test_ids_with_fewer_than_k_tracklets_are_resampled() -> None:
    sampler = PKSampler(LABELS, p=2, k=4, seed=0)
    seen = [i for batch in sampler for i in batch]
    assert 0 in seen  # the single-tracklet identity still appears, repeated
    batch_with_0 = next(b for b in sampler if 0 in b)
    assert batch_with_0.count(0) == 4


def test_deterministic_per_epoch_and_different_across_epochs() -> None:
    a = PKSampler(LABELS, p=2, k=2, seed=11)
    b = PKSampler(LABELS, p=2, k=2, seed=11)
    a.set_epoch(3)
    b.set_epoch(3)
    assert list(a) == list(b)
    b.set_epoch(4)
    assert list(a) != list(b)
    assert len(a) == len(list(a))


def test_invalid_parameters() -> None:
    with pytest.raises(ValueError, match=r"p .* is 1"):
        PKSampler(LABELS, p=1, k=2)
    with pytest.raises(ValueError, match=r"k .* is 0"):
        PKSampler(LABELS, p=2, k=0)
    with pytest.raises(ValueError, match="only 6 identities"):
        PKSampler(LABELS, p=7, k=2)
