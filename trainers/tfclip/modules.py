"""TF-CLIP building blocks: pooling, neck, Temporal Memory Diffusion (TMD), Sequence-Specific Prompt (SSP).

Each block follows the reference implementation (AsuradaYuci/TF-CLIP ``model/make_model_clipreid.py``, and
BiDAlab/X-TFCLIP's file of the same name for the X-TFCLIP switches); the tests in
``tests/test_tfclip_reference.py`` pin each behaviour with the reference line it comes from.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``: the activation OpenAI CLIP was trained with (TF-CLIP's TMD and SSP too)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def activation(quick_gelu: bool) -> nn.Module:
    return QuickGELU() if quick_gelu else nn.GELU()


class SequencePool(nn.Module):
    """Pools axis 1 of ``(B, S, ...)`` (frames, or a frame's tokens): a mean, or X-TFCLIP's temporal attention
    pooling (linear d -> d/2, tanh, linear -> 1, softmax over axis 1, weighted sum)."""

    def __init__(self, dim: int, mode: str) -> None:
        super().__init__()
        self.score = (
            nn.Sequential(nn.Linear(dim, max(1, dim // 2)), nn.Tanh(), nn.Linear(max(1, dim // 2), 1))
            if mode == "attention"
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.score is None:
            return x.mean(dim=1)
        weights = torch.softmax(self.score(x), dim=1)
        return (weights * x).sum(dim=1)


class Neck(nn.Module):
    """BNNeck (BatchNorm1d, bias frozen at 0), or X-TFCLIP's instance norm: each feature vector normalised
    over its own entries, without affine parameters (``nn.InstanceNorm1d`` defaults, applied to (B, D))."""

    def __init__(self, dim: int, kind: str) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(dim) if kind == "bn" else None
        if self.norm is not None:
            self.norm.bias.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm is not None:
            return self.norm(x)
        return F.instance_norm(x.unsqueeze(1)).squeeze(1)


class _ResidualBlock(nn.Module):
    """CLIP's pre-norm block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))`` with a 4x MLP."""

    def __init__(self, dim: int, heads: int, quick_gelu: bool) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), activation(quick_gelu), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = self.ln_1(x)
        x = x + self.attn(normed, normed, normed, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class TemporalMemoryDiffusion(nn.Module):
    """TMD (one cross-frame attention block): a message token per frame (linear of the mean of the frame's
    tokens), pre-norm attention across the T message tokens of a clip, then each message joins its frame's
    tokens for one pre-norm self-attention + MLP block.

    Input (B, T, L, D) token maps -> (B, T, L + 1, D): every frame's tokens plus its message token, which the
    model pools into a frame feature (the mean, or attention pooling in X-TFCLIP).
    """

    def __init__(self, dim: int, heads: int, quick_gelu: bool = True) -> None:
        super().__init__()
        self.message = nn.Linear(dim, dim)
        self.message_norm = nn.LayerNorm(dim)
        self.message_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.block = _ResidualBlock(dim, heads, quick_gelu)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, frames, length, dim = tokens.shape
        message = self.message(tokens.mean(dim=2))  # (B, T, D)
        normed = self.message_norm(message)
        message = message + self.message_attn(normed, normed, normed, need_weights=False)[0]
        x = torch.cat([tokens, message.unsqueeze(2)], dim=2).flatten(0, 1)  # (B*T, L + 1, D)
        return self.block(x).view(batch, frames, length + 1, dim)


class _Attention(nn.Module):
    """Multi-head attention as in the SSP of the reference: q/k/v projections without bias, an output
    projection with bias, dropout after the output projection only."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"ssp_heads is {heads}, but must divide the embedding width {dim}")
        self.heads = heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, heads, N, D / heads)

    def forward(self, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        mixed = F.scaled_dot_product_attention(
            self._split(self.q(query)), self._split(self.k(context)), self._split(self.v(context))
        )
        return self.dropout(self.out(mixed.transpose(1, 2).flatten(2)))


class _PromptLayer(nn.Module):
    """One SSP decoder layer: self-attention over the memories, cross-attention to the video tokens, MLP."""

    def __init__(self, dim: int, heads: int, dropout: float, quick_gelu: bool) -> None:
        super().__init__()
        self.self_attn = _Attention(dim, heads, dropout)
        self.cross_attn = _Attention(dim, heads, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, 4 * dim), activation(quick_gelu), nn.Dropout(dropout), nn.Linear(4 * dim, dim)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        normed = self.norm1(x)
        x = x + self.self_attn(normed, normed)
        x = x + self.cross_attn(self.norm2(x), video)  # the video tokens enter as they are (already normed)
        return x + self.dropout(self.mlp(self.norm3(x)))


class SequenceSpecificPrompt(nn.Module):
    """SSP: the identity memories, projected, attend to each other and to one video's projected tokens; the
    result, projected out, is the per-video memory UPDATE (the caller forms M' = M + update, or X-TFCLIP's
    alpha mix). memory (N, E) and video tokens (B, S, E) -> (B, N, E).

    Projections as in the reference: video tokens LN -> Linear -> LN, memories LN -> Linear, output LN ->
    Linear; every Linear trunc-normal(0.02) with zero bias, every LayerNorm (1, 0).
    """

    def __init__(self, dim: int, heads: int, layers: int, dropout: float, quick_gelu: bool = True) -> None:
        super().__init__()
        self.video_proj = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.LayerNorm(dim))
        self.memory_proj = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim))
        self.layers = nn.ModuleList(_PromptLayer(dim, heads, dropout, quick_gelu) for _ in range(layers))
        self.out_proj = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim))
        self.apply(_init_prompt_weights)

    def forward(self, memory: torch.Tensor, video_tokens: torch.Tensor) -> torch.Tensor:
        video = self.video_proj(video_tokens)
        x = self.memory_proj(memory).unsqueeze(0).expand(video_tokens.shape[0], -1, -1)
        for layer in self.layers:
            x = layer(x, video)
        return self.out_proj(x)


def _init_prompt_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
