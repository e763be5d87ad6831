"""The TF-CLIP trainer behind :mod:`trainers.protocol`: a study's trainer section plus one trial's
parameters become a :class:`TrainerConfig`, trained by :func:`trainers.engine.fit`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trainers.protocol import Report
from trainers.tfclip.config import TrainerConfig, resolve_config


def trial_config(settings: Mapping[str, Any], params: Mapping[str, Any]) -> TrainerConfig:
    """Preset <- ``settings["overrides"]`` <- searched ``params`` <- data root and weights."""
    overrides: dict[str, Any] = dict(settings.get("overrides") or {})
    overrides.update(params)
    if settings.get("data") is not None:
        overrides["data.root"] = str(settings["data"])
    if settings.get("weights") is not None:
        overrides["model.weights"] = str(settings["weights"])
    return resolve_config({"preset": settings.get("preset", "tfclip")}, overrides=flatten_dotted(overrides))


def flatten_dotted(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Flatten nested override mappings ({optim: {lr: 1}}) into dotted keys ({optim.lr: 1})."""
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        if isinstance(value, Mapping):
            for inner, leaf in flatten_dotted(value).items():
                flat[f"{key}.{inner}"] = leaf
        else:
            flat[key] = value
    return flat


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
