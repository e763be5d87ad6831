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

``trainer.name`` is a built-in (:data:`TRAINERS`), the name of an installed package's entry point in group
:data:`ENTRY_POINT_GROUP`, or an import path ``module:attribute`` (:func:`get_trainer`); the object must be
importable wherever trials run (every Ray node).
"""

from __future__ import annotations

import difflib
import importlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import ModuleType
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
    """What the HPO layer needs of a trainer (the built-in ones and your own: README, "Your own trainer").

    ``settings`` is the study's ``trainer`` section as a plain dict (``name``, ``preset``, ``data`` and
    ``weights`` as absolute paths or None, ``overrides`` as the study file wrote them); ``params`` one trial's
    searched parameters (dotted keys, e.g. ``optim.lr``). Every method may be called in the driver and on any
    Ray worker, so the object must be importable there and keep no state between calls.
    """

    #: A short name for messages (informational: studies name a trainer by ``trainer.name``).
    name: str

    def check(self, settings: Mapping[str, Any], params: Mapping[str, Any]) -> None:
        """Raise :class:`TrainerConfigError` if ``fit`` would refuse these settings and parameters: ``key``
        the dotted key at fault, a message ``unknown key K (did you mean ...)`` for a key it does not know
        (``agvp-hpo validate`` then names ``space.K`` or ``trainer.overrides.K``), ``preset P ...`` for an
        unknown preset, else the rule. Called for many points of the space before a study starts: cheap, no
        training, no data loading beyond what the rule needs."""
        ...

    def metric_names(self, settings: Mapping[str, Any]) -> tuple[str, ...]:
        """The metrics every report carries (a study's ``objective.metric`` must be one of them)."""
        ...

    def resolved_config(self, settings: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
        """The configuration ``fit`` would train with, as flat dotted keys (what ``validate`` shows; with
        ``prior.from_preset`` the preset's value of each searched key)."""
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
    ) -> None:
        """Train up to ``budget.epochs`` epochs in total on ``budget.data_fraction`` of the training data.

        ``resume_from`` (None for a fresh start) is a checkpoint this trainer wrote for the same settings and
        parameters: continue at the epoch after the one it holds, exactly as if the run had not stopped
        (model, optimizer, schedule, random streams). After each epoch write ``checkpoint_dir /
        CHECKPOINT_FILE`` (atomically: a reader never sees half a file), then call ``report`` with a flat
        dict: ``epoch`` (1-based, absolute), every metric of :meth:`metric_names`, and ``checkpoint`` (the
        path just written; the HPO layer links it away before the next epoch overwrites it). ``report`` may
        not return when the scheduler pauses or stops the trial. Raise :class:`NonFiniteLossError` for a
        NaN/inf loss (not retried), :class:`CheckpointError` for a checkpoint of another configuration."""
        ...


#: Trainers by name, as import paths: a trainer module is loaded only when its trainer is used (the HPO
#: engine validates studies against a trainer without importing torch).
TRAINERS: dict[str, str] = {
    "tfclip": "trainers.tfclip.trial:TFCLIPTrainer",
    "synthetic": "trainers.synthetic:SyntheticTrainer",
}
#: Names a study file's ``trainer.name`` may use.
TRAINER_NAMES = tuple(TRAINERS)


#: The entry-point group an installed package registers its trainers under (``pyproject.toml``:
#: ``[project.entry-points."agvp_hpo.trainers"] toy = "agvp_toy_trainer:ToyTrainer"``).
ENTRY_POINT_GROUP = "agvp_hpo.trainers"
#: The methods an object must have to be used as a trainer.
PROTOCOL_METHODS = ("check", "metric_names", "resolved_config", "fit")
_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_IMPORT_PATH_RE = re.compile(rf"^{_IDENTIFIER}(\.{_IDENTIFIER})*:{_IDENTIFIER}(\.{_IDENTIFIER})*$")
_ENTRY_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class TrainerLoadError(AgvpError):
    """``trainer.name`` names no usable trainer: unknown, not importable, or not implementing the protocol."""


def trainer_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a trainer name (syntax only: nothing is imported), or None. A name is a
    built-in (``tfclip``, ``synthetic``), an entry-point name (letters, digits, ``_ . -``) or an import path
    ``module.sub:attribute`` (Python identifiers, the PyPA entry-point object-reference form)."""
    if name in TRAINERS:
        return None
    if ":" in name:
        if _IMPORT_PATH_RE.match(name):
            return None
        return f"is {name!r}, but an import path must be module:attribute (e.g. my_pkg.train:MyTrainer)"
    if _ENTRY_NAME_RE.match(name):
        return None
    return (
        f"is {name!r}, but must be a built-in trainer ({', '.join(TRAINER_NAMES)}), an entry-point name "
        "(letters, digits, _ . -) or an import path module:attribute"
    )


def installed_trainers() -> dict[str, metadata.EntryPoint]:
    """The entry points of group :data:`ENTRY_POINT_GROUP` on ``sys.path``, by name (the first of a name)."""
    found: dict[str, metadata.EntryPoint] = {}
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(entry.name, entry)
    return found


def get_trainer(name: str) -> Trainer:
    """The trainer ``name`` names, resolved in this order: a built-in (``tfclip``, ``synthetic``; they win
    over an entry point of the same name), an installed entry point of group :data:`ENTRY_POINT_GROUP`, an
    import path ``module:attribute``. The object found may be a class (instantiated with no arguments) or
    an instance; it must have the :class:`Trainer` methods. Raises :class:`TrainerLoadError` (one line) for
    an unknown name, a module that cannot be imported, a missing attribute, or an object that is no trainer.
    """
    if name in TRAINERS:
        target, origin = TRAINERS[name], "built-in"
    else:
        entry = installed_trainers().get(name)
        if entry is not None:
            # module and attribute of the object reference (any "[extras]" after it dropped)
            target, origin = f"{entry.module}:{entry.attr}", f"entry point {name} = {entry.value}"
        elif ":" in name and trainer_name_problem(name) is None:
            target, origin = name, "import path"
        else:
            raise TrainerLoadError(_unknown(name))
    return _as_trainer(_load(target, name, origin), name, origin)


def _unknown(name: str) -> str:
    installed = sorted(installed_trainers())
    if ":" in name:  # only a malformed import path gets here
        return f"trainer {trainer_name_problem(name)}"
    close = difflib.get_close_matches(name, [*TRAINER_NAMES, *installed], n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    where = ", ".join(installed) if installed else "none installed"
    return (
        f"trainer is {name!r}, but must be one of {', '.join(TRAINER_NAMES)}, an entry point of group "
        f"{ENTRY_POINT_GROUP} ({where}) or an import path module:attribute{hint}"
    )


def _load(target: str, name: str, origin: str) -> Any:
    module_name, _, attribute = target.partition(":")
    module_name, attribute = module_name.strip(), attribute.strip()
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # ImportError, or the module itself raised while importing
        problem = " ".join(str(error).split()) or type(error).__name__
        raise TrainerLoadError(
            f"trainer {name!r} ({origin}): cannot import module {module_name!r} "
            f"({type(error).__name__}: {problem}); it must be importable on every node (installed, or on "
            "PYTHONPATH)"
        ) from None
    found: Any = module
    for part in attribute.split("."):
        if not hasattr(found, part):
            names = [n for n in dir(found) if not n.startswith("_")]
            close = difflib.get_close_matches(part, names, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise TrainerLoadError(
                f"trainer {name!r} ({origin}): module {module_name!r} has no attribute {attribute!r}{hint}"
            )
        found = getattr(found, part)
    return found


def _as_trainer(found: Any, name: str, origin: str) -> Trainer:
    if isinstance(found, type):
        what = f"class {found.__qualname__}"
    elif isinstance(found, ModuleType):
        what = f"module {found.__name__}"
    else:
        what = f"{getattr(found, '__qualname__', None) or 'an instance of ' + type(found).__qualname__}"
    if isinstance(found, type):
        try:
            found = found()
        except Exception as error:
            problem = " ".join(str(error).split()) or type(error).__name__
            raise TrainerLoadError(
                f"trainer {name!r} ({origin}): {what} cannot be created with no arguments "
                f"({type(error).__name__}: {problem})"
            ) from None
    missing = [method for method in PROTOCOL_METHODS if not callable(getattr(found, method, None))]
    if missing:
        raise TrainerLoadError(
            f"trainer {name!r} ({origin}): {what} is not a trainer: no method {', '.join(missing)} "
            f"(a trainer has {', '.join(PROTOCOL_METHODS)})"
        )
    trainer: Trainer = found
    return trainer
