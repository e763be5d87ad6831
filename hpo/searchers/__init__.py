"""Searchers: where new configurations come from (random, TPE, multi-fidelity TPE). See
:mod:`hpo.searchers.base` for the interface the scheduler cores use."""

from __future__ import annotations

from typing import Any

import numpy as np

from hpo.searchers.base import Searcher
from hpo.searchers.mftpe import MultiFidelityTPESearcher
from hpo.searchers.random_search import RandomSearcher
from hpo.searchers.tpe import TPESearcher
from hpo.space import SearchSpace

__all__ = [
    "SEARCHERS",
    "MultiFidelityTPESearcher",
    "RandomSearcher",
    "Searcher",
    "TPESearcher",
    "make_searcher",
]

SEARCHERS: dict[str, type[Any]] = {
    "random": RandomSearcher,
    "tpe": TPESearcher,
    "mf-tpe": MultiFidelityTPESearcher,
}


def make_searcher(name: str, space: SearchSpace, rng: np.random.Generator, **options: Any) -> Searcher:
    """Build the searcher registered as ``name`` (see :data:`SEARCHERS`)."""
    if name not in SEARCHERS:
        raise ValueError(f"searcher is {name!r}, but must be one of {', '.join(SEARCHERS)}")
    return SEARCHERS[name](space, rng, **options)
