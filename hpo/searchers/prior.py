"""A user's prior: a configuration they believe is good, with a confidence per parameter (PriorBand, Mallik et
al., NeurIPS 2023; piBO, Hvarfner et al., ICLR 2022).

In the unit cube of :meth:`SearchSpace.to_unit` the prior is a Gaussian around the configuration's
coordinates, one standard deviation per coordinate from its confidence (:data:`CONFIDENCE_STD`: ``high``
0.05, ``medium`` 0.125 - mf-prior-bench's "medium" prior perturbation -, ``low`` 0.25), clipped to [0, 1];
parameters without a prior value are uniform. Categorical parameters are ordered coordinates here as in
:mod:`hpo.searchers.mftpe`.

How a searcher uses it (:class:`PriorMixture`): the first configuration is the prior's own (the recipe the
user knows gets evaluated), and every "random" draw afterwards comes from the prior with probability
``weight``, else from the uniform space. The weight starts at ``initial_weight`` (1/4) and then follows the
evidence (:meth:`PriorMixture.weight`): how prior-drawn configurations rank among uniformly drawn ones at the
highest fidelity where both were measured, so a bad prior stops being drawn from as soon as its own
configuration's first report is outranked (PriorBand also weighs prior sampling by such evidence).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from hpo.space import SearchSpace

Confidence = Literal["low", "medium", "high"]
CONFIDENCE_STD: dict[str, float] = {"low": 0.25, "medium": 0.125, "high": 0.05}
#: Origins a searcher records for the configurations it suggested.
PRIOR, UNIFORM, MODEL = "prior", "uniform", "model"


@dataclass(frozen=True)
class Prior:
    """``values``: parameter -> believed-good value (a subset of the searched parameters); ``confidence``:
    parameter -> ``low`` / ``medium`` / ``high`` (default ``medium``)."""

    values: Mapping[str, Any]
    confidence: Mapping[str, str]

    def configuration(self, space: SearchSpace, rng: np.random.Generator) -> dict[str, Any]:
        """The prior's own configuration in ``space``: its values, every other active parameter drawn with
        ``rng``. With a fresh searcher generator this is the first configuration the study trains."""
        return space.validate_config(space.sample(rng, fixed=self.values))

    def to_dict(self) -> dict[str, Any]:
        return {"values": dict(self.values), "confidence": dict(self.confidence)}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Prior:
        return cls(values=dict(raw["values"]), confidence=dict(raw["confidence"]))


class PriorMixture:
    """Draws from a :class:`Prior` mixed with the uniform space; see the module docstring."""

    def __init__(
        self,
        prior: Prior,
        space: SearchSpace,
        *,
        initial_weight: float = 0.25,
        max_weight: float = 0.5,
        min_evidence: int = 4,
    ) -> None:
        unknown = sorted(set(prior.values) - set(space.names))
        if unknown:
            raise ValueError(f"prior names {', '.join(unknown)}, which the search space does not have")
        self.prior = prior
        self.space = space
        self.min_evidence = min_evidence
        self.initial_weight = initial_weight
        self.max_weight = max_weight
        # The centre: the unit coordinates of a configuration holding the prior's values; coordinates of
        # parameters without a prior value are NaN (uniform).
        centre = space.to_unit(prior.configuration(space, np.random.default_rng(0)))
        stds = np.full(space.dimensions, np.nan)
        for i, name in enumerate(space.unit_names):
            if name in prior.values:
                stds[i] = CONFIDENCE_STD[prior.confidence.get(name, "medium")]
            else:
                centre[i] = np.nan
        self.centre = centre
        self.stds = stds

    def sample_unit(self, rng: np.random.Generator) -> np.ndarray:
        """A point of the unit cube drawn from the prior (uniform where it has no value)."""
        uniform = rng.random(self.space.dimensions)
        noise = rng.normal(size=self.space.dimensions)
        drawn = np.where(np.isnan(self.centre), uniform, self.centre + noise * np.nan_to_num(self.stds))
        return np.clip(drawn, 0.0, 1.0)

    def weight(self, origins: Mapping[int, str], results: Mapping[int, list[tuple[int, float]]]) -> float:
        """Probability that a random draw comes from the prior, from the evidence so far.

        ``origins``: config id -> origin; ``results``: resource -> [(config id, loss)] in arrival order.
        Evidence is read at the highest fidelity holding at least ``min_evidence`` results of uniformly drawn
        configurations and one of a prior-drawn one (the prior's own configuration counts: its reports on the
        way to the full budget rank it at every fidelity). Each prior-drawn result gets the share q of
        uniform results that beat it; with the mean share q̄, the weight is ``max_weight * max(0, 1 - 2 q̄)``:
        a prior whose configurations rank at the uniform median or below is no longer drawn from."""
        for resource in sorted(results, reverse=True):
            uniform = [loss for cid, loss in results[resource] if origins.get(cid) == UNIFORM]
            prior = [loss for cid, loss in results[resource] if origins.get(cid) == PRIOR]
            if len(uniform) < self.min_evidence or not prior:
                continue
            beaten = np.sort(np.asarray(uniform))
            shares = np.searchsorted(beaten, np.asarray(prior), side="left") / len(beaten)
            return self.max_weight * max(0.0, 1.0 - 2.0 * float(np.mean(shares)))
        return self.initial_weight
