"""Flip test-time augmentation: average the features of a tracklet and of its horizontal mirror image.

A person seen in a mirror is still the same person, but the network's features are not exactly
mirror-invariant; averaging both views cancels part of that asymmetry and is a cheap, well-established gain at
test time (X-TFCLIP uses it). The average is taken before L2 normalisation, which the distance applies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch

__all__ = ["extract_with_flip", "flip_average"]

FeaturesT = TypeVar("FeaturesT", np.ndarray, torch.Tensor)


def flip_average(features: FeaturesT, flipped_features: FeaturesT) -> FeaturesT:
    """Element-wise mean of the features of the original and the flipped inputs.

    Both arguments must be of the same kind (numpy arrays or torch tensors) and shape; the result is of that
    kind too (floating point; a torch result stays on the inputs' device and keeps their dtype).
    """
    if isinstance(features, torch.Tensor) and isinstance(flipped_features, torch.Tensor):
        if features.shape != flipped_features.shape:
            raise ValueError(
                f"features has shape {tuple(features.shape)} and flipped_features "
                f"{tuple(flipped_features.shape)}, but they must be equal"
            )
        if not (features.is_floating_point() and flipped_features.is_floating_point()):
            features, flipped_features = features.float(), flipped_features.float()
        return (features + flipped_features) / 2
    if isinstance(features, np.ndarray) and isinstance(flipped_features, np.ndarray):
        if features.shape != flipped_features.shape:
            raise ValueError(
                f"features has shape {features.shape} and flipped_features {flipped_features.shape}, "
                "but they must be equal"
            )
        return (features + flipped_features) / 2
    raise TypeError(
        f"features is a {type(features).__name__} and flipped_features a {type(flipped_features).__name__}, "
        "but both must be numpy arrays or both torch tensors"
    )


def extract_with_flip(extract: Callable[[torch.Tensor], torch.Tensor], clips: torch.Tensor) -> torch.Tensor:
    """Features of ``clips`` averaged with those of ``clips`` mirrored along the width (last) axis.

    ``clips`` is any tensor whose last axis is the image width, typically ``(batch, frames, 3, H, W)``.
    ``extract`` is called twice (original, then mirrored); gradient mode is left to the caller, who usually
    runs this under ``torch.inference_mode()``.
    """
    if not isinstance(clips, torch.Tensor):
        raise TypeError(f"clips is a {type(clips).__name__}, but must be a torch.Tensor")
    if clips.ndim < 3:
        raise ValueError(f"clips has shape {tuple(clips.shape)}, but must have at least 3 axes (..., H, W)")
    features = extract(clips)
    flipped = extract(clips.flip(-1))
    return flip_average(features, flipped)
