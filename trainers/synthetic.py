"""A trainer with no model: each epoch sleeps a fixed time and reports a deterministic learning curve.

It exists to measure and test the HPO engine itself (scheduling overhead, failures, resume) without the
cost or noise of real training. Its settings come from the study's ``trainer.overrides``:

* ``epoch_seconds`` (default 0): wall time one epoch sleeps;
* ``crash_epoch`` (default 2): the epoch at which a trial whose parameters set ``crash`` truthy raises
  ``RuntimeError``, and one that sets ``diverge`` truthy raises :class:`NonFiniteLossError`.

The objective ``val_map`` = q (1 - exp(-epoch f / 3)) where q in [0.2, 0.9] is a hash of the parameters and f
the budget's data fraction, so configurations differ, curves rise with epochs and with data, and ranks at low
fidelity predict ranks at high fidelity.
The checkpoint is a small JSON file holding the epoch; resuming checks it belongs to the same parameters.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trainers.atomic import atomic_write_text
from trainers.protocol import (
    CHECKPOINT_FILE,
    Budget,
    CheckpointError,
    NonFiniteLossError,
    Report,
    TrainerConfigError,
)


def quality(params: Mapping[str, Any]) -> float:
    """The plateau a configuration reaches: a deterministic function of its parameters in [0.2, 0.9]."""
    digest = hashlib.sha256(json.dumps(dict(params), sort_keys=True, default=str).encode()).digest()
    return 0.2 + 0.7 * int.from_bytes(digest[:8], "big") / 2**64


def curve(params: Mapping[str, Any], epoch: int, data_fraction: float = 1.0) -> float:
    return quality(params) * (1.0 - math.exp(-epoch * data_fraction / 3.0))


#: The synthetic trainer's settings (``trainer.overrides``) and what each must be.
SETTINGS = {"epoch_seconds": "a number of seconds >= 0", "crash_epoch": "an epoch >= 1"}


class SyntheticTrainer:
    name = "synthetic"

    def check(self, settings: Mapping[str, Any], params: Mapping[str, Any]) -> None:
        """Its settings are ``epoch_seconds`` and ``crash_epoch``; any parameters are accepted (they only
        seed the curve; ``crash`` / ``diverge`` make a trial fail on purpose)."""
        for key, value in (settings.get("overrides") or {}).items():
            if key not in SETTINGS:
                close = difflib.get_close_matches(str(key), SETTINGS, n=1)
                hint = f" (did you mean {close[0]}?)" if close else f" (settings: {', '.join(SETTINGS)})"
                raise TrainerConfigError(f"unknown key {key}{hint}", key=str(key))
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or (key == "epoch_seconds" and value < 0) or (key == "crash_epoch" and value < 1):
                raise TrainerConfigError(f"{key}: must be {SETTINGS[key]}, got {value!r}", key=str(key))

    def metric_names(self, settings: Mapping[str, Any]) -> tuple[str, ...]:
        return ("val_map",)

    def resolved_config(self, settings: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
        return {**{k: v for k, v in (settings.get("overrides") or {}).items()}, **params}

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
        overrides = dict(settings.get("overrides") or {})
        seconds = float(overrides.get("epoch_seconds", 0.0))
        crash_epoch = int(overrides.get("crash_epoch", 2))
        key = json.dumps(dict(params), sort_keys=True, default=str)
        start = 0
        if resume_from is not None:
            try:
                state = json.loads(Path(resume_from).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                raise CheckpointError(f"{resume_from}: cannot read checkpoint") from None
            if state.get("params") != key:
                raise CheckpointError(f"{resume_from}: checkpoint was made with a different configuration")
            start = int(state["epoch"])
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        path = checkpoint_dir / CHECKPOINT_FILE
        for epoch in range(start + 1, budget.epochs + 1):
            time.sleep(seconds)
            if epoch == crash_epoch and params.get("crash"):
                raise RuntimeError(f"synthetic crash at epoch {epoch}")
            if epoch == crash_epoch and params.get("diverge"):
                raise NonFiniteLossError(epoch, 0, {"loss": float("nan")})
            atomic_write_text(path, json.dumps({"epoch": epoch, "params": key}))
            value = curve(params, epoch, budget.data_fraction)
            report({"epoch": epoch, "val_map": value, "checkpoint": str(path)})
