"""The TF-CLIP trainer behind :mod:`trainers.protocol`: a study's trainer section plus one trial's
parameters become a :class:`TrainerConfig`, trained by :func:`trainers.engine.fit`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trainers.protocol import Budget, Report
from trainers.tfclip.config import flatten_dotted, trial_config

#: What every report of the TF-CLIP trainer holds besides ``epoch`` and ``checkpoint`` (trainers/engine.py).
METRICS = (
    "val_map",
    "val_r1",
    "val_a2g_map",
    "val_a2g_r1",
    "val_g2a_map",
    "val_g2a_r1",
    "train_loss",
    "lr",
    "train_seconds",
    "eval_seconds",
)


class TFCLIPTrainer:
    name = "tfclip"

    def check(self, settings: Mapping[str, Any], params: Mapping[str, Any]) -> None:
        trial_config(settings, params)  # raises ConfigError naming the key

    def metric_names(self, settings: Mapping[str, Any]) -> tuple[str, ...]:
        return METRICS

    def resolved_config(self, settings: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
        return flatten_dotted(trial_config(settings, params).model_dump(mode="json"))

    def fit(
        self,
        settings: Mapping[str, Any],
        params: Mapping[str, Any],
        *,
        budget: Budget,
        checkpoint_dir: Path,
        resume_from: Path | None,
        report: Report,
    ) -> None:
        from trainers.engine import fit

        fit(
            trial_config(settings, params),
            max_epochs=budget.epochs,
            data_fraction=budget.data_fraction,
            checkpoint_dir=checkpoint_dir,
            resume_from=resume_from,
            report=report,
        )
