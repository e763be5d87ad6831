"""Random search (Bergstra & Bengio, JMLR 2012): every configuration drawn from the space's prior."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from hpo.searchers.base import restore_rng, rng_state
from hpo.space import SearchSpace


class RandomSearcher:
    """Draws configurations with :meth:`SearchSpace.sample` from the generator passed in; learns nothing."""

    name = "random"

    def __init__(self, space: SearchSpace, rng: np.random.Generator) -> None:
        self.space = space
        self.rng = rng

    def suggest(self, config_id: int, budget_fraction: float | None = None) -> dict[str, Any]:
        return self.space.sample(self.rng)

    def observe(self, config_id: int, config: Mapping[str, Any], resource: int, loss: float) -> None:
        """Random search ignores results."""

    def state_dict(self) -> dict[str, Any]:
        return {"searcher": self.name, "rng": rng_state(self.rng)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("searcher") != self.name:
            raise ValueError(
                f"state is for searcher {state.get('searcher')!r}, but this one is {self.name!r}"
            )
        restore_rng(self.rng, state["rng"])
