"""Losses of the TF-CLIP family, and the task object that combines them into one ``loss``.

As in TF-CLIP (``loss/make_loss.py`` and ``processor/processor_clipreid_stage2.py``):

    loss = id_weight * sum_p CE(logits_p) + triplet_weight * sum_p triplet(feat_p)
           + v2m_weight * CE(v2m_logits) + frame_weight * CE(frame_logits) / T

- every CE is label-smoothed (uniform, epsilon 0.1), or uses online label smoothing (Zhang et al., "Delving
  Deep into Label Smoothing", TIP 2021; X-TFCLIP): the soft label of class c is the mean predicted
  distribution of the correctly classified samples of c during the previous epoch. X-TFCLIP shares ONE OLS
  instance between the three ID heads and the V2M term, and gives the frame term its own;
- batch-hard triplet loss (Hermans et al., 2017) with a margin on the pre-neck video features;
- the frame term is the CE of the TMD per-frame logits over the B*T frames, divided by T.

ACP-VPReID (challenge report, Appendix A.3: "identity, triplet, center, and contrastive loss") adds

    + center_weight * sum_p center(feat_p) + contrastive_weight * supcon(feat_proj)

- center loss (Wen et al., ECCV 2016, as in reid-strong-baseline): the mean over the batch of the squared
  distance of each pre-neck video feature to its identity's learnable center (one table per part), the
  centers being parameters of this task object, optimised with the model (see ``optim.build_optimizer``);
- supervised contrastive loss (Khosla et al., NeurIPS 2020): A.3 only says "contrastive loss (image-text via
  CLIP clustering)", which names no formula - TF-CLIP's video-to-memory term, already on, is that image vs.
  CLIP-clustered identity term - so this is the standard supervised InfoNCE over the batch, on the
  L2-normalised projected (CLIP joint-space) video features.

Weights are configuration; a zero weight skips the term's computation entirely.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from trainers.tfclip.config import LossConfig


def batch_hard_triplet(features: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """For each anchor: hardest positive (farthest same id) vs hardest negative (closest other id).
    Euclidean distances; anchors without a positive or a negative are ignored."""
    distances = torch.cdist(features, features).clamp_min(1e-12)
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positives = same & ~eye
    valid = positives.any(dim=1) & (~same).any(dim=1)
    if not valid.any():
        return features.sum() * 0.0
    hardest_positive = distances.masked_fill(~positives, float("-inf")).amax(dim=1)
    hardest_negative = distances.masked_fill(same, float("inf")).amin(dim=1)
    losses = F.relu(hardest_positive - hardest_negative + margin)
    return losses[valid].mean()


def supervised_contrastive(features: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """SupCon (Khosla et al., 2020, L_out): for each anchor i with positives P(i) (the other samples of its
    label), ``-1/|P(i)| sum_p log( exp(z_i.z_p / tau) / sum_{a != i} exp(z_i.z_a / tau) )`` with z the
    L2-normalised features; the mean over anchors that have a positive (0 if none has)."""
    z = F.normalize(features, dim=1)
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    logits = (z @ z.T / temperature).masked_fill(eye, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (labels.unsqueeze(0) == labels.unsqueeze(1)) & ~eye
    anchors = positives.any(dim=1)
    if not anchors.any():
        return features.sum() * 0.0
    mean_positive = log_prob.masked_fill(~positives, 0.0).sum(dim=1) / positives.sum(dim=1).clamp_min(1)
    return -mean_positive[anchors].mean()


class CenterLoss(nn.Module):
    """Center loss: ``mean_i ||f_i - c_{y_i}||^2`` with a learnable center per class, initialised N(0, 1)."""

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.centers = nn.Parameter(torch.randn(num_classes, dim))

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return (features - self.centers[labels]).pow(2).sum(dim=1).mean()


class OnlineLabelSmoothing(nn.Module):
    """Soft labels learned from the model's own correct predictions of the previous epoch.

    ``soft`` (classes x classes, row c = the target of class c) is used for the loss; ``accumulated`` /
    ``counts`` gather this epoch's statistics; :meth:`next_epoch` swaps them in. A class with no correct
    prediction in an epoch gets an all-zero target for the next one (its samples then train on the hard term
    only), as in X-TFCLIP's ``loss/online_label_smooth.py``. All three are buffers, so checkpoints carry them
    and a resumed run continues with the same soft labels.
    """

    def __init__(self, num_classes: int, alpha: float, smoothing: float) -> None:
        super().__init__()
        self.alpha = alpha
        uniform = torch.full((num_classes, num_classes), smoothing / max(1, num_classes - 1))
        uniform.fill_diagonal_(1.0 - smoothing)
        self.register_buffer("soft", uniform)
        self.register_buffer("accumulated", torch.zeros(num_classes, num_classes))
        self.register_buffer("counts", torch.zeros(num_classes))

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        log_probs = F.log_softmax(logits, dim=1)
        hard = F.nll_loss(log_probs, labels)
        soft = -(self.soft[labels] * log_probs).sum(dim=1).mean()
        if self.training:
            with torch.no_grad():
                probs = log_probs.exp()
                correct = probs.argmax(dim=1) == labels
                self.accumulated.index_add_(0, labels[correct], probs[correct].float())
                self.counts.index_add_(
                    0, labels[correct], torch.ones_like(labels[correct], dtype=torch.float)
                )
        return self.alpha * hard + (1 - self.alpha) * soft

    @torch.no_grad()
    def next_epoch(self) -> None:
        self.soft.copy_(self.accumulated / self.counts.clamp_min(1).unsqueeze(1))
        self.accumulated.zero_()
        self.counts.zero_()


class ReIDTask(nn.Module):
    """Turns model outputs into ``{"loss": total, "<term>": value, ...}``; owns stateful losses (OLS)."""

    def __init__(
        self,
        config: LossConfig,
        *,
        num_classes: int,
        parts: tuple[str, ...],
        seq_len: int,
        dims: Mapping[str, int] | None = None,
    ) -> None:
        """``dims`` (the model's feature width per part, ``TFCLIP.dims``) sizes the center-loss centers; it is
        needed only when ``config.center_weight > 0``."""
        super().__init__()
        self.config = config
        self.parts = parts
        self.seq_len = seq_len
        self.centers: nn.ModuleDict | None = None
        if config.center_weight > 0:
            if dims is None:
                raise ValueError(
                    "loss.center_weight > 0 needs the parts' feature widths: pass dims=model.dims"
                )
            self.centers = nn.ModuleDict({p: CenterLoss(num_classes, dims[p]) for p in parts})
        self.ols: OnlineLabelSmoothing | None = None
        self.ols_frame: OnlineLabelSmoothing | None = None
        if config.online_label_smoothing:
            self.ols = OnlineLabelSmoothing(num_classes, config.ols_alpha, config.label_smoothing)
            self.ols_frame = OnlineLabelSmoothing(num_classes, config.ols_alpha, config.label_smoothing)

    def _cross_entropy(
        self, logits: torch.Tensor, labels: torch.Tensor, ols: OnlineLabelSmoothing | None
    ) -> torch.Tensor:
        if ols is not None:
            return ols(logits, labels)
        return F.cross_entropy(logits, labels, label_smoothing=self.config.label_smoothing)

    def forward(self, outputs: dict[str, torch.Tensor], labels: torch.Tensor) -> dict[str, torch.Tensor]:
        c = self.config
        terms: dict[str, torch.Tensor] = {}
        if c.id_weight > 0:
            terms["id"] = c.id_weight * sum(
                self._cross_entropy(outputs[f"logits_{p}"].float(), labels, self.ols) for p in self.parts
            )
        if c.triplet_weight > 0:
            terms["triplet"] = c.triplet_weight * sum(
                batch_hard_triplet(outputs[f"feat_{p}"].float(), labels, c.triplet_margin) for p in self.parts
            )
        if c.v2m_weight > 0 and "v2m_logits" in outputs:
            terms["v2m"] = c.v2m_weight * self._cross_entropy(outputs["v2m_logits"].float(), labels, self.ols)
        if c.frame_weight > 0:
            frame_labels = labels.repeat_interleave(self.seq_len)
            frame = self._cross_entropy(outputs["frame_logits"].float(), frame_labels, self.ols_frame)
            terms["frame"] = c.frame_weight * frame / self.seq_len
        if self.centers is not None:
            terms["center"] = c.center_weight * sum(
                self.centers[p](outputs[f"feat_{p}"].float(), labels) for p in self.parts
            )
        if c.contrastive_weight > 0:
            contrastive = supervised_contrastive(
                outputs["feat_proj"].float(), labels, c.contrastive_temperature
            )
            terms["contrastive"] = c.contrastive_weight * contrastive
        if not terms:
            raise ValueError("every loss weight is 0: nothing to train")
        terms["loss"] = sum(terms.values())  # type: ignore[assignment]
        return terms

    def next_epoch(self) -> None:
        for ols in (self.ols, self.ols_frame):
            if ols is not None:
                ols.next_epoch()
