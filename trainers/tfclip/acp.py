"""ACP-VPReID's view-adaptive modules (AG-VPReID 2025 challenge report, Appendix A.3), as switches of TFCLIP.

Built from the report's description: the authors (Rashidunnabi, Proença, Hambarde) published no code and the
appendix gives no equations, so each formula below is our reading of one sentence of it, stated at the
module. A view is the platform of a clip's camera (:func:`trainers.data.naming.platform_of_camera`: C0/C1
CCTV, C2/C3 wearable, C4/C5 aerial). Where each module acts in ``TFCLIP.forward``:

- encoder tokens (B, T, L, D), as they leave CLIP's ``ln_post``:
  (iv) :class:`ScaleAdaptiveNorm` -> (i) :class:`ViewSpecificEncoding` -> (iii) :class:`MotionGate` ->
  (ii) :class:`ViewMemory` on each frame's CLS token (:class:`ViewAdaptiveFrames` chains those switched on);
- the frames' CLS features (B, T, D): (v) :class:`CrossViewAggregation` replaces the temporal pool of the
  ``cls`` part (the ``proj`` video feature becomes CLIP's projection of its result).

Every new linear layer starts trunc-normal(0.02) with zero bias, as TF-CLIP's SSP: each module starts close
to the identity (so pre-trained features survive switching it on) without being exactly it, except the
scale-adaptive affine, a normalisation's affine, which starts at exactly (1, 0).
"""

from __future__ import annotations

import torch
from torch import nn

from trainers.data.naming import AERIAL_CAMERAS, CCTV_CAMERAS, WEARABLE_CAMERAS, Platform, platform_of_camera
from trainers.tfclip.config import ACPConfig
from trainers.tfclip.modules import activation

#: View index order of every per-view table: aerial, cctv, wearable.
VIEWS: tuple[Platform, ...] = tuple(Platform)
_CAMERAS = range(max(AERIAL_CAMERAS | CCTV_CAMERAS | WEARABLE_CAMERAS) + 1)
#: Camera id -> view index.
CAMERA_VIEW: tuple[int, ...] = tuple(VIEWS.index(platform_of_camera(camera)) for camera in _CAMERAS)


def view_ids(cameras: torch.Tensor) -> torch.Tensor:
    """Camera ids (B,) -> view indices (B,) into :data:`VIEWS`."""
    return torch.tensor(CAMERA_VIEW, device=cameras.device)[cameras]


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.MultiheadAttention) and module.in_proj_weight is not None:
        nn.init.trunc_normal_(module.in_proj_weight, std=0.02)
        if module.in_proj_bias is not None:
            nn.init.zeros_(module.in_proj_bias)


def _check_heads(dim: int, heads: int) -> None:
    if dim % heads:
        raise ValueError(f"model.acp.heads is {heads}, but must divide the backbone width {dim}")


def _per_sample(table: torch.Tensor, views: torch.Tensor, ndim: int) -> torch.Tensor:
    """Rows of a (V, D) table for each sample, shaped to broadcast over a (B, ..., D) tensor of ``ndim``."""
    return table[views].view(len(views), *([1] * (ndim - 2)), table.shape[-1])


class ScaleAdaptiveNorm(nn.Module):
    """(iv) "scale normalization layers conditioned on camera type": ``x * scale_v + shift_v``.

    The encoder's tokens have just left CLIP's final layer norm, so a per-view affine on them makes that norm
    a layer normalisation conditioned on the camera type (conditional normalisation, as in FiLM),
    learning per-platform feature scales for the size and resolution gap between aerial and ground frames.
    It starts at the identity (scale 1, shift 0), like any normalisation's affine.
    """

    def __init__(self, dim: int, views: int = len(VIEWS)) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(views, dim))
        self.shift = nn.Parameter(torch.zeros(views, dim))

    def forward(self, x: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
        """(B, ..., D) with views (B,) -> same shape."""
        return x * _per_sample(self.scale, views, x.ndim) + _per_sample(self.shift, views, x.ndim)


class ViewSpecificEncoding(nn.Module):
    """(i) "dedicated transformation layers" per view: ``x + W2_v act(W1_v LN(x))``, a residual bottleneck
    MLP (width D -> D / 4 -> D) whose weights belong to the sample's view; the layer norm is shared."""

    def __init__(self, dim: int, dropout: float, quick_gelu: bool, views: int = len(VIEWS)) -> None:
        super().__init__()
        hidden = max(1, dim // 4)
        self.norm = nn.LayerNorm(dim)
        self.down = nn.Parameter(torch.empty(views, dim, hidden))
        self.down_bias = nn.Parameter(torch.zeros(views, hidden))
        self.up = nn.Parameter(torch.empty(views, hidden, dim))
        self.up_bias = nn.Parameter(torch.zeros(views, dim))
        nn.init.trunc_normal_(self.down, std=0.02)
        nn.init.trunc_normal_(self.up, std=0.02)
        self.act = activation(quick_gelu)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
        """(B, ..., D) with views (B,) -> same shape."""
        h = self.norm(x).flatten(1, -2)  # (B, N, D)
        h = torch.baddbmm(self.down_bias[views].unsqueeze(1), h, self.down[views])
        h = self.dropout(self.act(h))
        h = torch.baddbmm(self.up_bias[views].unsqueeze(1), h, self.up[views])
        return x + h.view_as(x)


class MotionGate(nn.Module):
    """(iii) "temporal differences between frames ... emphasize dynamic content and suppress static noise":
    ``x_t * 2 sigmoid(MLP(LN(x_t - x_{t-1})))``, a per-token, per-channel gate in (0, 2) from each token's
    change since the previous frame (the first frame takes the second one's difference; a one-frame clip
    has none). A token that does not change gets ``2 sigmoid(b)``: 1 at the start."""

    def __init__(self, dim: int, dropout: float, quick_gelu: bool) -> None:
        super().__init__()
        hidden = max(1, dim // 4)
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), activation(quick_gelu), nn.Dropout(dropout), nn.Linear(hidden, dim)
        )
        self.apply(_init_weights)

    @staticmethod
    def differences(x: torch.Tensor) -> torch.Tensor:
        """(B, T, ...) -> x_t - x_{t-1} along T, the first frame repeating the second's (zeros if T = 1)."""
        if x.shape[1] == 1:
            return torch.zeros_like(x)
        step = x[:, 1:] - x[:, :-1]
        return torch.cat([step[:, :1], step], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, ..., D) -> same shape."""
        return x * 2 * torch.sigmoid(self.mlp(self.norm(self.differences(x))))


class ViewMemory(nn.Module):
    """(ii) Temporal memory diffusion: "view-aware memory banks that store long-term temporal features and use
    gated attention to adaptively retrieve relevant information".

    One bank per view of ``slots`` clip features (the mean over T of the clips' incoming CLS features),
    written first-in first-out, in batch order, in training mode only and without gradient; the bank, its
    fill level and write cursor are buffers, so checkpoints carry them and a resumed run reads the same
    memory. Each frame feature f reads its view's bank by multi-head attention (query LN(f), keys and values
    LN(bank)); the read r enters through a gate: ``f + sigmoid(W [f; r]) * r``. Reading happens before this
    batch is written, and an empty bank reads nothing (the output is f).
    """

    bank: torch.Tensor
    size: torch.Tensor
    cursor: torch.Tensor

    def __init__(self, dim: int, slots: int, heads: int, dropout: float, views: int = len(VIEWS)) -> None:
        super().__init__()
        _check_heads(dim, heads)
        self.register_buffer("bank", torch.zeros(views, slots, dim))
        self.register_buffer("size", torch.zeros(views, dtype=torch.long))
        self.register_buffer("cursor", torch.zeros(views, dtype=torch.long))
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.gate = nn.Linear(2 * dim, dim)
        self.apply(_init_weights)

    def forward(self, frames: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
        """(B, T, D) frame features with views (B,) -> (B, T, D)."""
        slots = self.bank.shape[1]
        filled = torch.arange(slots, device=views.device) < self.size[views].unsqueeze(1)  # (B, S)
        any_filled = filled.any(dim=1)
        ignore = ~filled
        ignore[:, 0] &= any_filled  # an empty bank attends to its (zero) first slot; the read is then dropped
        context = self.norm(self.bank[views])
        read = self.attn(self.norm(frames), context, context, key_padding_mask=ignore, need_weights=False)[0]
        read = read * any_filled.view(-1, 1, 1).to(read.dtype)
        out = frames + torch.sigmoid(self.gate(torch.cat([frames, read], dim=-1))) * read
        if self.training:
            self.write(frames.detach().mean(dim=1), views)
        return out

    @torch.no_grad()
    def write(self, features: torch.Tensor, views: torch.Tensor) -> None:
        """Push clip features (B, D) into their views' banks, oldest entries out first."""
        slots = self.bank.shape[1]
        for view in range(self.bank.shape[0]):
            rows = features[views == view].float()
            count = rows.shape[0]
            if count == 0:
                continue
            kept = rows[-slots:]  # a batch with more clips than slots keeps its last ones
            start = self.cursor[view] + (count - kept.shape[0])
            positions = (start + torch.arange(kept.shape[0], device=rows.device)) % slots
            self.bank[view, positions] = kept
            self.cursor[view] = (self.cursor[view] + count) % slots
            self.size[view] = torch.clamp(self.size[view] + count, max=slots)


class ViewAdaptiveFrames(nn.Module):
    """The switched-on frame-level modules, in order: scale norm, view encoding, motion gate (on every token),
    then the memory read (on each frame's CLS token, position 0)."""

    def __init__(self, config: ACPConfig, dim: int, heads: int, quick_gelu: bool) -> None:
        super().__init__()
        self.scale_norm = ScaleAdaptiveNorm(dim) if config.scale_norm else None
        self.view_encoding = (
            ViewSpecificEncoding(dim, config.dropout, quick_gelu) if config.view_encoding else None
        )
        self.motion_gate = MotionGate(dim, config.dropout, quick_gelu) if config.motion_gate else None
        self.memory = ViewMemory(dim, config.memory_slots, heads, config.dropout) if config.memory else None

    def forward(self, tokens: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
        """(B, T, L, D) token maps with views (B,) -> same shape."""
        if self.scale_norm is not None:
            tokens = self.scale_norm(tokens, views)
        if self.view_encoding is not None:
            tokens = self.view_encoding(tokens, views)
        if self.motion_gate is not None:
            tokens = self.motion_gate(tokens)
        if self.memory is not None:
            cls = self.memory(tokens[:, :, 0], views)
            tokens = torch.cat([cls.unsqueeze(2), tokens[:, :, 1:]], dim=2)
        return tokens


class CrossViewAggregation(nn.Module):
    """(v) "Learnable view embeddings and cross-view transformers guide feature aggregation across time and
    perspective": frames (B, T, D) -> one video feature (B, D).

    The sequence [mean of the frames, the view's embedding, each frame + the view's embedding] goes through
    ``layers`` pre-norm transformer layers (multi-head self-attention, 4x MLP, dropout); the video feature is
    the first token's output. Starting from the mean keeps the temporal mean (TF-CLIP's pool) as the
    initial aggregate, which the view-conditioned attention then refines.
    """

    def __init__(
        self, dim: int, heads: int, layers: int, dropout: float, quick_gelu: bool, views: int = len(VIEWS)
    ) -> None:
        super().__init__()
        _check_heads(dim, heads)
        self.view_embedding = nn.Parameter(torch.empty(views, dim))
        nn.init.trunc_normal_(self.view_embedding, std=0.02)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                dim,
                heads,
                4 * dim,
                dropout,
                activation=activation(quick_gelu),
                batch_first=True,
                norm_first=True,
            )
            for _ in range(layers)
        )
        self.layers.apply(_init_weights)

    def forward(self, frames: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
        view = self.view_embedding[views].unsqueeze(1).to(frames.dtype)  # (B, 1, D)
        x = torch.cat([frames.mean(dim=1, keepdim=True), view, frames + view], dim=1)
        for layer in self.layers:
            x = layer(x)
        return x[:, 0]
