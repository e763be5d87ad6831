"""The AG-VPReID evaluation protocol: distances, CMC/mAP, re-ranking, soft-biometric masking, flip TTA and
the challenge submission file (REFERENCE_REID.md, section 2).

Everything here works on numpy arrays (torch tensors are accepted and converted), so the protocol can be
tested and benchmarked without a model. Names resolve lazily: only ``tta`` and ``extract`` need torch.
"""

from __future__ import annotations

from trainers._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "l2_normalize": "distance",
    "pairwise_distance": "distance",
    "DEFAULT_MASK_ATTRIBUTES": "masking",
    "apply_attribute_penalty": "masking",
    "known_code_mask": "masking",
    "RankingResult": "metrics",
    "cmc_map": "metrics",
    "cmc_map_detailed": "metrics",
    "k_reciprocal_rerank": "rerank",
    "k_reciprocal_rerank_distances": "rerank",
    "validate_rerank_parameters": "rerank",
    "SUBMISSION_HEADER": "submission",
    "SubmissionCase": "submission",
    "rank_gallery": "submission",
    "write_submission": "submission",
    "extract_with_flip": "tta",
    "flip_average": "tta",
    "extract_features": "extract",
    "ProtocolOptions": "protocol",
    "evaluate_views": "protocol",
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
