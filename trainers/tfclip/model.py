"""TF-CLIP (text-free CLIP for video ReID) with the X-TFCLIP options as switches of one model.

Forward on clips (B, T, 3, H, W) with camera ids (B,), as in the reference ``build_transformer.forward``
(AsuradaYuci/TF-CLIP ``model/make_model_clipreid.py``):

1. every frame through the token encoder, with the camera embedding (x ``sie_coef``) and optionally a
   learnable frame-position embedding added to its CLS token;
2. per-frame CLS features (width) and their projections (embed_dim), pooled over T (mean or attention);
3. TMD on the detached token maps: each frame's tokens plus its message token, pooled into a frame feature
   (mean or attention over tokens), and the frame features pooled over T into the third video feature;
4. necks and bias-free classifiers (init N(0, 0.001)): one per video feature, plus a neck for the TMD frame
   features whose logits come from the TMD classifier (the reference's ``classifier_proj_temp`` serves both);
5. with an identity memory (given when the V2M loss is on): SSP computes a per-video memory update from
   CLIP's own projection of every token (pooled over T), the memory becomes M + update (or X-TFCLIP's
   alpha M + (1 - alpha) SSP), and the video-to-memory logits are the pooled projected feature's dot
   products with it.

ACP-VPReID's view-adaptive modules (``model.acp``, :mod:`trainers.tfclip.acp`) hook in at two places: on the
token maps right after the encoder (before step 2), and in place of the temporal pool of the CLS feature
(step 2; the projected video feature is then CLIP's projection of the aggregated one). All off = TF-CLIP.

The model returns a dict of tensors; the loss lives in :mod:`trainers.tfclip.losses` (the "task" object), so
nothing here branches on a preset name.
"""

from __future__ import annotations

import torch
from torch import nn

from trainers.tfclip.acp import CrossViewAggregation, ViewAdaptiveFrames, view_ids
from trainers.tfclip.backbone import TokenEncoder
from trainers.tfclip.config import ModelConfig
from trainers.tfclip.modules import Neck, SequencePool, SequenceSpecificPrompt, TemporalMemoryDiffusion

NUM_CAMERAS = 6
#: X-TFCLIP initialises the memory-mix logit a to 0.5, so alpha = sigmoid(0.5) ~ 0.62 at the start.
MEMORY_ALPHA_INIT = 0.5


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
            quick_gelu=config.quick_gelu,
            weights=config.weights,
            seed=seed,
        )
        width, embed = self.encoder.width, self.encoder.embed_dim
        self.dims = {"cls": width, "proj": embed, "tmd": width}
        self.camera_embedding = nn.Parameter(torch.zeros(NUM_CAMERAS, width)) if config.sie_coef > 0 else None
        if self.camera_embedding is not None:
            nn.init.trunc_normal_(self.camera_embedding, std=0.02)
        # X-TFCLIP's video_embed starts at zero (it is never re-initialised).
        self.frame_embedding = nn.Parameter(torch.zeros(seq_len, width)) if config.frame_position else None
        parts = ["cls", "proj", *(["tmd"] if config.tmd else [])]
        self.parts = tuple(parts)
        pool = config.temporal_pool
        acp = config.acp
        # ACP's cross-view transformer aggregates the CLS frames instead of a pool (and proj follows it)
        pooled = [p for p in parts if not (acp.cross_view and p in ("cls", "proj"))]
        self.pools = nn.ModuleDict({p: SequencePool(self.dims[p], pool) for p in pooled})
        self.necks = nn.ModuleDict({p: Neck(self.dims[p], config.neck) for p in parts})
        self.classifiers = nn.ModuleDict({p: _classifier(self.dims[p], num_classes) for p in parts})
        self.tmd: TemporalMemoryDiffusion | None = None
        if config.tmd:
            self.tmd = TemporalMemoryDiffusion(width, config.tmd_heads, config.quick_gelu)
            self.tmd_token_pool = SequencePool(width, pool)  # a frame's L + 1 TMD tokens -> its feature
            self.frame_neck = Neck(width, config.neck)
        self.ssp: SequenceSpecificPrompt | None = None
        if memory is not None:
            if memory.shape != (num_classes, embed):
                raise ValueError(f"memory has shape {tuple(memory.shape)}, expected ({num_classes}, {embed})")
            self.register_buffer("memory", memory.clone().float())
            self.ssp = SequenceSpecificPrompt(
                embed, config.ssp_heads, config.ssp_layers, config.ssp_dropout, config.quick_gelu
            )
            self.video_token_pool = SequencePool(embed, pool)  # each projected token over T
            self.memory_alpha = (
                nn.Parameter(torch.tensor(MEMORY_ALPHA_INIT)) if config.memory_update == "alpha" else None
            )
        heads = acp.heads or config.tmd_heads
        self.acp_frames = (
            ViewAdaptiveFrames(acp, width, heads, config.quick_gelu) if acp.frame_modules else None
        )
        self.acp_aggregate = (
            CrossViewAggregation(width, heads, acp.cross_view_layers, acp.dropout, config.quick_gelu)
            if acp.cross_view
            else None
        )

    def classifier_parameters(self, parts: tuple[str, ...]) -> list[nn.Parameter]:
        """The weights of the classifiers of ``parts`` (those the model has)."""
        return [w for p in parts if p in self.classifiers for w in self.classifiers[p].parameters()]

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
        tokens = tokens.view(batch, frames, *tokens.shape[1:])
        acp_on = self.acp_frames is not None or self.acp_aggregate is not None
        views = view_ids(cameras) if acp_on else None
        if self.acp_frames is not None:
            tokens = self.acp_frames(tokens, views)
        cls = tokens[:, :, 0]
        frame_features = {"cls": cls, "proj": self.encoder.project(cls)}
        tmd_frames = None
        if self.tmd is not None:
            diffused = self.tmd(tokens.detach())  # (B, T, L + 1, width)
            tmd_frames = self.tmd_token_pool(diffused.flatten(0, 1))  # (B*T, width)
            frame_features["tmd"] = tmd_frames.view(batch, frames, -1)
        video = {p: self.pools[p](frame_features[p]) for p in self.pools}
        if self.acp_aggregate is not None:
            video["cls"] = self.acp_aggregate(cls, views)
            video["proj"] = self.encoder.project(video["cls"])
        normed = {p: self.necks[p](video[p]) for p in self.parts}
        out: dict[str, torch.Tensor] = {f"feat_{p}": video[p] for p in self.parts}
        out.update({f"logits_{p}": self.classifiers[p](normed[p]) for p in self.parts})
        out.update({f"bn_{p}": normed[p] for p in self.parts})
        if tmd_frames is not None:
            # frame-level identity logits (B*T, classes): the TMD frame neck, then the TMD classifier
            out["frame_logits"] = self.classifiers["tmd"](self.frame_neck(tmd_frames))
        if self.ssp is not None and memory_logits:
            video_tokens = self.video_token_pool(self.encoder.project(tokens))  # (B, L, embed)
            update = self.ssp(self.memory, video_tokens)  # (B, N, embed)
            if self.memory_alpha is None:
                memory = self.memory.unsqueeze(0) + update
            else:
                alpha = torch.sigmoid(self.memory_alpha)
                memory = alpha * self.memory.unsqueeze(0) + (1 - alpha) * update
            out["v2m_logits"] = torch.einsum("be,bne->bn", video["proj"], memory)
        return out

    def test_features(self, clips: torch.Tensor, cameras: torch.Tensor) -> torch.Tensor:
        """Retrieval feature: the configured parts' video features, before or after their necks,
        concatenated."""
        out = self.forward(clips, cameras, memory_logits=False)
        prefix = "feat" if self.config.neck_feat == "before" else "bn"
        return torch.cat([out[f"{prefix}_{p}"] for p in self.config.test_features], dim=1)
