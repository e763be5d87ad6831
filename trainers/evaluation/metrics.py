"""CMC and mAP under the Market-1501 rules, vectorised over queries.

The rules (REFERENCE_REID.md, section 2): for each query, sort the gallery ascending by distance (ties broken
by gallery index, i.e. a stable sort); drop "junk" gallery items, those with the query's identity *and* its
camera; skip a query with no true match left; CMC(k) is 1 when a true match is within the first k of what
remains; AP is the mean over true matches of the precision at each true-match position; mAP is the mean AP.

Why not argsort every row? At AG-VPReID scale (2,751 x 4,416) a stable argsort of the whole matrix takes over
a second on two cores, longer than the matrix product that produced the distances. Only the positions of the
gallery items that share the query's identity matter for CMC and AP, and there are a handful per query. So
each chunk of rows is sorted by *value* only (numpy's SIMD sort, ~10x faster than a stable argsort), and the
position of each same-identity item is found by a binary search in its sorted row, run for all such items of
the chunk at once. That is exactly the position a stable argsort would give: the number of items strictly
closer, plus - only for the rare exact ties - the number of equally distant items with a lower gallery index.
Junk items are located the same way and subtracted from the positions of the true matches behind them.
The same-identity pairs themselves come from grouping the gallery by identity, not from comparing every
query with every gallery item.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from trainers.evaluation.distance import as_numpy, as_real_matrix

__all__ = ["RankingResult", "cmc_map", "cmc_map_detailed"]

#: Distance-matrix elements sorted per chunk of query rows (16 MB of float32): enough rows per numpy call to
#: amortise its overhead, small enough to stay in cache-friendly territory.
_CHUNK_ELEMENTS = 1 << 22

#: Elements compared per block when resolving exact ties (see ``_tie_offsets``).
_TIE_BLOCK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class RankingResult:
    """CMC curve and mAP of one query-gallery evaluation, with the per-query detail behind them.

    Attributes:
        cmc: float64 array of length ``max_rank``; ``cmc[k - 1]`` is the fraction of evaluated queries with a
            true match in the top k (after junk removal).
        mAP: mean average precision over the evaluated queries, in ``[0, 1]``.
        num_valid_queries: queries that had at least one true match left after junk removal.
        per_query_ap: float64 array with one AP per query, NaN for the skipped ones.
    """

    cmc: np.ndarray
    mAP: float  # spelled as in every ReID paper
    num_valid_queries: int
    per_query_ap: np.ndarray

    def __post_init__(self) -> None:
        if self.cmc.ndim != 1 or self.cmc.size < 1:
            raise ValueError(f"cmc has shape {self.cmc.shape}, but must be 1-D and non-empty")
        if not 0.0 <= self.mAP <= 1.0:
            raise ValueError(f"mAP is {self.mAP}, but must be in [0, 1]")
        if self.num_valid_queries < 1:
            raise ValueError(f"num_valid_queries is {self.num_valid_queries}, but must be >= 1")
        evaluated = int(np.count_nonzero(~np.isnan(self.per_query_ap)))
        if evaluated != self.num_valid_queries:
            raise ValueError(
                f"per_query_ap has {evaluated} non-NaN entries, but num_valid_queries is "
                f"{self.num_valid_queries}; they must agree"
            )

    def rank(self, k: int) -> float:
        """CMC at rank ``k`` (1-based, so ``rank(1)`` is R1)."""
        if not 1 <= k <= self.cmc.size:
            raise ValueError(f"k is {k}, but must be in [1, {self.cmc.size}] (the max_rank evaluated)")
        return float(self.cmc[k - 1])


def _validate_labels(name: str, labels: Any, expected: int, axis_name: str, dist_shape: tuple) -> np.ndarray:
    array = as_numpy(labels, name=name)
    if array.ndim != 1:
        raise ValueError(f"{name} has shape {array.shape}, but must be 1-D")
    if array.shape[0] != expected:
        raise ValueError(
            f"{name} has shape {array.shape}, but distmat has shape {dist_shape}; {name} must have one entry "
            f"per {axis_name} (length {expected})"
        )
    return array


def _validate_inputs(
    distmat: Any, q_pids: Any, g_pids: Any, q_camids: Any, g_camids: Any, max_rank: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if isinstance(max_rank, bool) or not isinstance(max_rank, (int, np.integer)) or max_rank < 1:
        raise ValueError(f"max_rank is {max_rank!r}, but must be an integer >= 1")
    dist = as_real_matrix(distmat, name="distmat", axes="num_query x num_gallery")
    shape = dist.shape
    q_p = _validate_labels("q_pids", q_pids, shape[0], "query (row)", shape)
    g_p = _validate_labels("g_pids", g_pids, shape[1], "gallery item (column)", shape)
    q_c = _validate_labels("q_camids", q_camids, shape[0], "query (row)", shape)
    g_c = _validate_labels("g_camids", g_camids, shape[1], "gallery item (column)", shape)
    return dist, q_p, g_p, q_c, g_c


def _shared_codes(name_q: str, q: np.ndarray, name_g: str, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map query and gallery labels to integer codes from one shared table (equal label, equal code).

    Labels may be ints or strings; integer codes make the later grouping and comparisons cheap and uniform.
    Mixing text and numbers is refused because numpy would silently compare ``1`` and ``"1"`` as equal.
    """
    q_text, g_text = q.dtype.kind in "US", g.dtype.kind in "US"
    if q_text != g_text:
        raise ValueError(
            f"{name_q} has dtype {q.dtype} and {name_g} {g.dtype}, but both must be text or both numbers"
        )
    _, codes = np.unique(np.concatenate([q, g]), return_inverse=True)
    codes = codes.ravel()
    return codes[: q.size], codes[q.size :]


@dataclass(frozen=True)
class _IdentityIndex:
    """Gallery items grouped by identity code, to list the same-identity pairs of any query in O(pairs).

    The direct way, ``q_pids[:, None] == g_pids[None, :]`` followed by ``np.nonzero``, touches every
    query-gallery pair and costs as much as the sort at AG-VPReID scale.
    """

    gallery_by_code: np.ndarray  # gallery indices ordered by identity code
    start: np.ndarray  # start[c]: where code c begins in gallery_by_code
    count: np.ndarray  # count[c]: gallery items with code c

    @classmethod
    def build(cls, g_codes: np.ndarray, num_codes: int) -> _IdentityIndex:
        count = np.bincount(g_codes, minlength=num_codes)
        return cls(np.argsort(g_codes, kind="stable"), np.cumsum(count) - count, count)

    def pairs(self, q_codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, gallery index) of every same-identity pair, grouped by row in increasing row order."""
        per_row = self.count[q_codes]
        rows = np.repeat(np.arange(q_codes.size), per_row)
        first = np.cumsum(per_row) - per_row
        offsets = np.arange(rows.size) - first[rows]
        return rows, self.gallery_by_code[self.start[q_codes][rows] + offsets]


def _lower_upper_bounds(sorted_flat: np.ndarray, row_starts: np.ndarray, values: np.ndarray, width: int):
    """Binary search of ``values[i]`` in the sorted row that starts at ``row_starts[i]`` of ``sorted_flat``.

    Returns ``(lower, upper)``: per item, the number of row entries ``< value`` and ``<= value``. numpy's
    ``searchsorted`` works on one 1-D array, so searching many rows at once is done by hand: every iteration
    halves all the intervals with one gather, about log2(width) iterations in total.
    """
    bounds = []
    for strict in (True, False):
        lo = np.zeros(values.shape[0], dtype=np.intp)
        hi = np.full(values.shape[0], width, dtype=np.intp)
        for _ in range(int(width).bit_length()):
            mid = (lo + hi) >> 1
            probe = sorted_flat[row_starts + np.minimum(mid, width - 1)]
            active = lo < hi
            go_right = (probe < values) if strict else (probe <= values)
            lo = np.where(active & go_right, mid + 1, lo)
            hi = np.where(active & ~go_right, mid, hi)
        bounds.append(lo)
    return bounds[0], bounds[1]


def _tie_offsets(
    dist_chunk: np.ndarray, rows: np.ndarray, cols: np.ndarray, values: np.ndarray
) -> np.ndarray:
    """Number of gallery items with the same distance and a lower index, for each (row, col) item.

    A stable sort places equal distances in gallery-index order, so this is what must be added to the count
    of strictly closer items. Exact ties are rare with real features, hence only the tied items come here;
    they are processed in blocks so that a degenerate matrix (all distances equal) cannot exhaust memory.
    """
    width = dist_chunk.shape[1]
    out = np.empty(rows.shape[0], dtype=np.intp)
    block = max(1, _TIE_BLOCK_ELEMENTS // max(width, 1))
    column_index = np.arange(width)
    for start in range(0, rows.shape[0], block):
        sl = slice(start, start + block)
        equal = dist_chunk[rows[sl]] == values[sl, None]
        equal &= column_index[None, :] < cols[sl, None]
        out[sl] = np.count_nonzero(equal, axis=1)
    return out


def _evaluate_chunk(
    dist_chunk: np.ndarray,
    q_pids: np.ndarray,
    q_camids: np.ndarray,
    identities: _IdentityIndex,
    g_camids: np.ndarray,
    max_rank: int,
) -> tuple[np.ndarray, np.ndarray]:
    """AP of every query of the chunk (NaN when skipped) and a histogram of first-true-match ranks.

    ``first_hist[r]`` counts the evaluated queries whose best true match sits at 0-based rank ``r`` after junk
    removal, for ``r < max_rank``; later first matches never enter the CMC and are not counted.
    """
    n_rows, width = dist_chunk.shape
    # Every (query, gallery) pair with the same identity: the true matches and the junk.
    rows, cols = identities.pairs(q_pids)
    ap = np.full(n_rows, np.nan)
    first_hist = np.zeros(max_rank, dtype=np.int64)
    if rows.size == 0:
        return ap, first_hist

    values = dist_chunk[rows, cols]
    sorted_flat = np.sort(dist_chunk, axis=1).ravel()
    row_starts = rows * width
    lower, upper = _lower_upper_bounds(sorted_flat, row_starts, values, width)
    position = lower
    tied = np.flatnonzero(upper - lower > 1)  # more than the item itself has this distance
    if tied.size:
        position[tied] += _tie_offsets(dist_chunk, rows[tied], cols[tied], values[tied])

    # Order the same-identity items by (query, position); they arrive grouped by query already.
    order = np.lexsort((position, rows))
    rows, position = rows[order], position[order]
    is_junk = (g_camids[cols[order]] == q_camids[rows]).astype(np.intp)
    is_good = 1 - is_junk

    # Running counts restart at every query: subtract the running total at the start of its group.
    group_start = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    group_len = np.diff(np.r_[group_start, rows.size])
    junk_before = np.cumsum(is_junk) - is_junk
    good_upto = np.cumsum(is_good)
    junk_before -= np.repeat(junk_before[group_start], group_len)
    good_upto -= np.repeat(good_upto[group_start] - is_good[group_start], group_len)

    good = is_good.astype(bool)
    good_rows = rows[good]
    if good_rows.size == 0:  # only junk shares the identities of these queries
        return ap, first_hist
    rank_after_junk = position[good] - junk_before[good]  # 0-based rank once the junk is gone
    precision = good_upto[good] / (rank_after_junk + 1.0)
    num_good = np.bincount(good_rows, minlength=n_rows)
    valid = num_good > 0
    ap_sum = np.bincount(good_rows, weights=precision, minlength=n_rows)
    ap[valid] = ap_sum[valid] / num_good[valid]

    # The first true match of a query is its first good item in (query, position) order.
    first = np.flatnonzero(np.r_[True, good_rows[1:] != good_rows[:-1]])
    first_rank = rank_after_junk[first]
    first_hist += np.bincount(first_rank[first_rank < max_rank], minlength=max_rank)
    return ap, first_hist


def cmc_map_detailed(
    distmat: Any,
    q_pids: Any,
    g_pids: Any,
    q_camids: Any,
    g_camids: Any,
    max_rank: int = 50,
) -> RankingResult:
    """CMC curve, mAP, the number of evaluated queries and per-query AP under the Market-1501 rules.

    Args:
        distmat: ``(num_query, num_gallery)`` finite distances, lower is more similar (numpy or torch).
        q_pids, g_pids: identity labels of the queries / gallery items (integers or strings, not a mix).
        q_camids, g_camids: camera ids of the queries / gallery items (integers or strings, not a mix).
        max_rank: length of the returned CMC curve, >= 1. If fewer gallery items than that remain after junk
            removal, the curve keeps its final value (1.0 for every evaluated query) up to ``max_rank``.

    Raises:
        ValueError: on malformed input, or when no query has a true match left after junk removal.
    """
    dist, q_p, g_p, q_c, g_c = _validate_inputs(distmat, q_pids, g_pids, q_camids, g_camids, max_rank)
    num_query, num_gallery = dist.shape
    q_p, g_p = _shared_codes("q_pids", q_p, "g_pids", g_p)
    q_c, g_c = _shared_codes("q_camids", q_c, "g_camids", g_c)
    identities = _IdentityIndex.build(g_p, int(max(q_p.max(initial=-1), g_p.max(initial=-1))) + 1)
    per_query_ap = np.full(num_query, np.nan)
    first_hist = np.zeros(max_rank, dtype=np.int64)
    step = max(1, _CHUNK_ELEMENTS // max(num_gallery, 1))
    if num_gallery > 0:
        for start in range(0, num_query, step):
            sl = slice(start, start + step)
            ap, hist = _evaluate_chunk(dist[sl], q_p[sl], q_c[sl], identities, g_c, max_rank)
            per_query_ap[sl] = ap
            first_hist += hist
    valid = ~np.isnan(per_query_ap)
    num_valid = int(np.count_nonzero(valid))
    if num_valid == 0:
        raise ValueError(
            f"none of the {num_query} queries has a true match in the gallery of {num_gallery} items once "
            "same-identity same-camera items are removed; check that query and gallery identities and camera "
            "ids refer to the same people"
        )
    cmc = np.cumsum(first_hist) / num_valid
    mean_ap = float(np.mean(per_query_ap[valid]))
    return RankingResult(cmc=cmc, mAP=mean_ap, num_valid_queries=num_valid, per_query_ap=per_query_ap)


def cmc_map(
    distmat: Any,
    q_pids: Any,
    g_pids: Any,
    q_camids: Any,
    g_camids: Any,
    max_rank: int = 50,
) -> tuple[np.ndarray, float]:
    """CMC curve (float64, length ``max_rank``) and mAP under the Market-1501 rules.

    A thin wrapper over :func:`cmc_map_detailed` with the classic two-value return; see it for the rules,
    arguments and errors.
    """
    result = cmc_map_detailed(distmat, q_pids, g_pids, q_camids, g_camids, max_rank)
    return result.cmc, result.mAP
