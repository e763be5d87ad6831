"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with k-reciprocal Encoding",
CVPR 2017) as the authors' public code computes it - the code path TF-CLIP ships as ``utils/reranking.py``
(and torchreid as ``torchreid/utils/rerank.py``) - vectorised with numpy.

The idea: a true match of a probe tends to have the probe among its own nearest neighbours too, so the set of
*k-reciprocal* neighbours is a cleaner description of an item than its plain nearest neighbours. Two items
that share many reciprocal neighbours are likely the same person; the Jaccard distance between those sets,
blended with the original distance, gives the re-ranked distance. Steps, with the paper's symbols, over all
query and gallery items pooled:

0. Normalisation (the reference code, not the paper): the squared-Euclidean distance matrix is divided by
   its column maxima and transposed, so for the symmetric pooled matrix row p of ``d`` is divided by its own
   maximum and every ``d(p, .)`` lies in [0, 1]. This normalised ``d`` is used everywhere below, including
   the final mix.
1. ``N(p, k)``: the k nearest neighbours of p (p itself included, at distance 0), ties broken by index so
   the result is deterministic (the reference's unstable argsort breaks them arbitrarily).
2. ``R(p, k1) = {g in N(p, k1) : p in N(g, k1)}``: the k-reciprocal neighbours (``k1``; the ``k1 + 1``
   nearest are looked at, so that p itself does not use up one of the k1 places).
3. Expansion: ``R*(p) = R(p, k1)`` united with every ``R(q, round(k1 / 2))``, for q in ``R(p, k1)``, that
   overlaps ``R(p, k1)`` in MORE than 2/3 of its members (eq. 6 of the paper; numpy's round-half-to-even, as
   in the reference: k1 = 5 gives 2).
4. Gaussian-kernel weighted encoding: ``V_p[g] = exp(-d(p, g))`` for g in ``R*(p)``, 0 elsewhere, normalised
   to sum 1; the reference stores V in float16, and so do we (values rounded to float16).
5. Local query expansion: ``V_p`` is replaced by the mean of ``V_g`` over the ``k2`` nearest neighbours g of p
   (p itself first), rounded to float16 again; ``k2 = 1`` disables it.
6. Jaccard distance ``d_J(p, g) = 1 - m / (2 - m)`` with ``m = sum_j min(V_p[j], V_g[j])`` (the reference's
   form of ``1 - sum min / sum max`` for rows that sum to 1; it accumulates m in float16, we in float64).
7. ``d*(p, g) = (1 - lambda) d_J(p, g) + lambda d(p, g)`` (``lambda_value``), with the normalised ``d``, so
   ``lambda_value = 1`` returns the normalised distance.

Everything is computed on index arrays and a compressed sparse-row form of the ``V`` vectors, whose rows hold
only tens of non-zeros: no Python loop over items, and memory grows with the number of items times k1^2, not
with the square of the number of items (apart from the full distance matrix itself).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from trainers.evaluation.distance import as_numpy, pairwise_distance

__all__ = ["k_reciprocal_rerank", "k_reciprocal_rerank_distances", "validate_rerank_parameters"]

#: Elements per temporary block (neighbour tables, Jaccard triples): bounds peak memory at tens of MB.
_BLOCK_ELEMENTS = 1 << 22


def validate_rerank_parameters(k1: int, k2: int, lambda_value: float) -> None:
    """Raise ``ValueError`` naming the first invalid re-ranking parameter."""
    for name, value in (("k1", k1), ("k2", k2)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} is {value!r}, but must be an integer >= 1")
    if isinstance(lambda_value, bool) or not isinstance(lambda_value, (int, float, np.floating, np.integer)):
        raise ValueError(f"lambda_value is {lambda_value!r}, but must be a number in [0, 1]")
    if not 0.0 <= float(lambda_value) <= 1.0:
        raise ValueError(f"lambda_value is {lambda_value!r}, but must be in [0, 1]")


def _distance_matrix(value: Any, name: str, shape: tuple[int, int]) -> np.ndarray:
    array = as_numpy(value, name=name)
    if array.ndim != 2 or array.shape != shape:
        raise ValueError(f"{name} has shape {array.shape}, but must have shape {shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{name} has dtype {array.dtype}, but must be a floating-point distance matrix")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values, but distances must be finite")
    return array


def _nearest_neighbours(dist: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` nearest items of every row, closest first, ties broken by lower index.

    Sorting whole rows with a stable argsort would cost O(N^2 log N); instead each distance and its column
    index are packed into one 64-bit key (the float32 bit pattern mapped to an order-preserving unsigned
    integer in the high half, the index in the low half), so a plain partial sort of the keys selects and
    orders the neighbours with the stable tie-break built in.
    """
    n = dist.shape[1]
    out = np.empty((dist.shape[0], k), dtype=np.intp)
    block = max(1, _BLOCK_ELEMENTS // n)
    columns = np.arange(n, dtype=np.uint64)
    for start in range(0, dist.shape[0], block):
        # "+ 0" turns -0.0 into +0.0, which compares equal to it but has a different bit pattern.
        chunk = np.ascontiguousarray(dist[start : start + block], dtype=np.float32) + np.float32(0)
        bits = chunk.view(np.uint32)
        negative = (bits >> np.uint32(31)).astype(bool)
        ordered = np.where(negative, ~bits, bits | np.uint32(0x80000000)).astype(np.uint64)
        keys = (ordered << np.uint64(32)) | columns
        if k < n:
            keys = np.partition(keys, k - 1, axis=1)[:, :k]
        keys.sort(axis=1)
        out[start : start + block] = (keys & np.uint64(0xFFFFFFFF)).astype(np.intp)
    return out


def _reciprocal_mask(neighbours: np.ndarray, k: int) -> np.ndarray:
    """``mask[p, a]`` is True when ``neighbours[p, a]`` (one of p's first k) has p among its own first k."""
    forward = neighbours[:, :k]
    n = forward.shape[0]
    mask = np.empty(forward.shape, dtype=bool)
    block = max(1, _BLOCK_ELEMENTS // (k * k))
    for start in range(0, n, block):
        rows = np.arange(start, min(start + block, n))
        backward = forward[forward[rows]]  # (rows, k, k): neighbours of each neighbour
        mask[rows] = (backward == rows[:, None, None]).any(axis=2)
    return mask


def _expanded_reciprocal_sets(neighbours: np.ndarray, k1: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the pairs (p, g) with g in R*(p), the expanded k-reciprocal set."""
    n = neighbours.shape[0]
    half = int(np.around(k1 / 2))  # round half to even, as the reference
    recip = _reciprocal_mask(neighbours, k1 + 1)
    recip_half = _reciprocal_mask(neighbours, min(half + 1, k1 + 1))
    forward = neighbours[:, : k1 + 1]
    forward_half = neighbours[:, : recip_half.shape[1]]
    half_size = recip_half.sum(axis=1)

    in_r = np.zeros((n, n), dtype=bool)  # dense membership table of R(p, k1): n^2 bytes
    rows, slots = np.nonzero(recip)
    in_r[rows, forward[rows, slots]] = True
    in_r_star = in_r.copy()

    width = forward.shape[1] * forward_half.shape[1]
    block = max(1, _BLOCK_ELEMENTS // width)
    for start in range(0, n, block):
        p = np.arange(start, min(start + block, n))
        candidates = forward[p]  # (b, k1 + 1)
        members = forward_half[candidates]  # (b, k1 + 1, half + 1): R(q, k1/2) padded with non-members
        member_valid = recip_half[candidates]
        overlap = np.count_nonzero(in_r[p[:, None, None], members] & member_valid, axis=2)
        # |R(p,k1) & R(q,k1/2)| > 2/3 |R(q,k1/2)|, in integers to avoid rounding at the boundary.
        accept = recip[p] & (3 * overlap > 2 * half_size[candidates])
        bi, ai, mi = np.nonzero(accept[:, :, None] & member_valid)
        in_r_star[p[bi], members[bi, ai, mi]] = True
    return np.nonzero(in_r_star)


def _csr_sum_duplicates(
    rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n_rows: int, n_cols: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Compressed sparse rows (indptr, cols, vals), sorted by (row, col), with duplicate entries summed."""
    keys = rows.astype(np.int64) * n_cols + cols
    unique, inverse = np.unique(keys, return_inverse=True)
    summed = np.bincount(inverse.ravel(), weights=vals, minlength=unique.size)
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(unique // n_cols, minlength=n_rows), out=indptr[1:])
    return indptr, (unique % n_cols).astype(np.intp), summed


def _segment_gather(starts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For segments ``[starts[i], starts[i] + counts[i])``, return (segment id, index) of every element."""
    owner = np.repeat(np.arange(counts.size), counts)
    first = np.cumsum(counts) - counts
    index = starts[owner] + (np.arange(owner.size) - first[owner])
    return owner, index


def _encode(dist: np.ndarray, neighbours: np.ndarray, k1: int, k2: int):
    """The V vectors of every item, after local query expansion, as CSR (indptr, cols, vals)."""
    n = dist.shape[0]
    rows, cols = _expanded_reciprocal_sets(neighbours, k1)
    d = dist[rows, cols].astype(np.float64)
    # exp(-d) normalised per row equals exp(-(d - min_row d)) normalised; the shift avoids underflow to an
    # all-zero row when distances are large (e.g. after a +100 attribute penalty).
    row_min = np.full(n, np.inf)
    np.minimum.at(row_min, rows, d)
    weights = np.exp(-(d - row_min[rows]))
    weights /= np.bincount(rows, weights=weights, minlength=n)[rows]
    indptr, cols, vals = _csr_sum_duplicates(rows, cols, _float16(weights), n, n)
    if k2 == 1:
        return indptr, cols, vals
    # V_qe[p] = mean of V[g] over g in N(p, k2): concatenate those rows, then sum duplicate columns.
    sources = neighbours[:, :k2].ravel()
    targets = np.repeat(np.arange(n), k2)
    counts = np.diff(indptr)[sources]
    owner, index = _segment_gather(indptr[sources], counts)
    indptr, cols, vals = _csr_sum_duplicates(targets[owner], cols[index], vals[index] / k2, n, n)
    return indptr, cols, _float16(vals)


def _float16(values: np.ndarray) -> np.ndarray:
    """Round to float16 as the reference's V matrix is stored (kept as float64 for the arithmetic)."""
    return values.astype(np.float16).astype(np.float64)


def _jaccard_distance(indptr: np.ndarray, cols: np.ndarray, vals: np.ndarray, num_query: int) -> np.ndarray:
    """``1 - m / (2 - m)``, ``m = sum min``, between every query row and every gallery row of V.

    Only columns where both vectors are non-zero contribute to ``sum min``, so the work is organised by
    column: every query entry is paired with the gallery entries of the same column (an inverted index, as
    in the paper and the reference code).
    """
    n = indptr.size - 1
    num_gallery = n - num_query
    row_of = np.repeat(np.arange(n), np.diff(indptr))

    query_part = row_of < num_query
    q_rows, q_cols, q_vals = row_of[query_part], cols[query_part], vals[query_part]
    g_order = np.argsort(cols[~query_part], kind="stable")
    g_rows = row_of[~query_part][g_order] - num_query
    g_cols = cols[~query_part][g_order]
    g_vals = vals[~query_part][g_order]
    g_count = np.bincount(g_cols, minlength=n)
    g_start = np.cumsum(g_count) - g_count

    min_sum = np.zeros(num_query * num_gallery)
    pairs_per_entry = g_count[q_cols]
    # Split the query entries so that each block pairs up about _BLOCK_ELEMENTS (query, gallery) entries.
    cumulative = np.cumsum(pairs_per_entry)
    total = int(cumulative[-1]) if cumulative.size else 0
    cuts = np.searchsorted(cumulative, np.arange(_BLOCK_ELEMENTS, total, _BLOCK_ELEMENTS), side="right")
    edges = np.unique(np.r_[0, cuts, q_rows.size])
    for lo, hi in itertools.pairwise(edges):
        owner, index = _segment_gather(g_start[q_cols[lo:hi]], pairs_per_entry[lo:hi])
        owner += lo
        flat = q_rows[owner] * num_gallery + g_rows[index]
        contrib = np.minimum(q_vals[owner], g_vals[index])
        min_sum += np.bincount(flat, weights=contrib, minlength=min_sum.size)
    min_sum = min_sum.reshape(num_query, num_gallery)
    return 1.0 - min_sum / (2.0 - min_sum)


def _normalise(full: np.ndarray) -> np.ndarray:
    """The reference's ``transpose(d / max(d, axis=0))``; an all-zero column stays zero."""
    peak = full.max(axis=0)
    scaled = np.divide(full, peak, out=np.zeros_like(full), where=peak > 0)
    return np.ascontiguousarray(scaled.T)


def _rerank(full: np.ndarray, dtype: np.dtype, num_query: int, k1: int, k2: int, lambda_value: float):
    n = full.shape[0]  # >= 2: at least one query and one gallery item
    k1 = min(k1, n - 1)
    k2 = min(k2, n)
    original = _normalise(full.astype(np.float32, copy=False))
    neighbours = _nearest_neighbours(original, max(k1 + 1, k2))
    indptr, cols, vals = _encode(original, neighbours, k1, k2)
    jaccard = _jaccard_distance(indptr, cols, vals, num_query)
    lam = float(lambda_value)
    # (1 - 1) * d_J is exactly 0, so lambda_value = 1 returns the normalised distance itself.
    return ((1.0 - lam) * jaccard + lam * original[:num_query, num_query:]).astype(dtype)


def k_reciprocal_rerank_distances(
    q_g_dist: Any,
    q_q_dist: Any,
    g_g_dist: Any,
    *,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
) -> np.ndarray:
    """Re-ranked query-gallery distances from the three distance matrices (see the module docstring).

    Taking distances rather than features lets a caller re-rank any distance, e.g. one that already carries
    soft-biometric penalties; the neighbourhoods are found with the query and gallery items pooled.

    Args:
        q_g_dist: ``(num_query, num_gallery)`` query-gallery distances.
        q_q_dist: ``(num_query, num_query)`` query-query distances.
        g_g_dist: ``(num_gallery, num_gallery)`` gallery-gallery distances.
        k1: size of the k-reciprocal neighbourhood (the paper's k1), >= 1; capped at the number of items - 1.
        k2: size of the local query expansion (the paper's k2), >= 1; 1 disables it.
        lambda_value: weight of the original distance (the paper's lambda), in [0, 1].

    Returns:
        ``(num_query, num_gallery)`` array in the dtype of ``q_g_dist``.
    """
    validate_rerank_parameters(k1, k2, lambda_value)
    q_g = as_numpy(q_g_dist, name="q_g_dist")
    if q_g.ndim != 2 or min(q_g.shape) < 1:
        raise ValueError(f"q_g_dist has shape {q_g.shape}, but must be 2-D with at least one query and item")
    num_query, num_gallery = q_g.shape
    q_g = _distance_matrix(q_g, "q_g_dist", (num_query, num_gallery))
    q_q = _distance_matrix(q_q_dist, "q_q_dist", (num_query, num_query))
    g_g = _distance_matrix(g_g_dist, "g_g_dist", (num_gallery, num_gallery))
    full = np.block([[q_q, q_g], [q_g.T, g_g]])
    return _rerank(full, q_g.dtype, num_query, int(k1), int(k2), lambda_value)


def k_reciprocal_rerank(
    query_features: Any,
    gallery_features: Any,
    *,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
) -> np.ndarray:
    """Re-ranked query-gallery distances from features (see the module docstring for the method).

    The original distance is :func:`~trainers.evaluation.distance.pairwise_distance` (``2 - 2 cos`` of
    L2-normalised features, the reference's squared Euclidean distance of normalised features), normalised
    per item as in step 0. Defaults k1 = 20, k2 = 6, lambda = 0.3 are those of the paper and of TF-CLIP's
    ``utils/metrics.py`` (which also uses 50 / 15 / 0.3 in one place).

    Returns:
        float32 ``(num_query, num_gallery)`` array.
    """
    validate_rerank_parameters(k1, k2, lambda_value)
    query = as_numpy(query_features, name="query_features")
    gallery = as_numpy(gallery_features, name="gallery_features")
    for name, array in (("query_features", query), ("gallery_features", gallery)):
        if array.ndim != 2 or array.shape[0] < 1:
            raise ValueError(f"{name} has shape {array.shape}, but must be 2-D with at least one row")
    pooled = np.concatenate([query, gallery]).astype(np.float32, copy=False)
    full = pairwise_distance(pooled, pooled)
    return _rerank(full, np.dtype(np.float32), query.shape[0], int(k1), int(k2), lambda_value)
