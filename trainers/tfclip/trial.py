"""The TF-CLIP trainer behind :mod:`trainers.protocol`: a study's trainer section plus one trial's
parameters become a :class:`TrainerConfig`, trained by :func:`trainers.engine.fit`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trainers.protocol import Report
from trainers.tfclip.config import trial_config


class TFCLIPTrainer:
    name = "tfclip"

    def fit(
        self,
        settings: Mapping[str, Any],
        params: Mapping[str, Any],
        *,
        max_epochs: int,
        checkpoint_dir: Path,
        resume_from: Path | None,
        report: Report,
    ) -> None:
        from trainers.engine import fit

        fit(
            trial_config(settings, params),
            max_epochs=max_epochs,
            checkpoint_dir=checkpoint_dir,
            resume_from=resume_from,
            report=report,
        )
