"""The one protocol every trainer implements for the HPO layer, and the registry of trainers by name.

A study file's ``trainer`` section (``name``, ``preset``, ``data``, ``weights``, ``overrides``) plus one
trial's searched parameters (dotted keys, e.g. ``optim.lr``) fully describe a training run::

    trainer = get_trainer(name)
    trainer.fit(settings, params, budget=Budget(epochs=9), checkpoint_dir=..., resume_from=..., report=...)

``fit`` trains up to ``budget.epochs`` epochs *in total* (a resumed run continues from the checkpoint's
epoch) on ``budget.data_fraction`` of the training identities (the epochs it trains now; a resumed run may
have trained its earlier epochs on a smaller fraction), writes ``checkpoint_dir/checkpoint.pt`` after each
epoch and then calls ``report(result)`` with a flat dict holding at least ``epoch`` (1-based, absolute),
the objective metric and ``checkpoint`` (the path just written). A non-finite loss raises
:class:`NonFiniteLossError`. Nothing here knows about Ray.

Before a study spends anything, the HPO layer asks the trainer what it would make of the study's settings
and any point of the search space (``check``: raises :class:`TrainerConfigError` naming the key and the
rule, exactly as ``fit`` would refuse it) and which metrics it reports (``metric_names``), so a new trainer
gets the same up-front validation as the built-in ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from trainers.errors import AgvpError

Report = Callable[[dict[str, Any]], None]
#: The file a trainer writes in its checkpoint folder after every epoch.
CHECKPOINT_FILE = "checkpoint.pt"


class CheckpointError(AgvpError):
    """A checkpoint is missing, unreadable, or belongs to a different configuration."""


class NonFiniteLossError(AgvpError):
    """The loss became NaN or infinite; the HPO layer records the trial as failed and does not retry it."""

    def __init__(self, epoch: int, step: int, terms: dict[str, float]) -> None:
        self.epoch, self.step, self.terms = epoch, step, terms
        super().__init__(f"non-finite loss at epoch {epoch}, step {step}: {terms}")


class TrainerConfigError(AgvpError):
    """A trainer refuses settings or parameters: ``key`` is the dotted key at fault (None for a rule between
    keys, which the message names)."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Budget:
    """What one job of a trial may spend: train up to ``epochs`` epochs in total, the epochs of this job on
    ``data_fraction`` of the training identities (a nested subset: a larger fraction contains a smaller one,
    the same identities for every configuration of a study, fixed by the trainer's own seed)."""

    epochs: int
    data_fraction: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"budget epochs is {self.epochs!r}, but must be an integer >= 1")
        if not (math.isfinite(self.data_fraction) and 0.0 < self.data_fraction <= 1.0):
            raise ValueError(f"budget data_fraction is {self.data_fraction!r}, but must be in (0, 1]")

    def to_dict(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "data_fraction": self.data_fraction}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Budget:
        return cls(epochs=int(raw["epochs"]), data_fraction=float(raw.get("data_fraction", 1.0)))


class Trainer(Protocol):
    name: str

    def check(self, settings: Mapping[str, Any], params: Mapping[str, Any]) -> None:
        """Raise :class:`TrainerConfigError` if ``fit`` would refuse these settings and parameters."""
        ...

    def metric_names(self, settings: Mapping[str, Any]) -> tuple[str, ...]:
        """The metrics every report carries (a study's objective must be one of them)."""
        ...

    def resolved_config(self, settings: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
        """The configuration ``fit`` would train with, as flat dotted keys (what ``validate`` shows)."""
        ...

    def fit(
        self,
        settings: Mapping[str, Any],
        params: Mapping[str, Any],
        *,
        budget: Budget,
        checkpoint_dir: Path,
        resume_from: Path | None,
        report: Report,
    ) -> None: ...


#: Trainers by name, as import paths: a trainer module is loaded only when its trainer is used (the HPO
#: engine validates studies against a trainer without importing torch).
TRAINERS: dict[str, str] = {
    "tfclip": "trainers.tfclip.trial:TFCLIPTrainer",
    "synthetic": "trainers.synthetic:SyntheticTrainer",
}
#: Names a study file's ``trainer.name`` may use.
TRAINER_NAMES = tuple(TRAINERS)


def get_trainer(name: str) -> Trainer:
    """The trainer registered as ``name`` (``tfclip`` or ``synthetic``)."""
    import importlib

    if name not in TRAINERS:
        raise AgvpError(f"trainer is {name!r}, but must be one of {', '.join(TRAINER_NAMES)}")
    module, _, attribute = TRAINERS[name].partition(":")
    trainer: Trainer = getattr(importlib.import_module(module), attribute)()
    return trainer
