"""TF-CLIP building blocks: temporal pooling, neck, Temporal Memory Diffusion, Sequence-Specific Prompt."""

from __future__ import annotations

import torch
from torch import nn


class TemporalPool(nn.Module):
    """(B, T, D) -> (B, D): a mean over frames, or attention weights over frames (X-TFCLIP: linear d -> d/2,
    tanh, linear -> 1, softmax over T)."""

    def __init__(self, dim: int, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.score = (
            nn.Sequential(nn.Linear(dim, max(1, dim // 2)), nn.Tanh(), nn.Linear(max(1, dim // 2), 1))
            if mode == "attention"
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.score is None:
            return x.mean(dim=1)
        weights = torch.softmax(self.score(x), dim=1)  # (B, T, 1)
        return (weights * x).sum(dim=1)


class Neck(nn.Module):
    """BNNeck (BatchNorm1d, bias frozen at 0) or an instance norm over each feature vector (X-TFCLIP)."""

    def __init__(self, dim: int, kind: str) -> None:
        super().__init__()
        self.kind = kind
        if kind == "bn":
            self.norm: nn.Module = nn.BatchNorm1d(dim)
            self.norm.bias.requires_grad_(False)
        else:
            self.norm = nn.InstanceNorm1d(1, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "bn":
            return self.norm(x)
        return self.norm(x.unsqueeze(1)).squeeze(1)


class Block(nn.Module):
    """Pre-norm transformer block: self-attention (optionally cross-attention to ``context``) + MLP."""

    def __init__(self, dim: int, heads: int, *, cross: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.cross = cross
        if cross:
            self.norm_ctx = nn.LayerNorm(dim)
            self.norm_c = nn.LayerNorm(dim)
            self.cross_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * dim, dim)
        )

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        q = self.norm_q(x)
        x = x + self.attn(q, q, q, need_weights=False)[0]
        if self.cross and context is not None:
            ctx = self.norm_ctx(context)
            x = x + self.cross_attn(self.norm_c(x), ctx, ctx, need_weights=False)[0]
        return x + self.mlp(self.norm_mlp(x))


class TemporalMemoryDiffusion(nn.Module):
    """TMD: a message token per frame (linear of the frame's mean token), attention across the T messages,
    then each message joins its frame's tokens for a self-attention block; the block's mean token is the frame
    feature. Input (B, T, L, D) -> frame features (B, T, D)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.message = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.exchange = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.block = Block(dim, heads)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, frames, _, dim = tokens.shape
        message = self.message(tokens.mean(dim=2))
        normed = self.norm(message)
        message = message + self.exchange(normed, normed, normed, need_weights=False)[0]
        x = torch.cat([message.unsqueeze(2), tokens], dim=2).flatten(0, 1)
        return self.block(x).mean(dim=1).view(batch, frames, dim)


class SequenceSpecificPrompt(nn.Module):
    """SSP: identity memories attend to each other and to one video's token map. memory (N, E) and video
    tokens (B, S, E) -> a per-video memory update (B, N, E)."""

    def __init__(self, dim: int, heads: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(Block(dim, heads, cross=True, dropout=dropout) for _ in range(layers))

    def forward(self, memory: torch.Tensor, video_tokens: torch.Tensor) -> torch.Tensor:
        x = memory.unsqueeze(0).expand(video_tokens.shape[0], -1, -1)
        for layer in self.layers:
            x = layer(x, video_tokens)
        return x
