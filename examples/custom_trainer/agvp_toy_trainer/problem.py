"""The toy problem: Gaussian class clusters in a few dimensions, bent by a sine so a linear model is not
enough, split into a training and a validation set. Fully determined by its settings and seed."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Problem:
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor

    def train_subset(self, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``fraction`` of the (already shuffled) training set: a larger fraction contains a smaller
        one, the same samples for every configuration."""
        count = max(1, math.ceil(fraction * len(self.train_y)))
        return self.train_x[:count], self.train_y[:count]


def make_problem(
    *, samples: int, features: int, classes: int, noise: float, val_fraction: float, seed: int
) -> Problem:
    generator = torch.Generator().manual_seed(seed)
    centers = 2.0 * torch.randn(classes, features, generator=generator)
    labels = torch.arange(samples) % classes
    labels = labels[torch.randperm(samples, generator=generator)]
    points = centers[labels] + noise * torch.randn(samples, features, generator=generator)
    points = points + torch.sin(2.0 * points)
    n_val = max(1, round(val_fraction * samples))
    return Problem(points[n_val:], labels[n_val:], points[:n_val], labels[:n_val])
