"""Feature-side evaluation: L2 normalisation, 2 - 2 cos distances, k-reciprocal re-ranking and flip TTA."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainers.evaluation import rerank
from trainers.evaluation.distance import l2_normalize, pairwise_distance
from trainers.evaluation.metrics import cmc_map_detailed
from trainers.evaluation.rerank import k_reciprocal_rerank, k_reciprocal_rerank_distances
from trainers.evaluation.tta import extract_with_flip, flip_average

# ---------------------------------------------------------------------------------------------- distances


def test_l2_normalize_unit_rows_and_zero_rows() -> None:
    x = np.array([[3.0, 4.0], [0.0, 0.0], [1e30, 1e30], [1e-30, 0.0]], dtype=np.float32)
    y = l2_normalize(x)
    assert y.dtype == np.float32
    assert not np.isnan(y).any()
    np.testing.assert_allclose(y[0], [0.6, 0.8], rtol=1e-6)
    np.testing.assert_array_equal(y[1], [0.0, 0.0])  # zero stays zero, no NaN
    np.testing.assert_allclose(y[2], [2**-0.5, 2**-0.5], rtol=1e-6)  # no float32 overflow
    np.testing.assert_allclose(y[3], [1.0, 0.0], rtol=1e-6)  # no underflow to zero
    assert l2_normalize(torch.ones(2, 4, dtype=torch.float64)).dtype == np.float64


def test_l2_normalize_rejects_non_finite() -> None:
    with pytest.raises(ValueError, match="NaN or infinite"):
        l2_normalize(np.array([[1.0, np.nan]]))


def test_distance_is_two_minus_two_cosine() -> None:
    rng = np.random.default_rng(0)
    q, g = rng.standard_normal((13, 32)), rng.standard_normal((17, 32))
    cos = (q @ g.T) / np.outer(np.linalg.norm(q, axis=1), np.linalg.norm(g, axis=1))
    dist = pairwise_distance(q, g)
    assert dist.dtype == np.float32
    assert dist.shape == (13, 17)
    np.testing.assert_allclose(dist, 2.0 - 2.0 * cos, atol=2e-6)
    # Same as the squared Euclidean distance of the normalised vectors.
    qn, gn = q / np.linalg.norm(q, axis=1, keepdims=True), g / np.linalg.norm(g, axis=1, keepdims=True)
    np.testing.assert_allclose(dist, ((qn[:, None, :] - gn[None, :, :]) ** 2).sum(-1), atol=2e-6)


def test_distance_is_chunk_size_independent() -> None:
    rng = np.random.default_rng(1)
    q, g = rng.standard_normal((50, 64)).astype(np.float32), rng.standard_normal((30, 64)).astype(np.float32)
    reference = pairwise_distance(q, g, chunk_size=1000)
    for chunk_size in (1, 7, 49, 50, 51):
        # BLAS may pick a different kernel for a one-row product, hence a last-bit tolerance, not equality.
        np.testing.assert_allclose(pairwise_distance(q, g, chunk_size=chunk_size), reference, atol=1e-6)


def test_distance_identical_and_zero_features() -> None:
    x = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    dist = pairwise_distance(x, x)
    assert 0.0 <= dist[0, 0] < 1e-6  # float32 rounding, but clipped: never negative
    assert (dist >= 0).all()
    # Nearly parallel vectors are where 2 - 2 cos can round below zero; the clip must catch it.
    rng = np.random.default_rng(3)
    base = rng.standard_normal((1, 256)).astype(np.float32)
    near = base + 1e-6 * rng.standard_normal((200, 256)).astype(np.float32)
    assert (pairwise_distance(near, base) >= 0).all()
    np.testing.assert_allclose(dist[1], [2.0, 2.0])  # a blank feature is at cosine 0 from everything


def test_distance_accepts_torch() -> None:
    rng = np.random.default_rng(2)
    q, g = rng.standard_normal((4, 8)).astype(np.float32), rng.standard_normal((6, 8)).astype(np.float32)
    from_torch = pairwise_distance(torch.from_numpy(q).requires_grad_(), torch.from_numpy(g))
    np.testing.assert_array_equal(from_torch, pairwise_distance(q, g))


@pytest.mark.parametrize(
    ("query", "gallery", "kwargs", "message"),
    [
        (np.ones(4), np.ones((2, 4)), {}, "query_features has shape"),
        (np.ones((2, 4)), np.ones((2, 5)), {}, "feature dimension 4 and gallery_features 5"),
        (np.ones((2, 4)), np.full((2, 4), np.nan), {}, "gallery_features contains NaN"),
        (np.ones((2, 4)), np.ones((2, 4)), {"chunk_size": 0}, "chunk_size is 0"),
        (np.ones((2, 0)), np.ones((2, 0)), {}, "feature dimension 0"),
    ],
)
def test_distance_validation(query: np.ndarray, gallery: np.ndarray, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pairwise_distance(query, gallery, **kwargs)


# ---------------------------------------------------------------------------------------------- re-ranking


def reference_rerank(full: np.ndarray, num_query: int, k1: int, k2: int, lambda_value: float) -> np.ndarray:
    """Item-by-item transcription of Zhong et al. (2017), sets and loops, with the conventions of the authors'
    code as TF-CLIP ships it (utils/reranking.py): L46 distances divided by their column maxima and
    transposed; L60 round(k1 / 2) half to even; L65 a strictly larger overlap than 2/3; L47/L71/L74 V in
    float16; L93 1 - m / (2 - m); L95 the lambda mix with the normalised distance."""
    n = full.shape[0]
    d = (full / full.max(axis=0)).T
    order = np.argsort(d, axis=1, kind="stable")

    def reciprocal(i: int, k: int) -> set[int]:
        return {int(j) for j in order[i, : k + 1] if i in order[j, : k + 1]}

    half = int(np.around(k1 / 2))
    v = np.zeros((n, n))
    for p in range(n):
        r_p = reciprocal(p, k1)
        r_star = set(r_p)
        for q in r_p:
            r_q = reciprocal(q, half)
            if len(r_q & r_p) > 2 / 3 * len(r_q):
                r_star |= r_q
        members = sorted(r_star)
        weights = np.exp(-d[p, members].astype(np.float64))
        v[p, members] = weights / weights.sum()
    v = v.astype(np.float16).astype(np.float64)
    if k2 > 1:
        v = np.stack([v[order[p, :k2]].mean(axis=0) for p in range(n)]).astype(np.float16).astype(np.float64)
    jaccard = np.empty((num_query, n - num_query))
    for p in range(num_query):
        for g in range(num_query, n):
            m = np.minimum(v[p], v[g]).sum()
            jaccard[p, g - num_query] = 1 - m / (2 - m)
    return (1 - lambda_value) * jaccard + lambda_value * d[:num_query, num_query:]


def clustered_data(seed: int, *, ids: int = 30, per_query: int = 2, per_gallery: int = 5, noise: float = 1.1):
    """Well-separated Gaussian identities in 48-d; queries on camera 0, gallery on camera 1."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((ids, 48))
    q_pids, g_pids = np.repeat(np.arange(ids), per_query), np.repeat(np.arange(ids), per_gallery)
    q = centres[q_pids] + noise * rng.standard_normal((q_pids.size, 48))
    g = centres[g_pids] + noise * rng.standard_normal((g_pids.size, 48))
    # A few gallery items far noisier than the rest: the outliers re-ranking is meant to push back.
    g[:: per_gallery * 3] += 2.5 * rng.standard_normal((len(g[:: per_gallery * 3]), 48))
    return q, g, q_pids, g_pids, np.zeros(q_pids.size, int), np.ones(g_pids.size, int)


def test_rerank_matches_the_paper_transcription() -> None:
    q, g, *_ = clustered_data(3, ids=8, per_query=2, per_gallery=4)
    pooled = np.concatenate([q, g])
    full = pairwise_distance(pooled, pooled).astype(np.float64)
    for k1, k2, lam in ((6, 3, 0.3), (4, 1, 0.0), (9, 4, 0.7), (5, 2, 0.3), (20, 6, 0.3)):
        expected = reference_rerank(full, q.shape[0], k1, k2, lam)
        got = k_reciprocal_rerank_distances(
            full[: q.shape[0], q.shape[0] :],
            full[: q.shape[0], : q.shape[0]],
            full[q.shape[0] :, q.shape[0] :],
            k1=k1,
            k2=k2,
            lambda_value=lam,
        )
        # float16 V: the two round the same float64 values, up to the last bit of a sum
        np.testing.assert_allclose(got, expected, atol=2e-3)


def test_rerank_hand_checked_case() -> None:
    # One query q and gallery a, b with pooled squared distances q-a 1, q-b 4, a-b 2. Normalised per row
    # (reference utils/reranking.py L46): q [0, .25, 1], a [.5, 0, 1], b [1, .5, 0]. With k1 = 1: R(q) =
    # R(a) = {q, a}, R(b) = {b}; V_q = [1, e^-.25] / (1 + e^-.25), V_a = [e^-.5, 1] / (1 + e^-.5),
    # V_b = [0, 0, 1]; m(q, a) = .37754 + .43782 = .81536 -> d_J = 1 - m / (2 - m) = .31172;
    # m(q, b) = 0 -> d_J = 1. lambda .5: q-a = (.31172 + .25) / 2 = .28086, q-b = (1 + 1) / 2 = 1.
    q_g, q_q, g_g = np.array([[1.0, 4.0]]), np.zeros((1, 1)), np.array([[0.0, 2.0], [2.0, 0.0]])
    got = k_reciprocal_rerank_distances(q_g, q_q, g_g, k1=1, k2=1, lambda_value=0.5)
    np.testing.assert_allclose(got, [[0.28086, 1.0]], atol=1e-3)


def test_rerank_shape_dtype_and_lambda_one() -> None:
    q, g, *_ = clustered_data(0, ids=10)
    out = k_reciprocal_rerank(q, g, k1=6, k2=3, lambda_value=0.3)
    assert out.shape == (q.shape[0], g.shape[0])
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    # lambda = 1 returns the original distance divided by each query's largest pooled distance.
    pooled = np.concatenate([q, g])
    peak = pairwise_distance(q, pooled).max(axis=1, keepdims=True)
    np.testing.assert_allclose(
        k_reciprocal_rerank(q, g, lambda_value=1.0), pairwise_distance(q, g) / peak, rtol=1e-6
    )
    d_qg = pairwise_distance(q, g).astype(np.float64)
    same = k_reciprocal_rerank_distances(
        d_qg, pairwise_distance(q, q), pairwise_distance(g, g), k1=5, k2=2, lambda_value=1
    )
    assert same.dtype == np.float64
    np.testing.assert_allclose(same, d_qg / peak, rtol=1e-6)


def test_rerank_is_deterministic() -> None:
    q, g, *_ = clustered_data(1, ids=10)
    first = k_reciprocal_rerank(q, g, k1=7, k2=3)
    np.testing.assert_array_equal(first, k_reciprocal_rerank(q, g, k1=7, k2=3))


def test_rerank_improves_map_on_clustered_data(monkeypatch: pytest.MonkeyPatch) -> None:
    # Small blocks so the blocked paths (neighbour tables, Jaccard triples) are exercised too.
    monkeypatch.setattr(rerank, "_BLOCK_ELEMENTS", 512)
    gains = []
    for seed in range(3):
        q, g, q_pids, g_pids, q_cams, g_cams = clustered_data(10 + seed)
        before = cmc_map_detailed(pairwise_distance(q, g), q_pids, g_pids, q_cams, g_cams).mAP
        after = cmc_map_detailed(k_reciprocal_rerank(q, g, k1=8, k2=3), q_pids, g_pids, q_cams, g_cams).mAP
        assert after >= before - 1e-9
        gains.append(after - before)
    assert np.mean(gains) > 0.02  # it should clearly help here, not merely do no harm


def test_rerank_k1_larger_than_item_count() -> None:
    rng = np.random.default_rng(5)
    out = k_reciprocal_rerank(rng.standard_normal((2, 8)), rng.standard_normal((3, 8)), k1=50, k2=20)
    assert out.shape == (2, 3)
    assert np.isfinite(out).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k1": 0}, "k1 is 0"),
        ({"k2": 0}, "k2 is 0"),
        ({"k1": 2.5}, "k1 is 2.5"),
        ({"k2": True}, "k2 is True"),
        ({"lambda_value": -0.1}, "lambda_value is -0.1"),
        ({"lambda_value": 1.5}, "lambda_value is 1.5"),
        ({"lambda_value": float("nan")}, "lambda_value is nan"),
    ],
)
def test_rerank_bad_parameters_raise(kwargs: dict, message: str) -> None:
    x = np.ones((3, 4))
    with pytest.raises(ValueError, match=message):
        k_reciprocal_rerank(x, x, **kwargs)


def test_rerank_distance_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match=r"q_q_dist has shape \(3, 3\), but must have shape \(2, 2\)"):
        k_reciprocal_rerank_distances(np.zeros((2, 4)), np.zeros((3, 3)), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="g_g_dist contains NaN"):
        k_reciprocal_rerank_distances(np.zeros((2, 2)), np.zeros((2, 2)), np.full((2, 2), np.nan))


# ---------------------------------------------------------------------------------------------- flip TTA


def width_weighted_extractor(clips: torch.Tensor) -> torch.Tensor:
    """Not flip-invariant: weighs every column by its position along the width."""
    weights = torch.arange(1, clips.shape[-1] + 1, dtype=clips.dtype)
    return (clips * weights).sum(dim=(-1, -2)).flatten(1)


def test_flip_of_width_symmetric_input_changes_nothing() -> None:
    torch.manual_seed(0)
    half = torch.randn(2, 3, 3, 4, 3)
    symmetric = torch.cat([half, half.flip(-1)], dim=-1)  # mirror image of itself
    direct = width_weighted_extractor(symmetric)
    torch.testing.assert_close(extract_with_flip(width_weighted_extractor, symmetric), direct)


def test_flip_average_equals_manual_average() -> None:
    torch.manual_seed(1)
    clips = torch.randn(2, 3, 3, 4, 5)
    expected = (width_weighted_extractor(clips) + width_weighted_extractor(clips.flip(-1))) / 2
    got = extract_with_flip(width_weighted_extractor, clips)
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, width_weighted_extractor(clips))  # the extractor really is asymmetric


def test_flip_average_numpy_and_validation() -> None:
    a, b = np.array([[1.0, 3.0]]), np.array([[3.0, 5.0]])
    np.testing.assert_array_equal(flip_average(a, b), [[2.0, 4.0]])
    assert isinstance(flip_average(torch.ones(2, 3), torch.zeros(2, 3)), torch.Tensor)
    with pytest.raises(ValueError, match="must be equal"):
        flip_average(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="must be equal"):
        flip_average(torch.ones(2, 3), torch.ones(3, 2))
    with pytest.raises(TypeError, match="both must be numpy arrays or both torch tensors"):
        flip_average(np.ones((2, 3)), torch.ones(2, 3))
    with pytest.raises(ValueError, match="at least 3 axes"):
        extract_with_flip(width_weighted_extractor, torch.ones(2, 3))
