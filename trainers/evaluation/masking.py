"""Soft-biometric masking: push apart query-gallery pairs whose annotated attributes disagree.

X-TFCLIP, the AG-VPReID 2025 winner, adds a penalty to the distance when a query and a gallery tracklet both
have a known value of, e.g., gender and the values differ: such a pair is unlikely to be the same person,
whatever the appearance features say. Its public code uses +100 (a hard filter that sends the pair to the end
of the ranking); the challenge report describes 0.2 / 0.1 (a soft nudge). Both are just values of
``penalties`` here.

The table of "unknown" codes belongs to the data layer (``trainers.data.attributes.UNKNOWN_CODE``); it is a
parameter so that this module does not depend on the data layer. In the AG-VPReID attribute files the last
code of every attribute means unknown, and the real files contain out-of-range codes too: any code ``< 0`` or
``>= unknown`` counts as unknown, and unknown never triggers a penalty.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from trainers.evaluation.distance import as_numpy

__all__ = ["DEFAULT_MASK_ATTRIBUTES", "apply_attribute_penalty", "known_code_mask"]

#: The attributes X-TFCLIP masks on: stable over a tracklet and visible from the air and the ground.
DEFAULT_MASK_ATTRIBUTES: tuple[str, ...] = ("gender", "age", "ethnicity", "body_volume")


def known_code_mask(codes: np.ndarray, unknown_code: int) -> np.ndarray:
    """True where a code is a real annotation: ``0 <= code < unknown_code``.

    Everything else (the unknown code itself, larger out-of-table codes, negatives) is treated as unknown.
    """
    return (codes >= 0) & (codes < unknown_code)


def _attribute_codes(attributes: Mapping[str, Any], attribute: str, side: str, expected: int) -> np.ndarray:
    if attribute not in attributes:
        raise ValueError(
            f"attribute {attribute!r} has a penalty but is missing from {side}_attributes "
            f"(which has {sorted(attributes)})"
        )
    codes = as_numpy(attributes[attribute], name=f"{side}_attributes[{attribute!r}]")
    if codes.ndim != 1 or codes.shape[0] != expected:
        axis = "rows (queries)" if side == "query" else "columns (gallery items)"
        raise ValueError(
            f"{side}_attributes[{attribute!r}] has shape {codes.shape}, but must be 1-D with one code per "
            f"distmat {axis}, i.e. length {expected}"
        )
    if not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(
            f"{side}_attributes[{attribute!r}] has dtype {codes.dtype}, but must hold integer attribute codes"
        )
    return codes


def apply_attribute_penalty(
    distmat: Any,
    query_attributes: Mapping[str, Any],
    gallery_attributes: Mapping[str, Any],
    *,
    penalties: Mapping[str, float],
    unknown_codes: Mapping[str, int],
) -> np.ndarray:
    """Return a copy of ``distmat`` with ``penalties[attr]`` added where the codes of ``attr`` disagree.

    For each attribute in ``penalties``, a query-gallery pair is penalised when both codes are known (see
    :func:`known_code_mask`) and different; penalties of several attributes add up. ``distmat`` itself is
    never modified, so the unmasked distances stay available for comparison.

    Args:
        distmat: ``(num_query, num_gallery)`` distances (numpy or torch).
        query_attributes: attribute name -> integer code array with one code per query.
        gallery_attributes: attribute name -> integer code array with one code per gallery item.
        penalties: attribute name -> penalty added to the distance, finite and >= 0.
        unknown_codes: attribute name -> the code that means "unknown" for that attribute.

    Returns:
        A new array with the dtype of ``distmat`` (float64 for integer input).
    """
    dist = as_numpy(distmat, name="distmat")
    if dist.ndim != 2:
        raise ValueError(f"distmat has shape {dist.shape}, but must be 2-D (num_query x num_gallery)")
    if not (np.issubdtype(dist.dtype, np.floating) or np.issubdtype(dist.dtype, np.integer)):
        raise ValueError(f"distmat has dtype {dist.dtype}, but must hold real numbers")
    out_dtype = dist.dtype if np.issubdtype(dist.dtype, np.floating) else np.dtype(np.float64)
    # Validate every attribute before touching anything, so a bad entry cannot leave half a result.
    planned: list[tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    for attribute, penalty in penalties.items():
        value = float(penalty)
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"penalties[{attribute!r}] is {penalty!r}, but must be finite and >= 0")
        if attribute not in unknown_codes:
            raise ValueError(
                f"attribute {attribute!r} has a penalty but no entry in unknown_codes (which has "
                f"{sorted(unknown_codes)})"
            )
        unknown = int(unknown_codes[attribute])
        if unknown < 1:
            raise ValueError(
                f"unknown_codes[{attribute!r}] is {unknown}, but must be >= 1 (known codes are 0..unknown-1)"
            )
        q_codes = _attribute_codes(query_attributes, attribute, "query", dist.shape[0])
        g_codes = _attribute_codes(gallery_attributes, attribute, "gallery", dist.shape[1])
        if value > 0:
            q_known = known_code_mask(q_codes, unknown)
            g_known = known_code_mask(g_codes, unknown)
            planned.append((value, q_codes, g_codes, q_known, g_known))
    out = np.array(dist, dtype=out_dtype, copy=True)
    for value, q_codes, g_codes, q_known, g_known in planned:
        differ = q_codes[:, None] != g_codes[None, :]
        differ &= q_known[:, None]
        differ &= g_known[None, :]
        np.add(out, out_dtype.type(value), out=out, where=differ)
    return out
