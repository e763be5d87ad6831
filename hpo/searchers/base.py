"""What a scheduler core needs from a searcher, and the pieces every searcher shares.

A searcher proposes configurations and learns from results; it never decides how long a trial runs (that is
the scheduler core's job, see :mod:`hpo.schedulers`). Searchers always *minimise*: the core converts the
objective to a loss (``-value`` when the study maximises) before calling :meth:`Searcher.observe`, so no
searcher needs to know the study's mode. Every result carries the resource (epochs) at which it was
measured, so a multi-fidelity searcher never mixes fidelities by accident (REFERENCE_HPO.md: Ray's
OptunaSearch does).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Searcher(Protocol):
    """Proposes configurations; learns from (config, resource, loss) observations.

    Optional attribute ``prior``: the user's prior (:class:`hpo.searchers.prior.Prior`) when the searcher
    uses one (its first suggestion is then the prior's configuration, and Hyperband evaluates it at the full
    budget first); read it with :func:`searcher_prior`."""

    def suggest(self, config_id: int, budget_fraction: float | None = None) -> dict[str, Any]:
        """A new configuration for trial ``config_id`` (ids are 0, 1, 2, ... in start order), whose first job
        trains ``budget_fraction`` of the full budget (None when the scheduler does not say)."""
        ...

    def observe(self, config_id: int, config: Mapping[str, Any], resource: int, loss: float) -> None:
        """Trial ``config_id`` measured ``loss`` (lower is better) after ``resource`` epochs."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this searcher is, as JSON-ready data."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output; later suggestions equal those of the saved searcher."""
        ...


def searcher_prior(searcher: Searcher) -> Any:
    """The searcher's prior, or None (also for searchers without the optional ``prior`` attribute)."""
    return getattr(searcher, "prior", None)


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """The bit generator's state (plain ints and strings, so ``json`` round-trips it exactly)."""
    return dict(rng.bit_generator.state)


def restore_rng(rng: np.random.Generator, state: Mapping[str, Any]) -> None:
    """Put ``rng`` back in a state from :func:`rng_state`; the bit-generator kind must match."""
    kind = type(rng.bit_generator).__name__
    if state.get("bit_generator") != kind:
        raise ValueError(f"rng state is for {state.get('bit_generator')!r}, but this generator is {kind!r}")
    rng.bit_generator.state = dict(state)


def finite_loss(loss: float) -> float:
    """NaN or infinite losses (a diverged run) rank last, never first."""
    return loss if math.isfinite(loss) else math.inf


def objective_loss(value: float, mode: str) -> float:
    """An objective value as the loss searchers minimise (``mode`` max: its negation); NaN ranks last."""
    return finite_loss(-value if mode == "max" else value)


#: One observation: (config id, configuration, resource, loss).
Observation = tuple[int, dict[str, Any], int, float]


class HistorySearcher:
    """Base of model-based searchers whose whole state is their seeded rng plus the observations: saving
    stores both, loading restores them and replays the history into the model (:meth:`_replay`), so a
    restored searcher suggests exactly what the saved one would have."""

    name: ClassVar[str]
    rng: np.random.Generator
    _history: list[Observation]

    def state_dict(self) -> dict[str, Any]:
        return {
            "searcher": self.name,
            "rng": rng_state(self.rng),
            "history": [[cid, config, r, loss] for cid, config, r, loss in self._history],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("searcher") != self.name:
            raise ValueError(
                f"state is for searcher {state.get('searcher')!r}, but this one is {self.name!r}"
            )
        restore_rng(self.rng, state["rng"])
        self._history = [(int(c), dict(cfg), int(r), float(v)) for c, cfg, r, v in state["history"]]
        self._replay()

    def _replay(self) -> None:
        """Rebuild the model from ``self._history`` (called after loading)."""
        raise NotImplementedError
