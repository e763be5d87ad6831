"""An example agvp-hpo trainer: a small MLP trained with SGD on a seeded synthetic classification problem.

Registered as entry point ``toy`` of group ``agvp_hpo.trainers`` (``pyproject.toml``); the import path
``agvp_toy_trainer:ToyTrainer`` names the same trainer.
"""

from agvp_toy_trainer.trainer import DEFAULTS, PRESETS, ToyTrainer

__all__ = ["DEFAULTS", "PRESETS", "ToyTrainer"]
