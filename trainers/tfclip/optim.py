"""Optimiser, parameter groups, learning-rate schedule and gradient centralisation.

Parameter groups follow TF-CLIP's ``solver/make_optimizer_prompt.py`` (``make_optimizer_2stage``): every
parameter whose name contains "bias" (attention ``in_proj_bias`` included) gets ``bias_lr_factor`` x the base
lr and ``weight_decay_bias``; the classifiers of ``classifier_lr_parts`` (TF-CLIP: the TMD one only) get
``classifier_lr_factor`` x on top. The schedule is a per-epoch multiplier as in TF-CLIP's
``solver/lr_scheduler.py`` (``WarmupMultiStepLR``): a linear warm-up from ``warmup_factor`` over
``warmup_epochs`` times the multistep decay, or a cosine over the rest of ``epochs`` (the planned budget, not
a run's max_epochs - see :mod:`trainers.tfclip.config`).

Parameters of the task object (the center-loss centers) join the same optimiser with the base lr (scheduled
like every group) and no weight decay: reid-strong-baseline gives them an SGD of their own (lr 0.5, never
decayed); one optimiser keeps checkpoints and exact resume as they are.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from trainers.tfclip.config import OptimConfig

if TYPE_CHECKING:
    from trainers.tfclip.model import TFCLIP


def parameter_groups(model: TFCLIP, config: OptimConfig) -> list[dict]:
    """One group per trainable parameter of ``model``, with its lr, weight decay and name."""
    large_ids = {id(p) for p in model.classifier_parameters(config.classifier_lr_parts)}
    groups = []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        lr, decay = config.lr, config.weight_decay
        if "bias" in name:
            lr, decay = config.lr * config.bias_lr_factor, config.weight_decay_bias
        if id(parameter) in large_ids:
            lr *= config.classifier_lr_factor
        groups.append(
            {"params": [parameter], "lr": lr, "initial_lr": lr, "weight_decay": decay, "name": name}
        )
    return groups


def task_groups(task: nn.Module, config: OptimConfig) -> list[dict]:
    """One group per trainable parameter of the task object (loss centers): base lr, no weight decay."""
    return [
        {"params": [p], "lr": config.lr, "initial_lr": config.lr, "weight_decay": 0.0, "name": f"task.{name}"}
        for name, p in task.named_parameters()
        if p.requires_grad
    ]


def build_optimizer(
    model: TFCLIP, config: OptimConfig, *, task: nn.Module | None = None
) -> torch.optim.Optimizer:
    """The optimiser over the model's parameter groups and, when given, the task object's (loss centers)."""
    groups = parameter_groups(model, config) + (task_groups(task, config) if task is not None else [])
    if config.name == "adam":
        return torch.optim.Adam(groups, lr=config.lr)
    if config.name == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)


def lr_factor(epoch: int, config: OptimConfig) -> float:
    """Multiplier of the base lr during ``epoch`` (0-based)."""
    warmup = 1.0
    if epoch < config.warmup_epochs:
        progress = epoch / config.warmup_epochs
        warmup = config.warmup_factor + (1 - config.warmup_factor) * progress
    if config.schedule == "multistep":
        return warmup * config.gamma ** sum(epoch >= m for m in config.milestones)
    if epoch < config.warmup_epochs:
        return warmup
    span = max(1, config.epochs - config.warmup_epochs)
    progress = min(1.0, (epoch - config.warmup_epochs) / span)
    return 0.5 * (1 + math.cos(math.pi * progress))


def set_epoch_lr(optimizer: torch.optim.Optimizer, epoch: int, config: OptimConfig) -> float:
    """Set every group's lr for ``epoch``; returns the multiplier. Stateless: resume needs only the epoch."""
    factor = lr_factor(epoch, config)
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor
    return factor


@torch.no_grad()
def centralize_gradients(model: nn.Module) -> None:
    """Gradient centralisation (Yong et al., ECCV 2020): remove the mean of each weight gradient over all
    axes but the first (output) one, for weights with more than one axis."""
    for parameter in model.parameters():
        grad = parameter.grad
        if grad is not None and grad.ndim > 1:
            grad.sub_(grad.mean(dim=tuple(range(1, grad.ndim)), keepdim=True))
