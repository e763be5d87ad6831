"""Multi-fidelity TPE, BOHB's model (Falkner, Klein & Hutter, "BOHB: Robust and Efficient Hyperparameter
Optimization at Scale", ICML 2018), written in numpy over the unit cube.

Rules (BOHB, section 4):

* **one fidelity per model**: the model is fitted only on results of the *highest* resource that has at
  least ``min_points`` observations; results at other resources are kept but never mixed into that model.
  The default is ceil((d + 1) / gamma) (d = searched dimensions; 27 for d = 3), the smallest n at which the
  good set floor(gamma n) holds the d + 1 points a KDE needs, capped at ``MAX_MIN_POINTS`` (27): a threshold
  that grows with d keeps a larger space's model on a low, misleading rung for most of a study (47 points for
  d = 6, 107 for a 15-parameter ReID space). Measured (search_quality.py, hyperband+mf-tpe, 20 seeds, R = 100,
  median regret at 150 FBE): mfh6 0.150 uncapped -> 0.026 capped (seeds reaching regret <= 0.1: 0 % -> 55 %;
  R = 81: 0.183 -> 0.066); d = 3 functions unchanged (27 either way). BOHB's own threshold, d + 2, suits
  synchronous Hyperband, whose low rungs fill before any configuration is promoted; under ASHA a higher
  rung reaches d + 2 results early, and with n < (d + 1) / gamma the split below forces d + 1 of the n
  points into "good" (4 of 5 for d = 3), so the model has no signal yet switches away from a well-populated
  lower rung.
  Measured (search_quality.py, mfh3, 25 seeds, median FBE to regret <= 0.1): asha+mf-tpe 33.3 with d + 2,
  9.4 with the default; hyperband+mf-tpe 3.4 with both;
* **good / bad split**: observations sorted by loss, the best ``max(d + 1, floor(gamma n))`` are "good" and
  the worst ``max(d + 1, floor((1 - gamma) n))`` "bad" (``gamma`` = 0.15);
* **densities**: l(x) and g(x) are products of Gaussian kernels per coordinate of
  :meth:`SearchSpace.to_unit`, bandwidth max(std n^(-1/(d+4)), 0.2 / sqrt(n)) (Scott's rule with a
  floor from Optuna's multivariate-TPE 0.2 that shrinks with n), each mixed with the uniform prior at
  weight ``prior_weight`` (1, as Optuna);
* **proposal**: ``n_candidates`` (64) points drawn from l(x) (around random good points, bandwidth times
  ``bandwidth_factor``, clipped to [0, 1]; or from the prior); the one maximising l(x) / g(x) is decoded
  with :meth:`SearchSpace.from_unit`;
* **robustness**: a fraction ``random_fraction`` (1/3) of suggestions are random samples from the prior;
* **local refinement** (ours, not BOHB's): once a model exists, a share of suggestions is the best
  configuration at the highest fidelity with two or more results, moved by a Gaussian step of half its good
  set's bandwidth per coordinate (a trust region that shrinks as the good points converge): the share is
  ``high_start_local_fraction`` (0.9) for a configuration whose first job trains at least ``HIGH_START``
  (30 %) of the full budget while the study also starts configurations lower (Hyperband's two smallest
  brackets: expensive slots that no low fidelity screens, so they exploit), and ``local_fraction`` (0.4)
  otherwise. The bandwidth floor shrinks as ``SIGMA0 / sqrt(n_good)`` rather than Scott's n^(-1/(d+4)), so
  the kernels can narrow too. In a high-start slot the step is also at most the good set's own spread (its
  per-coordinate standard deviation, at least ``HIGH_START_MIN_STEP``): the kernel floor keeps the *model*
  exploring and is 3-10x wider than good points that have converged, which is cheap where a low rung
  screens the move but wastes a full-budget run where none does.

Why local refinement: without it the model plateaued - after 150 full-budget equivalents the median regret of
hyperband+mf-tpe on mfh3 stayed at 0.008 (Optuna's TPE reaches 0.001), because kernels of width >= 0.1 in
the unit cube cannot place points closer than that to the optimum. Measured on the tuning functions (8
seeds, hyperband, 150 FBE; median final regret without -> with the 0.4 share): mfh3 0.0080 -> 0.0010, mfh6
0.26 -> 0.12, mfh3_terrible 0.024 -> 0.016, mfh6_terrible 0.49 -> 0.26; FBE to regret <= 0.01 on mfh3 71.6
-> 16.2. Refining in the high-start slots (0.9) and around the top fidelity's best then took (10 seeds,
search_quality.py) mfh6_terrible's FBE to regret <= 0.5 from 109.7 to 57.6 and its regret at 50 FBE from
2.05 to 0.66, and mfh3's regret at 20 FBE from 0.015 to 0.0078.

The high-start step (tuning set, R = 100, 50 seeds, two random streams, median regret before -> after):
Hyperband's smallest bracket had spent its 5 FBE per pass on moves of ~0.05-0.14 per coordinate around a
best with regret 0.007, landing at regret 0.04-0.6. Bounding them: mfh3 regret at 20 FBE 0.043 / 0.027 ->
0.031 / 0.016 and at 150 FBE 0.0020 / 0.0020 -> 0.0011 / 0.0018; mfh6 at 150 FBE 0.027 / 0.020 -> 0.020 /
0.012; mfh3_terrible 0.061 / 0.037 -> 0.039 / 0.027; mfh6_terrible about unchanged at 150 FBE (0.22 /
0.18 -> 0.20 / 0.18) but worse at 20 FBE (2.10 / 1.94 -> 2.29 / 2.10); R = 81 about neutral (geometric
mean of the regret-at-20 and -150 ratios to the best peer 0.90 -> 0.88).

Measured (benchmarks/search_quality.py): BOHB's own settings (Scott's bandwidth floored at 1e-3, widened 3x
for sampling, no prior) collapsed onto local optima of Hartmann-3 - worse than random search within ASHA;
the 0.2 floor and the prior component fixed that.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from hpo.searchers.base import HistorySearcher, finite_loss
from hpo.searchers.prior import MODEL, PRIOR, UNIFORM, Prior, PriorMixture
from hpo.space import SearchSpace

#: Default shares of suggestions that are random draws and local refinements (also the study-file defaults).
RANDOM_FRACTION = 1.0 / 3.0
LOCAL_FRACTION = 0.4
HIGH_START_LOCAL_FRACTION = 0.9
#: A configuration whose first job trains at least this share of the full budget "starts high" (with eta 3:
#: Hyperband's two smallest brackets).
HIGH_START = 0.3
#: Smallest refinement step per unit-cube coordinate in a high-start slot (see the module docstring).
HIGH_START_MIN_STEP = 0.02
#: Cap on the default number of results a fidelity needs before the model is fitted on it.
MAX_MIN_POINTS = 27
#: Bandwidth floor scale in unit-cube coordinates (Optuna's multivariate TPE uses the same 0.2).
SIGMA0 = 0.2


def split_good_bad(losses: np.ndarray, gamma: float, min_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the good and the bad observations (BOHB's split: both sides get at least ``min_points``,
    so with few observations they overlap)."""
    order = np.argsort(losses, kind="stable")
    n = len(losses)
    n_good = max(min_points, math.floor(gamma * n))
    n_bad = max(min_points, math.floor((1.0 - gamma) * n))
    return order[:n_good], order[n - n_bad :]


def spread(points: np.ndarray) -> np.ndarray:
    """Per-coordinate standard deviation over the non-NaN entries (0 for a column that is never active)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column (never active) has no std
        std = np.nanstd(points, axis=0)
    return np.where(np.isfinite(std), std, 0.0)


def scott_bandwidth(points: np.ndarray, min_bandwidth: float) -> np.ndarray:
    """Per-coordinate bandwidth max(std n^(-1/(d+4)), 0.2 / sqrt(n)) over the non-NaN entries, at least
    ``min_bandwidth``. The 0.2 is Optuna's multivariate TPE bandwidth (``SIGMA0_MAGNITUDE``): without a
    floor a tight cluster of good points collapses the kernel and the search stops exploring; the floor
    shrinks with n (Scott's rate would keep it above 0.1 for any realistic n, see the module docstring)."""
    n, d = points.shape
    std = spread(points)
    return np.maximum(np.maximum(std * n ** (-1.0 / (d + 4)), SIGMA0 / math.sqrt(n)), min_bandwidth)


def log_density(
    x: np.ndarray, points: np.ndarray, bandwidth: np.ndarray, prior_weight: float = 0.0
) -> np.ndarray:
    """log of the product-Gaussian KDE of ``points`` at each row of ``x``, mixed with the uniform density of
    the unit cube at weight ``prior_weight`` (Optuna's prior component); NaN coordinates of a point add no
    factor (that parameter was inactive)."""
    z = (x[:, None, :] - points[None, :, :]) / bandwidth  # (m, n, d)
    log_k = -0.5 * z**2 - np.log(bandwidth) - 0.5 * math.log(2 * math.pi)
    log_k = np.where(np.isnan(points)[None, :, :], 0.0, log_k)
    total = log_k.sum(axis=2)  # (m, n)
    if prior_weight > 0:
        total = np.concatenate([total, np.full((len(x), 1), math.log(prior_weight))], axis=1)
    top = total.max(axis=1, keepdims=True)
    mixed = top + np.log(np.exp(total - top).sum(axis=1, keepdims=True))
    return mixed[:, 0] - math.log(len(points) + prior_weight)


class MultiFidelityTPESearcher(HistorySearcher):
    """BOHB's model-based sampler; see the module docstring for the rules and parameters."""

    name = "mf-tpe"

    def __init__(
        self,
        space: SearchSpace,
        rng: np.random.Generator,
        *,
        random_fraction: float = RANDOM_FRACTION,
        local_fraction: float = LOCAL_FRACTION,
        high_start_local_fraction: float = HIGH_START_LOCAL_FRACTION,
        gamma: float = 0.15,
        min_points: int | None = None,
        n_candidates: int = 64,
        bandwidth_factor: float = 1.0,
        min_bandwidth: float = 1e-3,
        prior_weight: float = 1.0,
        prior: Prior | None = None,
    ) -> None:
        if not 0.0 <= random_fraction <= 1.0:
            raise ValueError(f"random_fraction is {random_fraction}, but must be in [0, 1]")
        for option, value in (
            ("local_fraction", local_fraction),
            ("high_start_local_fraction", high_start_local_fraction),
        ):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{option} is {value}, but must be in [0, 1]")
        if not 0.0 < gamma < 1.0:
            raise ValueError(f"gamma is {gamma}, but must be in (0, 1)")
        if space.dimensions == 0:
            raise ValueError("the search space has 0 searched dimensions; a model needs at least 1")
        default_min = max(
            space.dimensions + 2, min(math.ceil((space.dimensions + 1) / gamma), MAX_MIN_POINTS)
        )
        if min_points is not None and min_points < 2:
            raise ValueError(f"min_points is {min_points}, but must be >= 2")
        if n_candidates < 1:
            raise ValueError(f"n_candidates is {n_candidates}, but must be >= 1")
        if bandwidth_factor <= 0 or min_bandwidth <= 0:
            raise ValueError(
                f"bandwidth_factor is {bandwidth_factor} and min_bandwidth is {min_bandwidth}, "
                "but both must be > 0"
            )
        self.space = space
        self.rng = rng
        self.random_fraction = random_fraction
        self.local_fraction = local_fraction
        self.high_start_local_fraction = high_start_local_fraction
        self._starts_low = False  # has any configuration started below HIGH_START of the budget?
        self.gamma = gamma
        self.min_points = min_points if min_points is not None else default_min
        self.n_candidates = n_candidates
        self.bandwidth_factor = bandwidth_factor
        self.min_bandwidth = min_bandwidth
        if prior_weight < 0:
            raise ValueError(f"prior_weight is {prior_weight}, but must be >= 0")
        self.prior_weight = prior_weight
        self.prior = prior
        self._mixture = PriorMixture(prior, space) if prior is not None else None
        # resource -> (config ids, unit vectors, losses) in arrival order
        self._obs: dict[int, tuple[list[int], list[np.ndarray], list[float]]] = {}
        self._history: list[tuple[int, dict[str, Any], int, float]] = []
        self._origins: dict[int, str] = {}  # config id -> prior / uniform / model (kept with a prior only)

    def model_resource(self) -> int | None:
        """The fidelity the next model is fitted on: the highest with >= ``min_points`` results."""
        ready = [r for r, (_, _, losses) in self._obs.items() if len(losses) >= self.min_points]
        return max(ready) if ready else None

    def suggest(self, config_id: int, budget_fraction: float | None = None) -> dict[str, Any]:
        if budget_fraction is not None and budget_fraction < HIGH_START:
            self._starts_low = True
        config, origin = self._suggest(budget_fraction)
        if self._mixture is not None:
            self._origins[config_id] = origin
        return config

    def _suggest(self, budget_fraction: float | None) -> tuple[dict[str, Any], str]:
        if self._mixture is not None and not self._origins:
            # The user's own configuration first; parameters without a prior value are drawn at random.
            return self._mixture.prior.configuration(self.space, self.rng), PRIOR
        resource = self.model_resource()
        if resource is not None:
            starts_high = self._starts_low and budget_fraction is not None and budget_fraction >= HIGH_START
            share = self.high_start_local_fraction if starts_high else self.local_fraction
            if self.rng.random() < share:
                _, vectors, losses = self._obs[self._top_resource()]
                if len(losses) >= 2:
                    moved = self._refine(np.stack(vectors), np.asarray(losses), starts_high=starts_high)
                    return self.space.from_unit(moved), MODEL
        if resource is None or self.rng.random() < self.random_fraction:
            if self._mixture is not None:
                results = {
                    r: list(zip(ids, losses, strict=True)) for r, (ids, _, losses) in self._obs.items()
                }
                weight = self._mixture.weight(self._origins, results)
                if self.rng.random() < weight:
                    return self.space.from_unit(self._mixture.sample_unit(self.rng)), PRIOR
            return self.space.sample(self.rng), UNIFORM
        _, vectors, losses = self._obs[resource]
        return self.space.from_unit(self._propose(np.stack(vectors), np.asarray(losses))), MODEL

    def _top_resource(self) -> int:
        """The highest fidelity with at least two results (a single one, e.g. the prior probe's full-budget
        result, does not yet say the lower fidelities' model is stale)."""
        return max((r for r, (_, _, losses) in self._obs.items() if len(losses) > 1), default=min(self._obs))

    def _refine(self, points: np.ndarray, losses: np.ndarray, *, starts_high: bool = False) -> np.ndarray:
        """The best point moved by a Gaussian step of half the good set's bandwidth (local refinement); in a
        high-start slot at most the good set's spread (``HIGH_START_MIN_STEP`` or more)."""
        good, _ = split_good_bad(losses, self.gamma, points.shape[1] + 1)
        step = scott_bandwidth(points[good], self.min_bandwidth) * 0.5
        if starts_high:
            step = np.minimum(step, np.maximum(spread(points[good]), HIGH_START_MIN_STEP))
        best = points[int(np.argmin(losses))]
        moved = best + self.rng.normal(size=best.shape) * step
        # An inactive (NaN) coordinate stays undecided: the decoder samples or drops it.
        return np.clip(np.where(np.isnan(best), self.rng.random(best.shape), moved), 0.0, 1.0)

    def _propose(self, points: np.ndarray, losses: np.ndarray) -> np.ndarray:
        d = points.shape[1]
        good, bad = split_good_bad(losses, self.gamma, d + 1)
        good_pts, bad_pts = points[good], points[bad]
        bw_good = scott_bandwidth(good_pts, self.min_bandwidth)
        bw_bad = scott_bandwidth(bad_pts, self.min_bandwidth)
        m = self.n_candidates
        centres = good_pts[self.rng.integers(len(good_pts), size=m)]
        noise = self.rng.normal(size=(m, d)) * bw_good * self.bandwidth_factor
        uniform = self.rng.random(size=(m, d))
        candidates = np.clip(np.where(np.isnan(centres), uniform, centres + noise), 0.0, 1.0)
        from_prior = self.rng.random(m) < self.prior_weight / (len(good_pts) + self.prior_weight)
        candidates[from_prior] = uniform[from_prior]
        w = self.prior_weight
        score = log_density(candidates, good_pts, bw_good, w) - log_density(candidates, bad_pts, bw_bad, w)
        return candidates[int(np.argmax(score))]

    def observe(self, config_id: int, config: Mapping[str, Any], resource: int, loss: float) -> None:
        loss = finite_loss(float(loss))
        self._history.append((config_id, dict(config), int(resource), loss))
        self._add(config_id, config, int(resource), loss)

    def _add(self, config_id: int, config: Mapping[str, Any], resource: int, loss: float) -> None:
        ids, vectors, losses = self._obs.setdefault(resource, ([], [], []))
        ids.append(config_id)
        vectors.append(self.space.to_unit(config))
        losses.append(loss if math.isfinite(loss) else np.finfo(np.float64).max)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self.prior is not None:
            state["prior"] = self.prior.to_dict()
            state["origins"] = [[cid, origin] for cid, origin in self._origins.items()]
        state["starts_low"] = self._starts_low
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        saved = state.get("prior")
        mine = self.prior.to_dict() if self.prior is not None else None
        if saved != mine:
            raise ValueError(f"state was saved with prior {saved}, but this searcher has prior {mine}")
        super().load_state_dict(state)
        self._origins = {int(cid): str(origin) for cid, origin in state.get("origins", [])}
        self._starts_low = bool(state.get("starts_low", False))

    def _replay(self) -> None:
        self._obs = {}
        for config_id, config, resource, loss in self._history:
            self._add(config_id, config, resource, loss)
