"""Test doubles shared by the scheduler tests."""

from __future__ import annotations

from typing import Any


class Counter:
    """A searcher that proposes {"x": 0}, {"x": 1}, ... and only remembers what it observed."""

    def __init__(self) -> None:
        self.observed: list[tuple[int, int, float]] = []

    def suggest(self, config_id: int, budget_fraction: float | None = None) -> dict[str, Any]:
        return {"x": config_id}

    def observe(self, config_id: int, config: Any, resource: int, loss: float) -> None:
        self.observed.append((config_id, resource, loss))

    def state_dict(self) -> dict[str, Any]:
        return {"observed": self.observed}

    def load_state_dict(self, state: Any) -> None:
        self.observed = [tuple(o) for o in state["observed"]]  # type: ignore[misc]
