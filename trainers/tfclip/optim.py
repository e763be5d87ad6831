"""Optimiser, parameter groups, learning-rate schedule and gradient centralisation.

Parameter groups follow the strong ReID baselines: biases get ``bias_lr_factor`` x the base lr and their own
weight decay; classifier weights get ``classifier_lr_factor`` x. The schedule is a per-epoch multiplier: a
linear warm-up from ``warmup_factor`` over ``warmup_epochs``, then multistep decay or a cosine over the rest
of ``epochs`` (the planned budget, not a run's max_epochs - see :mod:`trainers.tfclip.config`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from trainers.tfclip.config import OptimConfig


def parameter_groups(model: nn.Module, classifier: list[nn.Parameter], config: OptimConfig) -> list[dict]:
    classifier_ids = {id(p) for p in classifier}
    groups = []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        lr, decay = config.lr, config.weight_decay
        if name.endswith(".bias"):
            lr, decay = config.lr * config.bias_lr_factor, config.weight_decay_bias
        if id(parameter) in classifier_ids:
            lr = config.lr * config.classifier_lr_factor
        groups.append(
            {"params": [parameter], "lr": lr, "initial_lr": lr, "weight_decay": decay, "name": name}
        )
    return groups


def build_optimizer(groups: list[dict], config: OptimConfig) -> torch.optim.Optimizer:
    if config.name == "adam":
        return torch.optim.Adam(groups, lr=config.lr)
    if config.name == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)


def lr_factor(epoch: int, config: OptimConfig) -> float:
    """Multiplier of the base lr during ``epoch`` (0-based)."""
    if epoch < config.warmup_epochs:
        progress = epoch / config.warmup_epochs
        return config.warmup_factor + (1 - config.warmup_factor) * progress
    if config.schedule == "multistep":
        return config.gamma ** sum(epoch >= m for m in config.milestones)
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
