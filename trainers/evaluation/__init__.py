"""The AG-VPReID evaluation protocol: distances, CMC/mAP, re-ranking, soft-biometric masking, flip TTA and
the challenge submission file (REFERENCE_REID.md, section 2).

Everything here works on numpy arrays (torch tensors are accepted and converted), so the protocol can be
tested and benchmarked without a model.
"""

from trainers.evaluation.distance import l2_normalize, pairwise_distance
from trainers.evaluation.masking import DEFAULT_MASK_ATTRIBUTES, apply_attribute_penalty, known_code_mask
from trainers.evaluation.metrics import RankingResult, cmc_map, cmc_map_detailed
from trainers.evaluation.rerank import k_reciprocal_rerank, k_reciprocal_rerank_distances
from trainers.evaluation.submission import SUBMISSION_HEADER, SubmissionCase, rank_gallery, write_submission
from trainers.evaluation.tta import extract_with_flip, flip_average

__all__ = [
    "DEFAULT_MASK_ATTRIBUTES",
    "SUBMISSION_HEADER",
    "RankingResult",
    "SubmissionCase",
    "apply_attribute_penalty",
    "cmc_map",
    "cmc_map_detailed",
    "extract_with_flip",
    "flip_average",
    "k_reciprocal_rerank",
    "k_reciprocal_rerank_distances",
    "known_code_mask",
    "l2_normalize",
    "pairwise_distance",
    "rank_gallery",
    "write_submission",
]
