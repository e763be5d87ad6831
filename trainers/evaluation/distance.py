"""Query-gallery distances for the evaluation protocol.

The AG-VPReID protocol ranks the gallery by squared Euclidean distance between L2-normalised features, which
for unit vectors equals ``2 - 2 cos``. Computing it as one matrix product keeps it fast; doing so in float32
row chunks keeps the largest test case (4,416 gallery x 2,751 query x 2048-d) within a few hundred MB.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["DEFAULT_DISTANCE_CHUNK_SIZE", "as_numpy", "l2_normalize", "pairwise_distance"]

#: Query rows per matrix product. Large enough for BLAS to run at full speed, small enough that the float32
#: product block (chunk x gallery) stays around 20 MB at AG-VPReID scale.
DEFAULT_DISTANCE_CHUNK_SIZE = 1024


def as_numpy(array: Any, *, name: str) -> np.ndarray:
    """Return ``array`` as a numpy array, detaching and moving torch tensors to the CPU first.

    Evaluation runs on numpy, while the feature extractor hands back torch tensors (possibly on a GPU and with
    autograd history); accepting both keeps the callers free of conversion boiler-plate. Imported lazily so
    that numpy-only callers do not pay for importing torch.
    """
    if isinstance(array, np.ndarray):
        return array
    module = type(array).__module__
    if module.startswith("torch"):
        import torch

        if isinstance(array, torch.Tensor):
            tensor = array.detach().cpu()
            if tensor.dtype == torch.bfloat16:
                # numpy has no bfloat16; float32 holds every bfloat16 value exactly.
                tensor = tensor.float()
            return tensor.numpy()
    try:
        return np.asarray(array)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} could not be converted to a numpy array: {exc}") from exc


def as_real_matrix(value: Any, *, name: str, axes: str) -> np.ndarray:
    """Validate a 2-D, finite, real-valued matrix (``axes`` names its two axes in errors); integers become
    float64. Shared by the feature and the distance-matrix checks so both reject bad input alike."""
    array = as_numpy(value, name=name)
    if array.ndim != 2:
        raise ValueError(f"{name} has shape {array.shape}, but must be 2-D ({axes})")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{name} has dtype {array.dtype}, but must hold real numbers")
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    if not np.isfinite(array).all():
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise ValueError(f"{name} contains NaN or infinite values ({bad} of them), but must be finite")
    return array


def _float_features(features: Any, *, name: str) -> np.ndarray:
    """Validate a 2-D, finite, real-valued feature matrix and return it as a floating array."""
    array = as_real_matrix(features, name=name, axes="items x feature dimension")
    if array.shape[1] < 1:
        raise ValueError(f"{name} has feature dimension {array.shape[1]}, but must be >= 1")
    return array


def l2_normalize(features: Any) -> np.ndarray:
    """Scale every row (the last axis) of ``features`` to unit Euclidean length.

    Rows that are all zeros stay all zeros instead of turning into NaN, so a blank feature gives distance 2 to
    everything (cosine 0) rather than poisoning a whole ranking. Accepts numpy arrays and torch tensors;
    returns a new numpy array, float32 for float16/float32 input and float64 otherwise.
    """
    array = as_numpy(features, name="features")
    if array.ndim < 1:
        raise ValueError(f"features has shape {array.shape}, but must have at least one axis")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"features has dtype {array.dtype}, but must hold real numbers")
    dtype = np.float32 if array.dtype in (np.float16, np.float32) else np.float64
    array = array.astype(dtype, copy=False)
    norm = np.sqrt(np.einsum("...i,...i->...", array, array))[..., None]
    nonzero = norm > 0
    if not (np.isfinite(norm).all() and np.array_equal(nonzero, np.any(array != 0, axis=-1, keepdims=True))):
        # The sum of squares overflowed or underflowed (or the input is not finite): take the norm of the
        # row divided by its largest magnitude instead, which is slower but exact in range.
        if not np.isfinite(array).all():
            raise ValueError("features contains NaN or infinite values, but must be finite")
        scale = np.max(np.abs(array), axis=-1, keepdims=True)
        nonzero = scale > 0
        scaled = np.divide(array, scale, out=np.zeros_like(array), where=nonzero)
        norm = scale * np.sqrt(np.einsum("...i,...i->...", scaled, scaled))[..., None]
    return np.divide(array, norm, out=np.zeros_like(array), where=nonzero)


def pairwise_distance(
    query_features: Any,
    gallery_features: Any,
    *,
    chunk_size: int = DEFAULT_DISTANCE_CHUNK_SIZE,
) -> np.ndarray:
    """Squared Euclidean distance between L2-normalised query and gallery features (``2 - 2 cos``).

    Returns a float32 ``(num_query, num_gallery)`` array with values in ``[0, 4]``; lower means more similar.
    Rounding can make ``2 - 2 cos`` of near-identical vectors slightly negative, so values are clipped at 0
    (a negative "distance" would otherwise rank above an exact duplicate). The result does not depend on
    ``chunk_size``, which only bounds the memory of each matrix product.

    Args:
        query_features: ``(num_query, dim)`` numpy array or torch tensor.
        gallery_features: ``(num_gallery, dim)`` numpy array or torch tensor.
        chunk_size: query rows per matrix product, >= 1.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size is {chunk_size!r}, but must be an integer >= 1")
    query = _float_features(query_features, name="query_features")
    gallery = _float_features(gallery_features, name="gallery_features")
    if query.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"query_features has feature dimension {query.shape[1]} and gallery_features "
            f"{gallery.shape[1]}, but they must be equal"
        )
    query = l2_normalize(query.astype(np.float32, copy=False))
    # A transposed view, not a copy: BLAS reads it as a transposed operand at no cost.
    gallery_t = l2_normalize(gallery.astype(np.float32, copy=False)).T
    out = np.empty((query.shape[0], gallery_t.shape[1]), dtype=np.float32)
    for start in range(0, query.shape[0], chunk_size):
        block = out[start : start + chunk_size]
        np.matmul(query[start : start + chunk_size], gallery_t, out=block)
        # In place: block = max(2 - 2 * cos, 0), without a second full-size temporary.
        block *= -2.0
        block += 2.0
        np.maximum(block, 0.0, out=block)
    return out
