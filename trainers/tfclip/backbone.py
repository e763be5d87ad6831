"""Image encoder: an open_clip vision tower that returns every token, with side information on the CLS token.

Two kinds of tower behind one interface (:class:`TokenEncoder`), chosen by the backbone's config:

- open_clip's own ``VisionTransformer`` (``ViT-B-16``, ..., the custom ``tiny-cpu``), and
- open_clip's ``TimmModel`` around a timm EVA trunk (``EVA02-L-14``, ..., the custom ``tiny-eva-cpu``, a
  2-block EVA02 registered in timm by :mod:`trainers.tfclip.timm_trunks`), so CPU tests run the same code
  as EVA-CLIP-L/14.

Either way the encoder gives the token map after the tower's final norm with the CLS token at index 0, adds
the side information (camera / frame embedding) to the CLS token right after the positional embedding, and
``project`` is the tower's own projection to the joint embedding (the ViT's ``proj``; the EVA trunk's
``head`` Linear, which open_clip uses as the projection when ``timm_proj`` is null).

- Any input size: the absolute positional embedding is resized (bilinear or bicubic, CLS position kept) when
  weights for another grid are loaded; an EVA trunk also rebuilds its rotary embedding (RoPE) for the target
  grid, with timm's rule of rescaling positions per axis to the reference (pre-training) grid - the same
  stretch as the absolute-embedding resize. A side that the patch does not divide keeps ``grid_size``'s
  rule, as the ViT does: the last ``size % patch`` pixel rows / columns are not seen (256 x 128 with patch 14
  is an 18 x 9 grid).
- Patch stride < patch size (overlapping patches) for the ViT only; an EVA trunk refuses it (its patch
  embedding and RoPE grid are tied to non-overlapping patches).
- ``quick_gelu`` switches the ViT's activation (OpenAI CLIP was trained with QuickGELU); timm trunks keep
  their own (SwiGLU / GELU) whatever it says, as open_clip does, so for EVA it only concerns TMD and SSP.
- Weights come from a local file only - the OpenAI TorchScript ``ViT-B-16.pt`` or an open_clip checkpoint
  (``visual.*`` keys; ``visual.trunk.*`` for EVA) - never from a download. Without a file the tower starts
  from its (seeded) random initialisation.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import math
import warnings
import zipfile
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
    # EVA02's recipe at 2 blocks x 64 wide, patch 8, 64 x 64 native input; embed_dim != width so the
    # projection is a real map. Built like EVA02-L-14: TimmModel, token pooling, the trunk head as projection.
    "tiny-eva-cpu": {
        "image_size": 64,
        "timm_model_name": "agvp_eva02_tiny_cpu",
        "timm_model_pretrained": False,
        "timm_pool": "token",
        "timm_proj": None,
        "embed_dim": 32,
    },
}


class WeightsError(AgvpError):
    """A weights file is missing, unreadable, or does not fit the backbone."""


@functools.cache
def _eva_trunk_names() -> frozenset[str]:
    """timm model names whose class is timm's ``Eva`` (timm's own and :mod:`timm_trunks`' tiny ones)."""
    import_open_clip()
    import timm

    import trainers.tfclip.timm_trunks  # noqa: F401  (registers the tiny trunks in timm)

    return frozenset(timm.list_models(module="eva")) | frozenset(timm.list_models(module="timm_trunks"))


def _is_supported_timm(vision: dict[str, Any]) -> bool:
    return vision.get("timm_model_name") in _eva_trunk_names() and vision.get("timm_pool") == "token"


def available_backbones() -> list[str]:
    """Custom configs, open_clip's ViT configs and its EVA configs (timm Eva trunks with token pooling)."""
    open_clip = import_open_clip()
    names = []
    for name in open_clip.list_models():
        vision = (open_clip.get_model_config(name) or {}).get("vision_cfg") or {}
        if (vision.get("timm_model_name") and _is_supported_timm(vision)) or (
            not vision.get("timm_model_name") and "ViT" in name
        ):
            names.append(name)
    return sorted(CUSTOM_VISION_CONFIGS) + names


def vision_config(name: str) -> tuple[int, dict[str, Any]]:
    """``(embed_dim, vision_cfg)`` of a backbone; an unknown name raises ``ValueError`` with a suggestion."""
    if name in CUSTOM_VISION_CONFIGS:
        vision = dict(CUSTOM_VISION_CONFIGS[name])
        embed_dim = int(vision.pop("embed_dim"))
    else:
        open_clip = import_open_clip()
        model_config = open_clip.get_model_config(name)
        if model_config is None or "vision_cfg" not in model_config:
            close = difflib.get_close_matches(name, available_backbones(), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"backbone {name!r} is not a known open_clip vision config{hint}")
        vision, embed_dim = dict(model_config["vision_cfg"]), int(model_config["embed_dim"])
    if vision.get("timm_model_name") and not _is_supported_timm(vision):
        raise ValueError(
            f"backbone {name!r} uses the timm trunk {vision['timm_model_name']} with "
            f"{vision.get('timm_pool')!r} pooling; of timm trunks only EVA ones with 'token' pooling are "
            "supported (e.g. EVA02-L-14)"
        )
    return embed_dim, vision


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
            # Memory-mapped (zip format; a legacy file is read whole): the trials of a node share the
            # file's page cache instead of each holding a copy of the state dict.
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
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


def _add_to_cls(tokens: torch.Tensor, side: torch.Tensor | None) -> torch.Tensor:
    """``side`` (N, width) added to the CLS token (index 0) of ``tokens`` (N, L, width)."""
    if side is None:
        return tokens
    return torch.cat([tokens[:, :1] + side.unsqueeze(1).to(tokens.dtype), tokens[:, 1:]], dim=1)


def _check_size(image_size: tuple[int, int], patch: int, stride: int) -> None:
    if stride > patch:
        raise ValueError(f"stride is {stride}, but must be <= the patch size {patch}")
    if min(image_size) < patch:
        raise ValueError(f"image size {image_size} is smaller than the patch size {patch}")


class _OpenClipViT:
    """open_clip's ``VisionTransformer``: conv1, class_embedding, positional_embedding, ln_pre, transformer,
    ln_post, proj. Stateless: every method takes the tower."""

    @staticmethod
    def build(
        name: str,
        embed_dim: int,
        config: dict[str, Any],
        *,
        image_size: tuple[int, int],
        stride: int | None,
        pos_interpolation: str,
        quick_gelu: bool,
    ) -> tuple[nn.Module, tuple[int, int]]:
        from open_clip.model import CLIPVisionCfg, _build_vision_tower

        patch = int(config["patch_size"])
        stride = stride or patch
        _check_size(image_size, patch, stride)
        config["image_size"] = tuple(image_size)
        # OpenAI's CLIP towers were trained with QuickGELU; open_clip builds plain GELU unless asked, which
        # would compute a different function in every block once OpenAI weights are loaded.
        tower = _build_vision_tower(embed_dim, CLIPVisionCfg(**config), quick_gelu=quick_gelu)
        grid = grid_size(image_size, patch, stride)
        tower.conv1.stride = (stride, stride)
        tower.positional_embedding = nn.Parameter(
            resize_positional_embedding(tower.positional_embedding.data, grid, pos_interpolation)
            if stride == patch
            else torch.randn(grid[0] * grid[1] + 1, tower.class_embedding.shape[0]) * 0.02
        )
        return tower, grid

    @staticmethod
    def width(tower: nn.Module) -> int:
        return int(tower.class_embedding.shape[0])

    @staticmethod
    def tokens(tower: nn.Module, frames: torch.Tensor, side: torch.Tensor | None) -> torch.Tensor:
        x = tower.conv1(frames).flatten(2).transpose(1, 2)  # (N, grid, width)
        cls = tower.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + tower.positional_embedding.to(x.dtype)
        x = tower.ln_pre(tower.patch_dropout(_add_to_cls(x, side)))
        x = tower.transformer(x)
        return tower.ln_post(x)

    @staticmethod
    def project(tower: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
        proj = tower.proj
        return tokens if proj is None else tokens @ proj

    @staticmethod
    def fit_state(
        state: dict[str, torch.Tensor], *, grid: tuple[int, int], mode: str, path: Path, name: str
    ) -> dict[str, torch.Tensor]:
        if "positional_embedding" in state:
            state["positional_embedding"] = resize_positional_embedding(
                state["positional_embedding"], grid, mode
            )
        return state


class _TimmTrunk:
    """open_clip's ``TimmModel`` around a timm ``Eva`` trunk (``tower.trunk``): patch_embed, cls_token,
    pos_embed (1, 1 + grid, width), pos_drop, rope, norm_pre, blocks, norm, then fc_norm / head_drop / head
    (the projection) and open_clip's own ``tower.head`` (empty unless ``timm_proj`` is set)."""

    @staticmethod
    def build(
        name: str,
        embed_dim: int,
        config: dict[str, Any],
        *,
        image_size: tuple[int, int],
        stride: int | None,
        pos_interpolation: str,
        quick_gelu: bool,
    ) -> tuple[nn.Module, tuple[int, int]]:
        from open_clip.model import CLIPVisionCfg, _build_vision_tower
        from timm.models.eva import Eva

        config["image_size"] = tuple(image_size)
        config["timm_model_pretrained"] = False  # weights come from model.weights only, never a download
        tower = _build_vision_tower(embed_dim, CLIPVisionCfg(**config))  # timm trunks ignore quick_gelu
        trunk = tower.trunk
        if not isinstance(trunk, Eva):
            raise ValueError(f"backbone {name!r}: its timm trunk is a {type(trunk).__name__}, not a timm Eva")
        rules = {
            "a class token": trunk.cls_token is not None,
            "no register tokens": trunk.reg_token is None,
            "a positional embedding with a class position": trunk.pos_embed is not None
            and not trunk.no_embed_class,
            "no patch dropout": trunk.patch_drop is None,
            "a fixed input size": not trunk.dynamic_img_size,
            "one RoPE for all blocks": not getattr(trunk, "rope_mixed", False),
        }
        broken = [rule for rule, holds in rules.items() if not holds]
        if broken:
            raise ValueError(f"backbone {name!r}: its timm trunk must have {', '.join(broken)}")
        patch_h, patch_w = trunk.patch_embed.patch_size
        if patch_h != patch_w:
            raise ValueError(f"backbone {name!r}: patches of {patch_h}x{patch_w} are not square")
        if stride not in (None, patch_h):
            raise ValueError(
                f"stride is {stride}, but backbone {name!r} (a timm EVA trunk) supports only non-overlapping "
                f"patches (stride = patch size {patch_h}): its patch embedding and RoPE grid are tied to them"
            )
        _check_size(image_size, patch_h, patch_h)
        # timm resamples the (random) positional embedding and rebuilds the RoPE grid for the new size.
        tower.set_input_size(tuple(image_size))
        grid = (int(trunk.patch_embed.grid_size[0]), int(trunk.patch_embed.grid_size[1]))
        return tower, grid

    @staticmethod
    def width(tower: nn.Module) -> int:
        return int(tower.trunk.embed_dim)

    @staticmethod
    def tokens(tower: nn.Module, frames: torch.Tensor, side: torch.Tensor | None) -> torch.Tensor:
        # timm Eva.forward_features with the side information added where the ViT adds it.
        trunk = tower.trunk
        x = trunk.patch_embed(frames)  # (N, grid, width)
        cls = trunk.cls_token.to(x.dtype).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + trunk.pos_embed.to(x.dtype)
        x = trunk.pos_drop(_add_to_cls(x, side))
        rope = None
        if trunk.rope is not None:
            feat_shape = getattr(trunk.rope, "feat_shape", None)
            rope = (
                trunk.rope.get_embed()
                if feat_shape
                else trunk.rope.get_embed(shape=trunk.patch_embed.grid_size)
            )
        x = trunk.norm_pre(x)
        for block in trunk.blocks:
            x = block(x, rope=rope)
        return trunk.norm(x)

    @staticmethod
    def project(tower: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
        trunk = tower.trunk
        return tower.head(trunk.head(trunk.head_drop(trunk.fc_norm(tokens))))

    @staticmethod
    def fit_state(
        state: dict[str, torch.Tensor], *, grid: tuple[int, int], mode: str, path: Path, name: str
    ) -> dict[str, torch.Tensor]:
        if not any(key.startswith("trunk.") for key in state):
            raise WeightsError(
                f"{path}: no 'visual.trunk.*' weights: backbone {name} needs an open_clip checkpoint of its "
                "timm-trunk tower (e.g. open_clip's EVA02-L-14 file)"
            )
        embedding = state.get("trunk.pos_embed")
        if embedding is not None and embedding.ndim == 3:
            state["trunk.pos_embed"] = resize_positional_embedding(embedding[0], grid, mode).unsqueeze(0)
        return state


class TokenEncoder(nn.Module):
    """Frames (N, 3, H, W) -> all tokens after the tower's final norm (N, 1 + grid, width), CLS first;
    ``project`` maps tokens to the joint embedding (``embed_dim``). ``side`` (N, width) is added to the CLS
    token before the blocks. The tower is ``self.tower`` (its state-dict keys are the checkpoint's
    ``visual.*`` keys)."""

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
        embed_dim, config = vision_config(name)
        kind = _TimmTrunk if config.get("timm_model_name") else _OpenClipViT
        if seed is not None:
            torch.manual_seed(seed)
        self.tower, self.grid = kind.build(
            name,
            embed_dim,
            config,
            image_size=tuple(image_size),
            stride=stride,
            pos_interpolation=pos_interpolation,
            quick_gelu=quick_gelu,
        )
        self._kind = kind
        self.name = name
        self.width = kind.width(self.tower)
        self.embed_dim = embed_dim
        self.pos_interpolation = pos_interpolation
        if weights is not None:
            self.load_weights(weights)

    def load_weights(self, path: Path) -> None:
        state = self._kind.fit_state(
            _visual_state_dict(path), grid=self.grid, mode=self.pos_interpolation, path=path, name=self.name
        )
        own = self.tower.state_dict()
        mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
        missing = [k for k in own if k not in state]
        if mismatched or missing:
            detail = (mismatched or missing)[:3]
            raise WeightsError(f"{path}: weights do not fit this backbone (e.g. {', '.join(detail)})")
        self.tower.load_state_dict({k: v for k, v in state.items() if k in own})

    def forward(self, frames: torch.Tensor, side: torch.Tensor | None = None) -> torch.Tensor:
        return self._kind.tokens(self.tower, frames, side)

    def project(self, tokens: torch.Tensor) -> torch.Tensor:
        """The tower's own projection to the joint embedding, on tokens of any leading shape (..., width)."""
        return self._kind.project(self.tower, tokens)
