"""The AG-VPReID evaluation report: per case (A2G, G2A), overall (mean of the cases) and per altitude.

This module ties the numeric pieces (distances, re-ranking, masking, CMC/mAP) to tracklets of a
:class:`~trainers.data.index.DatasetIndex`. Identities used for matching are ``Tracklet.true_pid``: on the
public release (masked test ids) they are unknown, so test metrics are ``None`` and only a submission file can
be written; on the validation split (carved from train) and on releases with true ids, metrics are computed.

Per altitude: the aerial side of a case is restricted to tracklets at that altitude - the queries for A2G, the
gallery for G2A (whose queries are ground tracklets). Ground tracklets and the other side stay untouched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from trainers.data.attributes import UNKNOWN_CODE
from trainers.data.index import DatasetIndex, Tracklet
from trainers.data.split import RetrievalView
from trainers.evaluation.distance import pairwise_distance
from trainers.evaluation.masking import apply_attribute_penalty
from trainers.evaluation.metrics import RankingResult, cmc_map_detailed
from trainers.evaluation.rerank import k_reciprocal_rerank, validate_rerank_parameters

ALTITUDES_M = (80, 120)


@dataclass(frozen=True)
class ProtocolOptions:
    """How distances are post-processed before ranking."""

    rerank: bool = False
    k1: int = 20
    k2: int = 6
    lambda_value: float = 0.3
    #: attribute -> distance penalty when query and gallery codes are both known and differ (empty: off).
    mask_penalties: Mapping[str, float] = field(default_factory=dict)
    max_rank: int = 50

    def __post_init__(self) -> None:
        # Checked before any feature is extracted, so a typo fails in seconds rather than after the work.
        validate_rerank_parameters(self.k1, self.k2, self.lambda_value)
        if self.max_rank < 1:
            raise ValueError(f"max_rank is {self.max_rank}, but must be >= 1")
        for attribute, penalty in self.mask_penalties.items():
            if attribute not in UNKNOWN_CODE:
                raise ValueError(f"mask attribute {attribute!r} is not one of {', '.join(UNKNOWN_CODE)}")
            if penalty < 0:
                raise ValueError(f"mask penalty for {attribute} is {penalty}, but must be >= 0")


@dataclass(frozen=True)
class CaseMetrics:
    """Rank-k accuracies and mAP as fractions in [0, 1]."""

    r1: float
    r5: float
    r10: float
    mAP: float
    queries: int
    valid_queries: int

    @classmethod
    def from_ranking(cls, result: RankingResult, queries: int) -> CaseMetrics:
        cmc = result.cmc
        return cls(
            r1=float(cmc[0]),
            r5=float(cmc[min(4, len(cmc) - 1)]),
            r10=float(cmc[min(9, len(cmc) - 1)]),
            mAP=float(result.mAP),
            queries=queries,
            valid_queries=result.num_valid_queries,
        )


@dataclass
class CaseReport:
    name: str
    queries: int
    gallery: int
    metrics: CaseMetrics | None
    per_altitude: dict[str, CaseMetrics | None]


@dataclass
class EvaluationReport:
    cases: dict[str, CaseReport]

    @property
    def overall(self) -> dict[str, float] | None:
        """Mean of each metric over the cases (the challenge's "overall"); None if any case is unscored."""
        scored = [case.metrics for case in self.cases.values()]
        if not scored or any(m is None for m in scored):
            return None
        return {
            key: float(np.mean([getattr(m, key) for m in scored if m is not None]))
            for key in ("r1", "r5", "r10", "mAP")
        }

    def to_dict(self) -> dict[str, Any]:
        return {"cases": {name: asdict(case) for name, case in self.cases.items()}, "overall": self.overall}


def attribute_arrays(index: DatasetIndex, tracklets: Sequence[Tracklet]) -> dict[str, np.ndarray]:
    """Attribute codes of each tracklet's folder id in its split's attribute file (unknown if absent)."""
    rows = [
        index.attributes[t.split].get(t.pid) if t.split in index.attributes else UNKNOWN_CODE
        for t in tracklets
    ]
    return {name: np.asarray([row[name] for row in rows], dtype=np.int64) for name in UNKNOWN_CODE}


def case_distances(
    query_features: np.ndarray,
    gallery_features: np.ndarray,
    options: ProtocolOptions,
    *,
    query_attributes: Mapping[str, np.ndarray] | None = None,
    gallery_attributes: Mapping[str, np.ndarray] | None = None,
) -> np.ndarray:
    """Query x gallery distances: plain or k-reciprocal re-ranked, then soft-biometric penalties."""
    if options.rerank:
        distmat = k_reciprocal_rerank(
            query_features, gallery_features, k1=options.k1, k2=options.k2, lambda_value=options.lambda_value
        )
    else:
        distmat = pairwise_distance(query_features, gallery_features)
    if options.mask_penalties:
        if query_attributes is None or gallery_attributes is None:
            raise ValueError("attribute masking needs query and gallery attributes")
        distmat = apply_attribute_penalty(
            distmat,
            query_attributes,
            gallery_attributes,
            penalties=options.mask_penalties,
            unknown_codes=UNKNOWN_CODE,
        )
    return distmat


def _score(
    distmat: np.ndarray, query: Sequence[Tracklet], gallery: Sequence[Tracklet], max_rank: int
) -> CaseMetrics | None:
    """CMC/mAP when identities are known and some query has a valid (non-junk) match; otherwise None."""
    if not query or not gallery or any(t.true_pid is None for t in (*query, *gallery)):
        return None
    q_pids = np.asarray([t.true_pid for t in query])
    g_pids = np.asarray([t.true_pid for t in gallery])
    q_cams = np.asarray([t.camera for t in query])
    g_cams = np.asarray([t.camera for t in gallery])
    valid_match = (q_pids[:, None] == g_pids[None, :]) & (q_cams[:, None] != g_cams[None, :])
    if not valid_match.any():
        return None
    result = cmc_map_detailed(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=max_rank)
    return CaseMetrics.from_ranking(result, queries=len(query))


def score_case(view: RetrievalView, distmat: np.ndarray, *, max_rank: int = 50) -> CaseReport:
    """Metrics of one case, overall and per altitude of its aerial side."""
    per_altitude: dict[str, CaseMetrics | None] = {}
    aerial_is_query = bool(view.query) and all(t.is_aerial for t in view.query)
    for altitude in ALTITUDES_M:
        if aerial_is_query:
            rows = np.asarray(
                [i for i, t in enumerate(view.query) if t.altitude_m == altitude], dtype=np.int64
            )
            sub = distmat[rows]
            per_altitude[f"{altitude}m"] = _score(sub, [view.query[i] for i in rows], view.gallery, max_rank)
        else:
            cols = np.asarray(
                [i for i, t in enumerate(view.gallery) if t.altitude_m == altitude], dtype=np.int64
            )
            sub = distmat[:, cols]
            per_altitude[f"{altitude}m"] = _score(sub, view.query, [view.gallery[i] for i in cols], max_rank)
    return CaseReport(
        name=view.name,
        queries=len(view.query),
        gallery=len(view.gallery),
        metrics=_score(distmat, view.query, view.gallery, max_rank),
        per_altitude=per_altitude,
    )


def evaluate_views(
    index: DatasetIndex,
    views: Mapping[str, RetrievalView],
    features: Mapping[str, np.ndarray],
    options: ProtocolOptions | None = None,
) -> tuple[EvaluationReport, dict[str, np.ndarray]]:
    """Score every view. ``features`` maps ``Tracklet.key`` to a feature vector. Returns the report and the
    distance matrix of each case (for the submission file)."""
    options = options or ProtocolOptions()
    cases: dict[str, CaseReport] = {}
    distances: dict[str, np.ndarray] = {}
    for name, view in views.items():
        query = np.stack([features[t.key] for t in view.query])
        gallery = np.stack([features[t.key] for t in view.gallery])
        distmat = case_distances(
            query,
            gallery,
            options,
            query_attributes=attribute_arrays(index, view.query) if options.mask_penalties else None,
            gallery_attributes=attribute_arrays(index, view.gallery) if options.mask_penalties else None,
        )
        distances[name] = distmat
        cases[name] = score_case(view, distmat, max_rank=options.max_rank)
    return EvaluationReport(cases=cases), distances
