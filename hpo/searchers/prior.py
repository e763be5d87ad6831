"""A user's prior: a configuration they believe is good, with a confidence per parameter (PriorBand, Mallik et
al., NeurIPS 2023; piBO, Hvarfner et al., ICLR 2022).

In the unit cube of :meth:`SearchSpace.to_unit` the prior is a Gaussian around the configuration's
coordinates, one standard deviation per coordinate from its confidence (:data:`CONFIDENCE_STD`: ``high``
0.05, ``medium`` 0.125 - mf-prior-bench's "medium" prior perturbation -, ``low`` 0.25), clipped to [0, 1];
parameters without a prior value are uniform. Categorical parameters are ordered coordinates here as in
:mod:`hpo.searchers.mftpe`.

How a searcher uses it (:class:`PriorMixture`): the first configuration is the prior's own (the recipe the
user knows gets evaluated), and every "random" draw afterwards comes from the prior with probability
``weight``, else from the uniform space. The weight starts at ``initial_weight`` (1/4) and follows the
evidence, so a bad prior is unlearnt: at the highest fidelity with at least ``min_evidence`` results of
configurations of both origins, each origin's rate of landing in the best third is estimated with add-one
smoothing, and the weight is the prior's rate over the sum of both rates (PriorBand weighs prior against
incumbent sampling by such evidence too).
"""

from __future__ import annotations

import math
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

    def to_dict(self) -> dict[str, Any]:
        return {"values": dict(self.values), "confidence": dict(self.confidence)}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Prior:
        return cls(values=dict(raw["values"]), confidence=dict(raw["confidence"]))


class PriorMixture:
    """Draws from a :class:`Prior` mixed with the uniform space; see the module docstring."""

    def __init__(
        self, prior: Prior, space: SearchSpace, *, initial_weight: float = 0.25, min_evidence: int = 4
    ) -> None:
        unknown = sorted(set(prior.values) - set(space.names))
        if unknown:
            raise ValueError(f"prior names {', '.join(unknown)}, which the search space does not have")
        self.prior = prior
        self.space = space
        self.min_evidence = min_evidence
        self.initial_weight = initial_weight
        # The centre: a full configuration (prior values, the rest uniform-in-the-middle), then its unit
        # coordinates; coordinates of parameters without a prior value are NaN (uniform).
        filled = {**space.sample(np.random.default_rng(0)), **dict(prior.values)}
        self.center_config = space.validate_config(
            {n: v for n, v in filled.items() if space.is_active(n, filled)}
        )
        centre = space.to_unit(self.center_config)
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

        ``origins``: config id -> origin; ``results``: resource -> [(config id, loss)] in arrival order."""
        for resource in sorted(results, reverse=True):
            rows = [(cid, loss) for cid, loss in results[resource] if origins.get(cid) in (PRIOR, UNIFORM)]
            counts = {PRIOR: 0, UNIFORM: 0}
            for cid, _ in rows:
                counts[origins[cid]] += 1
            if min(counts.values()) < self.min_evidence:
                continue
            ranked = sorted(rows, key=lambda row: row[1])[: max(1, math.ceil(len(rows) / 3))]
            good = {PRIOR: 0, UNIFORM: 0}
            for cid, _ in ranked:
                good[origins[cid]] += 1
            rate = {o: (good[o] + 1) / (counts[o] + 2) for o in (PRIOR, UNIFORM)}
            return rate[PRIOR] / (rate[PRIOR] + rate[UNIFORM])
        return self.initial_weight
