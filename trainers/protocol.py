"""The one protocol every trainer implements for the HPO layer, and the registry of trainers by name.

A study file's ``trainer`` section (``name``, ``preset``, ``data``, ``weights``, ``overrides``) plus one
trial's searched parameters (dotted keys, e.g. ``optim.lr``) fully describe a training run::

    trainer = get_trainer(name)
    trainer.fit(settings, params, max_epochs=9, checkpoint_dir=..., resume_from=..., report=...)

``fit`` trains up to ``max_epochs`` epochs *in total* (a resumed run continues from the checkpoint's epoch),
writes ``checkpoint_dir/checkpoint.pt`` after each epoch and then calls ``report(result)`` with a flat dict
holding at least ``epoch`` (1-based, absolute), the objective metric and ``checkpoint`` (the path just
written). A non-finite loss raises :class:`NonFiniteLossError`. Nothing here knows about Ray.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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


class Trainer(Protocol):
    name: str

    def fit(
        self,
        settings: Mapping[str, Any],
        params: Mapping[str, Any],
        *,
        max_epochs: int,
        checkpoint_dir: Path,
        resume_from: Path | None,
        report: Report,
    ) -> None: ...


def get_trainer(name: str) -> Trainer:
    """The trainer registered as ``name`` (``tfclip`` or ``synthetic``)."""
    if name == "tfclip":
        from trainers.tfclip.trial import TFCLIPTrainer

        return TFCLIPTrainer()
    if name == "synthetic":
        from trainers.synthetic import SyntheticTrainer

        return SyntheticTrainer()
    raise AgvpError(f"trainer is {name!r}, but must be one of {', '.join(TRAINER_NAMES)}")


#: Names a study file's ``trainer.name`` may use.
TRAINER_NAMES = ("tfclip", "synthetic")
