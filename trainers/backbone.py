"""Image encoders from open_clip's vision towers, built from a model-config name or a small custom config.

Weights never come from a download: a tower starts from random initialisation (tests, demos) or from a local
file loaded by the trainer. ``tiny-cpu`` is a few-layer, narrow ViT for CPU runs; it goes through exactly the
same open_clip code path as ``ViT-B-16``.
"""

from __future__ import annotations

import difflib
from typing import Any

import torch
from torch import nn

from trainers.openclip_compat import import_open_clip

#: Custom vision configs (open_clip ``CLIPVisionCfg`` fields) by name, next to open_clip's own model configs.
CUSTOM_VISION_CONFIGS: dict[str, dict[str, Any]] = {
    "tiny-cpu": {
        "layers": 2,
        "width": 64,
        "head_width": 32,
        "mlp_ratio": 2.0,
        "patch_size": 8,
        "embed_dim": 64,
    },
}


def available_backbones() -> list[str]:
    """Names accepted by :func:`build_vision_tower`: custom configs plus open_clip ViT/EVA configs."""
    open_clip = import_open_clip()
    return sorted(CUSTOM_VISION_CONFIGS) + [name for name in open_clip.list_models() if "ViT" in name]


def vision_config(name: str) -> tuple[int, dict[str, Any]]:
    """``(embed_dim, vision_cfg)`` of a backbone; an unknown name raises ``ValueError`` with a suggestion."""
    if name in CUSTOM_VISION_CONFIGS:
        config = dict(CUSTOM_VISION_CONFIGS[name])
        return int(config.pop("embed_dim")), config
    open_clip = import_open_clip()
    model_config = open_clip.get_model_config(name)
    if model_config is None or "vision_cfg" not in model_config:
        close = difflib.get_close_matches(name, available_backbones(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"backbone {name!r} is not a known open_clip vision config{hint}")
    return int(model_config["embed_dim"]), dict(model_config["vision_cfg"])


def build_vision_tower(name: str, *, image_size: tuple[int, int], seed: int | None = None) -> nn.Module:
    """A randomly initialised open_clip vision tower for (height, width) inputs; output = embed_dim."""
    open_clip = import_open_clip()
    from open_clip.model import CLIPVisionCfg, _build_vision_tower

    embed_dim, config = vision_config(name)
    config["image_size"] = tuple(image_size)
    if seed is not None:
        torch.manual_seed(seed)
    del open_clip  # imported for its side effect (the torchvision shim) before touching open_clip.model
    return _build_vision_tower(embed_dim, CLIPVisionCfg(**config))


class MeanFrameEncoder(nn.Module):
    """Video features = mean over frames of the per-frame image embedding. Input (B, T, 3, H, W)."""

    def __init__(self, tower: nn.Module) -> None:
        super().__init__()
        self.tower = tower

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        batch, frames = clips.shape[:2]
        features = self.tower(clips.flatten(0, 1))
        return features.view(batch, frames, -1).mean(dim=1)
