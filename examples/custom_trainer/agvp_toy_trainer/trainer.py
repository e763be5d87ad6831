"""The toy trainer: the agvp-hpo trainer protocol (``trainers.protocol.Trainer``) around a plain PyTorch loop.

Settings are flat dotted keys, from the preset (``trainer.preset``), then ``trainer.overrides``, then the
trial's searched parameters:

* ``optim.lr``, ``optim.momentum``, ``optim.weight_decay``, ``optim.batch_size``: SGD;
* ``model.hidden``, ``model.depth``, ``model.dropout``: the MLP (``depth`` hidden layers of ``hidden`` units);
* ``problem.samples``, ``problem.features``, ``problem.classes``, ``problem.noise``,
  ``problem.val_fraction``, ``problem.seed``: the generated data set (the presets differ here only);
* ``seed`` (weight initialisation, batch order, dropout), ``threads`` (torch CPU threads).

Each epoch reports ``val_acc`` (the objective), ``val_loss`` and ``train_loss``. The checkpoint holds the
model, the optimizer and the epoch; every epoch draws its batch order and dropout from a generator seeded by
(``seed``, epoch), so a resumed run continues exactly where the stopped one was.
"""

from __future__ import annotations

import difflib
import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from trainers.protocol import (
    CHECKPOINT_FILE,
    Budget,
    CheckpointError,
    NonFiniteLossError,
    Report,
    TrainerConfigError,
)

#: Data-set settings per preset (``trainer.preset``).
PRESETS: dict[str, dict[str, Any]] = {
    "tiny-cpu": {"problem.samples": 512, "problem.features": 8, "problem.classes": 4, "problem.noise": 2.0},
    "hard": {"problem.samples": 1024, "problem.features": 16, "problem.classes": 8, "problem.noise": 3.0},
}
#: Every other setting's default.
DEFAULTS: dict[str, Any] = {
    "optim.lr": 0.05,
    "optim.momentum": 0.9,
    "optim.weight_decay": 0.0,
    "optim.batch_size": 32,
    "model.hidden": 32,
    "model.depth": 1,
    "model.dropout": 0.0,
    "problem.val_fraction": 0.25,
    "problem.seed": 0,
    "seed": 0,
    "threads": 1,
}


def _positive(value: float) -> bool:
    return value > 0


#: key -> (integer?, the rule, its text).
RULES: dict[str, tuple[bool, Callable[[float], bool], str]] = {
    "optim.lr": (False, _positive, "a number > 0"),
    "optim.momentum": (False, lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "optim.weight_decay": (False, lambda v: v >= 0, "a number >= 0"),
    "optim.batch_size": (True, lambda v: v >= 1, "an integer >= 1"),
    "model.hidden": (True, lambda v: 1 <= v <= 4096, "an integer in [1, 4096]"),
    "model.depth": (True, lambda v: 1 <= v <= 8, "an integer in [1, 8]"),
    "model.dropout": (False, lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "problem.samples": (True, lambda v: 4 <= v <= 1_000_000, "an integer in [4, 1000000]"),
    "problem.features": (True, lambda v: 1 <= v <= 1024, "an integer in [1, 1024]"),
    "problem.classes": (True, lambda v: 2 <= v <= 1000, "an integer in [2, 1000]"),
    "problem.noise": (False, lambda v: v >= 0, "a number >= 0"),
    "problem.val_fraction": (False, lambda v: 0 < v < 1, "a number in (0, 1)"),
    "problem.seed": (True, lambda v: v >= 0, "an integer >= 0"),
    "seed": (True, lambda v: v >= 0, "an integer >= 0"),
    "threads": (True, lambda v: 1 <= v <= 256, "an integer in [1, 256]"),
}
KEYS = tuple(RULES)


def _flat(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{optim: {lr: 0.1}}`` and ``{optim.lr: 0.1}`` alike -> ``{"optim.lr": 0.1}``."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def resolve(settings: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """The checked, flat configuration: preset, then defaults, then overrides, then parameters. Raises
    :class:`TrainerConfigError` naming the key (or ``preset ...`` for an unknown preset)."""
    preset = settings.get("preset") or "tiny-cpu"
    if preset not in PRESETS:
        close = difflib.get_close_matches(str(preset), PRESETS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise TrainerConfigError(f"preset {preset!r} is not one of {', '.join(PRESETS)}{hint}")
    for unused in ("data", "weights"):
        if settings.get(unused) is not None:
            raise TrainerConfigError(
                f"trainer.{unused}: the toy trainer generates its data and starts from random weights; "
                f"leave trainer.{unused} unset"
            )
    chosen = {**_flat(settings.get("overrides") or {}), **_flat(params)}
    for key, value in chosen.items():
        if key not in RULES:
            close = difflib.get_close_matches(key, KEYS, n=1)
            hint = f"(did you mean {close[0]}?)" if close else f"(keys: {', '.join(KEYS)})"
            raise TrainerConfigError(f"unknown key {key} {hint}", key=key)
        integer, rule, text = RULES[key]
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if integer and isinstance(value, float) and value.is_integer():
            value = chosen[key] = int(value)
        if not number or (integer and not isinstance(value, int)) or not math.isfinite(value):
            raise TrainerConfigError(f"{key}: must be {text}, got {value!r}", key=key)
        if not rule(value):
            raise TrainerConfigError(f"{key}: must be {text}, got {value!r}", key=key)
    config = {**PRESETS[preset], **DEFAULTS, **chosen}
    n_val = max(1, round(config["problem.val_fraction"] * config["problem.samples"]))
    n_train = config["problem.samples"] - n_val
    if n_train < 1:
        raise TrainerConfigError(
            f"problem.val_fraction: leaves no training sample of {config['problem.samples']}",
            key="problem.val_fraction",
        )
    if (batch := config["optim.batch_size"]) > n_train:
        raise TrainerConfigError(
            f"optim.batch_size: must be at most the {n_train} training samples, got {batch}",
            key="optim.batch_size",
        )
    return config


def _fingerprint(config: Mapping[str, Any]) -> str:
    """What a checkpoint must match to be resumed (threads change no result but the last bits)."""
    return json.dumps({k: v for k, v in config.items() if k != "threads"}, sort_keys=True)


class ToyTrainer:
    """A small MLP on a seeded synthetic classification problem (see the module docstring)."""

    name = "toy"

    def check(self, settings: Mapping[str, Any], params: Mapping[str, Any]) -> None:
        resolve(settings, params)

    def metric_names(self, settings: Mapping[str, Any]) -> tuple[str, ...]:
        return ("val_acc", "val_loss", "train_loss")

    def resolved_config(self, settings: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
        return resolve(settings, params)

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
        import torch  # here, not at import: validating a study needs no torch
        from torch import nn

        from agvp_toy_trainer.problem import make_problem

        config = resolve(settings, params)
        torch.set_num_threads(config["threads"])
        problem = make_problem(
            samples=config["problem.samples"],
            features=config["problem.features"],
            classes=config["problem.classes"],
            noise=config["problem.noise"],
            val_fraction=config["problem.val_fraction"],
            seed=config["problem.seed"],
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config["seed"])
            layers: list[nn.Module] = []
            width, hidden = config["problem.features"], config["model.hidden"]
            for _ in range(config["model.depth"]):
                layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(config["model.dropout"])]
                width = hidden
            model = nn.Sequential(*layers, nn.Linear(width, config["problem.classes"]))
        optimizer = torch.optim.SGD(
            model.parameters(),
            lr=config["optim.lr"],
            momentum=config["optim.momentum"],
            weight_decay=config["optim.weight_decay"],
        )
        fingerprint = _fingerprint(config)
        start = 0
        if resume_from is not None:
            try:
                state = torch.load(resume_from, map_location="cpu", weights_only=True)
            except (OSError, RuntimeError, ValueError) as error:
                raise CheckpointError(f"{resume_from}: cannot read checkpoint ({error})") from None
            if state.get("config") != fingerprint:
                raise CheckpointError(f"{resume_from}: checkpoint was made with a different configuration")
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            start = int(state["epoch"])
        train_x, train_y = problem.train_subset(budget.data_fraction)
        loss_fn = nn.CrossEntropyLoss()
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        path = checkpoint_dir / CHECKPOINT_FILE
        batch = config["optim.batch_size"]
        for epoch in range(start + 1, budget.epochs + 1):
            model.train()
            total, steps = 0.0, 0
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config["seed"] * 1_000_003 + epoch)  # batch order and dropout of this epoch
                order = torch.randperm(len(train_y))
                for step, first in enumerate(range(0, len(order), batch)):
                    index = order[first : first + batch]
                    loss = loss_fn(model(train_x[index]), train_y[index])
                    if not torch.isfinite(loss):
                        raise NonFiniteLossError(epoch, step, {"cross_entropy": loss.item()})
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    total, steps = total + loss.item(), steps + 1
            model.eval()
            with torch.no_grad():
                logits = model(problem.val_x)
                val_loss = float(loss_fn(logits, problem.val_y))
                val_acc = float((logits.argmax(dim=1) == problem.val_y).float().mean())
            state = {
                "epoch": epoch,
                "config": fingerprint,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
            }
            partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            torch.save(state, partial)
            os.replace(partial, path)  # atomic: a reader sees the old checkpoint or the new one
            report(
                {
                    "epoch": epoch,
                    "val_acc": val_acc,
                    "val_loss": val_loss,
                    "train_loss": total / steps,
                    "checkpoint": str(path),
                }
            )
