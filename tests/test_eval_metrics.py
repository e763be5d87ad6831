"""CMC / mAP under the Market-1501 rules: hand-computed cases, junk handling, validation, and agreement with a
plain per-query loop on random data (ties included)."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch

from trainers.evaluation import metrics
from trainers.evaluation.metrics import RankingResult, cmc_map, cmc_map_detailed


def loop_reference(
    distmat: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    max_rank: int,
) -> tuple[np.ndarray, float, np.ndarray]:
    """The classic per-query implementation, kept deliberately naive: it is the specification."""
    cmcs, aps = [], np.full(distmat.shape[0], np.nan)
    for i in range(distmat.shape[0]):
        order = np.argsort(distmat[i], kind="stable")
        same_pid = g_pids[order] == q_pids[i]
        junk = same_pid & (g_camids[order] == q_camids[i])
        hits = same_pid[~junk]
        if not hits.any():
            continue
        cmc = np.minimum(np.cumsum(hits), 1).astype(float)
        cmc = np.concatenate([cmc, np.full(max(0, max_rank - cmc.size), cmc[-1])])[:max_rank]
        cmcs.append(cmc)
        precision = np.cumsum(hits) / np.arange(1, hits.size + 1)
        aps[i] = precision[hits].mean()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.mean(cmcs, axis=0), float(np.nanmean(aps)), aps


# Hand-computed example: 2 queries, 5 gallery items.
#   query 0: pid 1, cam 0     query 1: pid 2, cam 0
#   gallery pids [1, 2, 1, 3, 2], cams [1, 1, 0, 1, 1]
# q0 distances [0.5, 0.1, 0.3, 0.2, 0.9] -> order g1 (pid 2), g3 (pid 3), g2 (pid 1 cam 0: JUNK), g0 (pid 1
#   cam 1: match), g4. After removing g2: g1, g3, g0, g4 -> first match at rank 3.
#   CMC q0 = [0, 0, 1, 1, 1]; AP q0 = precision at the one hit = 1/3.
# q1 distances [0.4, 0.2, 0.1, 0.6, 0.3] -> order g2 (pid 1), g1 (pid 2 match), g4 (pid 2 match), g0, g3;
#   no junk (both matches are on camera 1).
#   CMC q1 = [0, 1, 1, 1, 1]; AP q1 = (1/2 + 2/3) / 2 = 7/12.
# Mean CMC = [0, 0.5, 1, 1, 1]; mAP = (1/3 + 7/12) / 2 = 11/24.
HAND_DIST = np.array([[0.5, 0.1, 0.3, 0.2, 0.9], [0.4, 0.2, 0.1, 0.6, 0.3]])
HAND_Q_PIDS = np.array([1, 2])
HAND_G_PIDS = np.array([1, 2, 1, 3, 2])
HAND_Q_CAMS = np.array([0, 0])
HAND_G_CAMS = np.array([1, 1, 0, 1, 1])


def hand_args() -> tuple[np.ndarray, ...]:
    return HAND_DIST, HAND_Q_PIDS, HAND_G_PIDS, HAND_Q_CAMS, HAND_G_CAMS


def test_hand_computed_example() -> None:
    result = cmc_map_detailed(*hand_args(), max_rank=5)
    np.testing.assert_allclose(result.cmc, [0.0, 0.5, 1.0, 1.0, 1.0])
    assert result.mAP == pytest.approx(11 / 24)
    np.testing.assert_allclose(result.per_query_ap, [1 / 3, 7 / 12])
    assert result.num_valid_queries == 2
    assert result.cmc.dtype == np.float64
    assert result.rank(2) == 0.5


def test_cmc_map_is_a_thin_wrapper() -> None:
    cmc, mean_ap = cmc_map(*hand_args(), max_rank=3)
    np.testing.assert_allclose(cmc, [0.0, 0.5, 1.0])
    assert isinstance(mean_ap, float)
    assert mean_ap == pytest.approx(11 / 24)


def test_max_rank_beyond_gallery_pads_with_final_value() -> None:
    # q0 has only 4 items left after junk removal, the gallery has 5; the curve stays at 1 up to rank 10.
    cmc, _ = cmc_map(*hand_args(), max_rank=10)
    np.testing.assert_allclose(cmc, [0.0, 0.5] + [1.0] * 8)


def test_junk_rules() -> None:
    # Query pid 7 cam 0. Gallery, closest first: A = pid 7 cam 0 (junk), B = pid 8 cam 0 (a different person
    # on the same camera: a genuine mistake, stays), C = pid 7 cam 1 (true match).
    # Ranking after junk removal: B, C -> R1 = 0, R2 = 1, AP = 1/2.
    # Had A been kept as a match, AP would be (1 + 2/3) / 2; had B been removed, AP would be 1.
    dist = np.array([[0.1, 0.2, 0.3]])
    result = cmc_map_detailed(dist, np.array([7]), np.array([7, 8, 7]), np.array([0]), np.array([0, 0, 1]), 3)
    np.testing.assert_allclose(result.cmc, [0.0, 1.0, 1.0])
    assert result.mAP == pytest.approx(0.5)


def test_same_pid_other_camera_counts_as_match() -> None:
    # Both gallery items are the query's identity; only the one on the query's camera is junk.
    # Gallery, closest first: pid 5 cam 2 (match), pid 5 cam 1 (junk). AP = 1, R1 = 1.
    dist = np.array([[0.1, 0.2]])
    cmc, mean_ap = cmc_map(dist, np.array([5]), np.array([5, 5]), np.array([1]), np.array([2, 1]), 2)
    np.testing.assert_allclose(cmc, [1.0, 1.0])
    assert mean_ap == 1.0


def test_query_without_valid_match_is_skipped() -> None:
    # Query 1 (pid 9, cam 0) has one same-pid item, on camera 0: junk, so nothing left to find.
    dist = np.array([[0.3, 0.1, 0.2], [0.1, 0.2, 0.3]])
    q_pids, g_pids = np.array([1, 9]), np.array([1, 9, 4])
    q_cams, g_cams = np.array([0, 0]), np.array([1, 0, 1])
    result = cmc_map_detailed(dist, q_pids, g_pids, q_cams, g_cams, max_rank=3)
    # Query 0: order g1 (pid 9), g2 (pid 4), g0 (match) -> AP 1/3, CMC [0, 0, 1].
    assert result.num_valid_queries == 1
    assert np.isnan(result.per_query_ap[1])
    assert result.mAP == pytest.approx(1 / 3)
    np.testing.assert_allclose(result.cmc, [0.0, 0.0, 1.0])


def test_no_valid_query_raises() -> None:
    dist = np.array([[0.1, 0.2]])
    with pytest.raises(ValueError, match="none of the 1 queries"):
        cmc_map(dist, np.array([1]), np.array([1, 2]), np.array([0]), np.array([0, 0]))
    with pytest.raises(ValueError, match="none of the 1 queries"):
        cmc_map(dist, np.array([3]), np.array([1, 2]), np.array([0]), np.array([0, 0]))


def test_ties_follow_gallery_order() -> None:
    # Both gallery items at distance 0.5: a stable sort keeps gallery order.
    # Negative first -> match at rank 2 -> AP 1/2; match first -> AP 1.
    dist = np.array([[0.5, 0.5]])
    q_pid, q_cam = np.array([1]), np.array([0])
    _, ap_negative_first = cmc_map(dist, q_pid, np.array([2, 1]), q_cam, np.array([1, 1]), 2)
    _, ap_match_first = cmc_map(dist, q_pid, np.array([1, 2]), q_cam, np.array([1, 1]), 2)
    assert ap_negative_first == pytest.approx(0.5)
    assert ap_match_first == 1.0


@pytest.mark.parametrize(
    ("field", "bad", "message"),
    [
        ("q_pids", np.array([1, 2, 3]), r"q_pids has shape \(3,\), but distmat has shape \(2, 5\)"),
        ("g_pids", np.array([1, 2]), r"g_pids has shape \(2,\), but distmat has shape \(2, 5\)"),
        ("q_camids", np.array([0]), r"q_camids has shape \(1,\)"),
        ("g_camids", np.zeros((5, 1)), r"g_camids has shape \(5, 1\), but must be 1-D"),
    ],
)
def test_shape_mismatch_names_the_array(field: str, bad: np.ndarray, message: str) -> None:
    args = dict(zip(("distmat", "q_pids", "g_pids", "q_camids", "g_camids"), hand_args(), strict=True))
    args[field] = bad
    with pytest.raises(ValueError, match=message):
        cmc_map(**args)


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_non_finite_distance_raises(bad_value: float) -> None:
    dist = HAND_DIST.copy()
    dist[1, 3] = bad_value
    with pytest.raises(ValueError, match="NaN or infinite"):
        cmc_map(dist, *hand_args()[1:])


def test_bad_distmat_and_max_rank_raise() -> None:
    with pytest.raises(ValueError, match="must be 2-D"):
        cmc_map(HAND_DIST[0], *hand_args()[1:])
    for bad_rank in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="max_rank"):
            cmc_map(*hand_args(), max_rank=bad_rank)


def test_ranking_result_is_frozen_and_checked() -> None:
    result = cmc_map_detailed(*hand_args(), max_rank=5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.mAP = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError, match=r"mAP is 1\.5"):
        RankingResult(cmc=np.ones(3), mAP=1.5, num_valid_queries=1, per_query_ap=np.ones(1))
    with pytest.raises(ValueError, match="num_valid_queries is 2"):
        RankingResult(cmc=np.ones(3), mAP=0.5, num_valid_queries=2, per_query_ap=np.array([0.5, np.nan]))
    with pytest.raises(ValueError, match="k is 6"):
        result.rank(6)  # max_rank was 5


def test_accepts_torch_and_string_labels() -> None:
    reference = cmc_map_detailed(*hand_args(), max_rank=5)
    from_torch = cmc_map_detailed(
        torch.from_numpy(HAND_DIST).float(),
        torch.from_numpy(HAND_Q_PIDS),
        torch.from_numpy(HAND_G_PIDS),
        torch.from_numpy(HAND_Q_CAMS),
        torch.from_numpy(HAND_G_CAMS),
        max_rank=5,
    )
    np.testing.assert_allclose(from_torch.cmc, reference.cmc)
    assert from_torch.mAP == pytest.approx(reference.mAP)
    named = cmc_map_detailed(
        HAND_DIST, HAND_Q_PIDS.astype(str), HAND_G_PIDS.astype(str), HAND_Q_CAMS, HAND_G_CAMS, max_rank=5
    )
    assert named.mAP == pytest.approx(reference.mAP)


@pytest.mark.parametrize("integer_distances", [False, True])
def test_matches_loop_reference_on_random_data(
    integer_distances: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Random problems of many shapes; integer-valued distances make exact ties common."""
    rng = np.random.default_rng(1234 + integer_distances)
    # Tiny chunks and tie blocks, so the multi-chunk and multi-block paths run too.
    monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", 64)
    monkeypatch.setattr(metrics, "_TIE_BLOCK_ELEMENTS", 16)
    checked = 0
    for _ in range(150):
        num_query, num_gallery = int(rng.integers(1, 25)), int(rng.integers(1, 40))
        if integer_distances:
            dist = rng.integers(0, 4, size=(num_query, num_gallery)).astype(np.float32)
        else:
            dist = rng.random((num_query, num_gallery))
        q_pids, g_pids = rng.integers(0, 6, num_query), rng.integers(0, 6, num_gallery)
        q_cams, g_cams = rng.integers(0, 3, num_query), rng.integers(0, 3, num_gallery)
        max_rank = int(rng.integers(1, 50))
        cmc_ref, map_ref, ap_ref = loop_reference(dist, q_pids, g_pids, q_cams, g_cams, max_rank)
        if np.isnan(map_ref):
            with pytest.raises(ValueError, match="none of the"):
                cmc_map(dist, q_pids, g_pids, q_cams, g_cams, max_rank)
            continue
        result = cmc_map_detailed(dist, q_pids, g_pids, q_cams, g_cams, max_rank)
        np.testing.assert_allclose(result.cmc, cmc_ref, rtol=0, atol=1e-12)
        np.testing.assert_allclose(result.per_query_ap, ap_ref, rtol=0, atol=1e-12)
        assert abs(result.mAP - map_ref) <= 1e-12
        checked += 1
    assert checked > 100


def test_larger_random_problem_matches_loop() -> None:
    rng = np.random.default_rng(7)
    dist = rng.random((300, 700)).astype(np.float32)
    q_pids, g_pids = rng.integers(0, 60, 300), rng.integers(0, 60, 700)
    q_cams, g_cams = rng.integers(0, 6, 300), rng.integers(0, 6, 700)
    cmc_ref, map_ref, _ = loop_reference(dist, q_pids, g_pids, q_cams, g_cams, 50)
    cmc, mean_ap = cmc_map(dist, q_pids, g_pids, q_cams, g_cams)
    assert np.abs(cmc - cmc_ref).max() <= 1e-12
    assert abs(mean_ap - map_ref) <= 1e-12
    assert 0.0 <= mean_ap <= 1.0
