"""Image encoder: an open_clip vision tower that returns every token, with side information on the CLS token.

- Built from an open_clip model-config name (``ViT-B-16``, ...) or a custom config (``tiny-cpu``), always
  through open_clip's own ``VisionTransformer``, so the CPU preset runs the same code as ViT-B/16.
- Any input size and patch stride: the positional embedding is resized (bilinear or bicubic, CLS position
  kept) when pre-trained weights for another grid are loaded, and the conv stride is set for overlapping
  patches.
- Weights come from a local file only - the OpenAI TorchScript ``ViT-B-16.pt`` or an open_clip checkpoint -
  never from a download. Without a file the tower starts from its (seeded) random initialisation.

open_clip towers built on timm trunks (the EVA configs) expose a different module layout; they are rejected
with a clear error rather than half-supported.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainers.errors import AgvpError
from trainers.openclip_compat import import_open_clip

#: Custom vision configs (open_clip ``CLIPVisionCfg`` fields + embed_dim), next to open_clip's model configs.
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


class WeightsError(AgvpError):
    """A weights file is missing, unreadable, or does not fit the backbone."""


def available_backbones() -> list[str]:
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
    vision = dict(model_config["vision_cfg"])
    if vision.get("timm_model_name"):
        raise ValueError(
            f"backbone {name!r} uses a timm trunk ({vision['timm_model_name']}), which is not supported"
        )
    return int(model_config["embed_dim"]), vision


def grid_size(image_size: tuple[int, int], patch: int, stride: int) -> tuple[int, int]:
    """Patch grid for (height, width) with square patches of ``patch`` px every ``stride`` px."""
    return ((image_size[0] - patch) // stride + 1, (image_size[1] - patch) // stride + 1)


def resize_positional_embedding(embedding: torch.Tensor, grid: tuple[int, int], mode: str) -> torch.Tensor:
    """Resize a (1 + h*w, D) CLIP positional embedding to ``grid``; the CLS position is kept as is.

    The source grid must be square (pre-trained CLIP towers are) unless it already matches ``grid``.
    """
    cls_position, patches = embedding[:1], embedding[1:]
    if patches.shape[0] == grid[0] * grid[1]:
        return embedding
    side = math.isqrt(patches.shape[0])
    if side * side != patches.shape[0]:
        raise ValueError(f"cannot resize a non-square positional grid of {patches.shape[0]} positions")
    width = patches.shape[1]
    image = patches.reshape(1, side, side, width).permute(0, 3, 1, 2).float()
    resized = F.interpolate(image, size=grid, mode=mode, align_corners=False)
    patches = resized.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], width).to(embedding.dtype)
    return torch.cat([cls_position, patches])


def _visual_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The vision-tower weights of an OpenAI TorchScript file or an open_clip checkpoint, keys unprefixed."""
    if not path.is_file():
        raise WeightsError(f"{path}: weights file does not exist")
    try:
        with warnings.catch_warnings():
            # OpenAI ships ViT-B-16.pt as TorchScript; torch deprecates the format but still reads it.
            warnings.simplefilter("ignore", DeprecationWarning)
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
    except (RuntimeError, ValueError):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # any unpickling failure means "not a checkpoint"
            raise WeightsError(
                f"{path}: not a TorchScript or torch checkpoint ({type(error).__name__})"
            ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: checkpoint holds no state dict")
    visual = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.startswith("visual."):
            visual[key.removeprefix("visual.")] = value
    if not visual:
        raise WeightsError(f"{path}: no 'visual.*' weights found (is this a CLIP checkpoint?)")
    return visual


def file_digest(path: Path) -> str:
    """sha256 of a file's content (weights identify CLIP-memory caches)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


class TokenEncoder(nn.Module):
    """Frames (N, 3, H, W) -> all tokens after ``ln_post`` (N, 1 + grid, width); ``project`` maps tokens
    to the joint embedding (``embed_dim``). ``side`` (N, width) is added to the CLS token first."""

    def __init__(
        self,
        name: str,
        *,
        image_size: tuple[int, int],
        stride: int | None = None,
        pos_interpolation: str = "bilinear",
        quick_gelu: bool = True,
        weights: Path | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        import_open_clip()
        from open_clip.model import CLIPVisionCfg, _build_vision_tower

        embed_dim, config = vision_config(name)
        patch = int(config["patch_size"])
        stride = stride or patch
        if stride > patch:
            raise ValueError(f"stride is {stride}, but must be <= the patch size {patch}")
        if min(image_size) < patch:
            raise ValueError(f"image size {image_size} is smaller than the patch size {patch}")
        config["image_size"] = tuple(image_size)
        if seed is not None:
            torch.manual_seed(seed)
        # OpenAI's CLIP towers were trained with QuickGELU; open_clip builds plain GELU unless asked, which
        # would compute a different function in every block once OpenAI weights are loaded.
        tower = _build_vision_tower(embed_dim, CLIPVisionCfg(**config), quick_gelu=quick_gelu)
        self.grid = grid_size(image_size, patch, stride)
        tower.conv1.stride = (stride, stride)
        tower.positional_embedding = nn.Parameter(
            resize_positional_embedding(tower.positional_embedding.data, self.grid, pos_interpolation)
            if stride == patch
            else torch.randn(self.grid[0] * self.grid[1] + 1, tower.class_embedding.shape[0]) * 0.02
        )
        self.tower = tower
        self.width = int(tower.class_embedding.shape[0])
        self.embed_dim = embed_dim
        self.pos_interpolation = pos_interpolation
        if weights is not None:
            self.load_weights(weights)

    def load_weights(self, path: Path) -> None:
        state = _visual_state_dict(path)
        if "positional_embedding" in state:
            state["positional_embedding"] = resize_positional_embedding(
                state["positional_embedding"], self.grid, self.pos_interpolation
            )
        own = self.tower.state_dict()
        mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
        missing = [k for k in own if k not in state]
        if mismatched or missing:
            detail = (mismatched or missing)[:3]
            raise WeightsError(f"{path}: weights do not fit this backbone (e.g. {', '.join(detail)})")
        self.tower.load_state_dict({k: v for k, v in state.items() if k in own})

    def forward(self, frames: torch.Tensor, side: torch.Tensor | None = None) -> torch.Tensor:
        tower = self.tower
        x = tower.conv1(frames).flatten(2).transpose(1, 2)  # (N, grid, width)
        cls = tower.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + tower.positional_embedding.to(x.dtype)
        if side is not None:
            x = torch.cat([x[:, :1] + side.unsqueeze(1).to(x.dtype), x[:, 1:]], dim=1)
        x = tower.ln_pre(tower.patch_dropout(x))
        x = tower.transformer(x)
        return tower.ln_post(x)

    def project(self, tokens: torch.Tensor) -> torch.Tensor:
        """CLIP's own projection to the joint embedding, on tokens of any leading shape (..., width)."""
        proj = self.tower.proj
        return tokens if proj is None else tokens @ proj
