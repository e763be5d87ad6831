"""TF-CLIP (text-free CLIP for video ReID) with the X-TFCLIP options as switches of one model.

Forward on clips (B, T, 3, H, W) with camera ids (B,):

1. every frame through the token encoder, with the camera embedding (x ``sie_coef``) and optionally a
   learnable frame-position embedding added to its CLS token;
2. per-frame CLS features (width) and their projections (embed_dim), pooled over T (mean or attention);
3. TMD on the detached token maps gives a third video feature;
4. each feature through its neck and a bias-free classifier (init N(0, 0.001));
5. with an identity memory (given when the V2M loss is on): SSP updates the memory for each video
   (additive or learnable-alpha mix), and the video-to-memory logits are the projected video feature's dot
   products with the updated memory.

The model returns a dict of tensors; the loss lives in :mod:`trainers.tfclip.losses` (the "task" object), so
nothing here branches on a preset name.
"""

from __future__ import annotations

import torch
from torch import nn

from trainers.tfclip.backbone import TokenEncoder
from trainers.tfclip.config import ModelConfig
from trainers.tfclip.modules import Neck, SequenceSpecificPrompt, TemporalMemoryDiffusion, TemporalPool

NUM_CAMERAS = 6


def _classifier(dim: int, classes: int) -> nn.Linear:
    layer = nn.Linear(dim, classes, bias=False)
    nn.init.normal_(layer.weight, std=0.001)
    return layer


class TFCLIP(nn.Module):
    def __init__(
        self,
        config: ModelConfig,
        *,
        num_classes: int,
        image_size: tuple[int, int],
        seq_len: int,
        seed: int | None = None,
        memory: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.encoder = TokenEncoder(
            config.backbone,
            image_size=image_size,
            stride=config.stride,
            pos_interpolation=config.pos_interpolation,
            weights=config.weights,
            seed=seed,
        )
        width, embed = self.encoder.width, self.encoder.embed_dim
        self.dims = {"cls": width, "proj": embed, "tmd": width}
        self.camera_embedding = nn.Parameter(torch.zeros(NUM_CAMERAS, width)) if config.sie_coef > 0 else None
        if self.camera_embedding is not None:
            nn.init.trunc_normal_(self.camera_embedding, std=0.02)
        self.frame_embedding = nn.Parameter(torch.zeros(seq_len, width)) if config.frame_position else None
        if self.frame_embedding is not None:
            nn.init.trunc_normal_(self.frame_embedding, std=0.02)
        parts = ["cls", "proj", *(["tmd"] if config.tmd else [])]
        self.parts = tuple(parts)
        self.pools = nn.ModuleDict({p: TemporalPool(self.dims[p], config.temporal_pool) for p in parts})
        self.necks = nn.ModuleDict({p: Neck(self.dims[p], config.neck) for p in parts})
        self.classifiers = nn.ModuleDict({p: _classifier(self.dims[p], num_classes) for p in parts})
        self.tmd = TemporalMemoryDiffusion(width, config.tmd_heads) if config.tmd else None
        self.ssp: SequenceSpecificPrompt | None = None
        if memory is not None:
            if memory.shape != (num_classes, embed):
                raise ValueError(f"memory has shape {tuple(memory.shape)}, expected ({num_classes}, {embed})")
            self.register_buffer("memory", memory.clone().float())
            self.ssp = SequenceSpecificPrompt(embed, config.ssp_heads, config.ssp_layers, config.ssp_dropout)
            self.token_proj = nn.Linear(width, embed)
            self.memory_alpha = nn.Parameter(torch.zeros(())) if config.memory_update == "alpha" else None

    def classifier_parameters(self) -> list[nn.Parameter]:
        return list(self.classifiers.parameters())

    def forward(
        self, clips: torch.Tensor, cameras: torch.Tensor, *, memory_logits: bool = True
    ) -> dict[str, torch.Tensor]:
        batch, frames = clips.shape[:2]
        side = None
        if self.camera_embedding is not None:
            side = self.config.sie_coef * self.camera_embedding[cameras].repeat_interleave(frames, dim=0)
        if self.frame_embedding is not None:
            position = self.frame_embedding[:frames].repeat(batch, 1)
            side = position if side is None else side + position
        tokens = self.encoder(clips.flatten(0, 1), side)  # (B*T, L, width)
        cls = tokens[:, 0]
        proj = self.encoder.project(cls)
        frame_features = {"cls": cls.view(batch, frames, -1), "proj": proj.view(batch, frames, -1)}
        if self.tmd is not None:
            frame_features["tmd"] = self.tmd(tokens.detach().view(batch, frames, tokens.shape[1], -1))
        video = {p: self.pools[p](frame_features[p]) for p in self.parts}
        normed = {p: self.necks[p](video[p]) for p in self.parts}
        out: dict[str, torch.Tensor] = {f"feat_{p}": video[p] for p in self.parts}
        out.update({f"logits_{p}": self.classifiers[p](normed[p]) for p in self.parts})
        out.update({f"bn_{p}": normed[p] for p in self.parts})
        # frame-level identity logits of the projected per-frame features (B*T, classes)
        out["frame_logits"] = self.classifiers["proj"](self.necks["proj"](proj))
        if self.ssp is not None and memory_logits:
            video_tokens = self.token_proj(tokens.view(batch, frames, tokens.shape[1], -1).mean(dim=1))
            update = self.ssp(self.memory, video_tokens)  # (B, N, E)
            if self.memory_alpha is None:
                memory = self.memory.unsqueeze(0) + update
            else:
                alpha = torch.sigmoid(self.memory_alpha)
                memory = alpha * self.memory.unsqueeze(0) + (1 - alpha) * update
            out["v2m_logits"] = torch.einsum("be,bne->bn", video["proj"], memory)
        return out

    def test_features(self, clips: torch.Tensor, cameras: torch.Tensor) -> torch.Tensor:
        """Retrieval feature: concatenation of the configured parts' post-neck video features."""
        out = self.forward(clips, cameras, memory_logits=False)
        return torch.cat([out[f"bn_{p}"] for p in self.config.test_features], dim=1)
