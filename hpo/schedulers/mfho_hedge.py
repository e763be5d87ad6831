"""``mfho-hedge``: MFHO as a self-hedging, stopping Hyperband (the plain rule is :mod:`hpo.schedulers.mfho`).

The AG-VPReID challenge report describes MFHO as "random configurations at low fidelity, compared with the
best so far; promising ones are re-evaluated at higher fidelity". This variant makes it asynchronous and
guards it against misleading low fidelities:

1. **Brackets, as in Hyperband** (Li et al., JMLR 2018). Milestones m_0 < ... < m_K = R are
   floor(R eta^-k) (1, 3, 11, 33, 100 for R = 100, eta = 3; K = s_max). A configuration in bracket s starts
   training towards R and is first judged at milestone k0 = s_max - s; bracket s = 0 is plain random search
   at R (the *hedge* bracket), bracket s_max judges from the first milestone on.
2. **Compare with the best so far, continue if promising** (asynchronous successive halving in its stopping
   form, Li et al., MLSys 2020): when a configuration reports at milestone k >= k0 (k < K), it continues
   iff its value ranks within the best max(1, floor(n_k / eta)) of the n_k values measured at m_k so far
   (itself included; every trial that passed m_k counts). So the first configuration at a rung always
   continues, the second only if it beats the first, and later on roughly the top 1/eta continue. Others
   STOP; nothing is paused, so no checkpoint has to wait. A continuing trial simply trains on: promotions
   never retrain.
3. **Brackets earn budget by how well their first fidelity predicts the last** (the bracket selection of
   Hyper-Tune, Li et al., VLDB 2022, as a deterministic budget split). Every trial that reaches R gives, for
   each milestone it passed, a pair (value at m_k, value at R); rho_k is the Spearman rank correlation of
   those pairs. Bracket s > 0 is *trusted* once it has ``min_pairs`` pairs and rho_{k0} >=
   ``min_correlation``; its weight is then rho_{k0} eta^(``aggressiveness`` s), else 0. The hedge bracket
   always has weight 1. Why eta^s: bracket s judges a configuration first at R eta^-s epochs, so per epoch
   it screens about eta^s times as many configurations as the hedge bracket; when that screening is
   reliable, the budget should follow the screening rate (``aggressiveness`` = 0 gives Hyperband's even
   split over trusted brackets, 1 the screening rate). The next new configuration goes to the bracket with
   positive weight whose committed epochs divided by its weight are smallest (ties to the more aggressive
   bracket). Hedge-bracket runs pass through every milestone, so they measure rho without selection bias
   at no extra cost.

Relation to Hyperband and successive halving: with every rho = 1 and ``aggressiveness`` = 0 the budget
splits evenly over the s_max + 1 brackets, as in Hyperband, and each bracket is successive halving with
eta; with the default ``aggressiveness`` = 1 and rho = 1 bracket s gets a share proportional to eta^s
(the hedge 1 / 121 for eta = 3, s_max = 4), so MFHO behaves mostly like ASHA; with misleading low
fidelities (mf-prior-bench's ``_terrible`` variants, where the low-fidelity landscape is inverted and
noisy) the aggressive brackets get no budget and MFHO becomes random search, instead of Hyperband's
(s_max + 1)-fold worst case. The price: the first ``min_pairs`` configurations run at full fidelity
before any low-fidelity bracket is trusted.

Parameters:

* ``reduction_factor`` (eta): rungs keep the best 1/eta; also the base of the screening-rate weight;
* ``min_pairs`` (default 3): (value at m_k, value at R) pairs needed before bracket s_max - k may be
  trusted, i.e. how many full-fidelity runs MFHO pays before it uses low fidelities (it was 5; 3 is the
  fewest for which a rank correlation says anything, and a chance rho >= ``min_correlation`` from 3 pairs
  is corrected as more pairs arrive, since every trial that reaches R adds one);
* ``min_correlation`` (default 0.3): rho_k below this gives bracket s_max - k no budget (a hard gate: a
  misleading fidelity must not get a small share that its eta^s factor would multiply);
* ``aggressiveness`` (default 1.0, >= 0): the exponent a in the weight rho eta^(a s), see rule 3.

Measured (benchmarks/search_quality.py, 25 seeds, median FBE; random search needs 39.0 / 82.0 FBE for
regret <= 0.5 / 0.2 on mfh3 and mfh3_terrible alike, 85.0 for <= 1.5 on mfh6_terrible). Regret <= 0.1 on
mfh3: mfho+random 92.0 with min_pairs 5 and the even split, 42.7 with the defaults; mfho+mf-tpe 39.5 ->
20.3. On mfh3_terrible mfho+random went from 25.7 / 69.1 to 31.0 / 60.9, but mfho+mf-tpe from 19.4 / 37.3
to 40.4 / 79.2 (1.04x / 0.97x random search, inside the 1.2x bound with little margin): a trusted
mid-fidelity bracket (rho at 33 epochs is ~0.73 there) gets eta^s more budget and feeds the model
misleading results. mfh6_terrible, <= 1.5: 39.3 (was 21.2). ``aggressiveness=0, min_pairs=5`` restores the
old split.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import Field

from hpo.fields import Count, Real
from hpo.schedulers.base import Decision, Job, Mode, SchedulerCore, _Proposal
from hpo.schedulers.options import SchedulerOptions
from hpo.searchers.base import Searcher


def is_promising(loss: float, sorted_losses: Sequence[float], reduction_factor: int) -> bool:
    """Whether ``loss`` ranks within the best max(1, floor(n / eta)) of ``sorted_losses`` (ascending, ``loss``
    itself included): the MFHO comparison with the best so far."""
    allowed = max(1, len(sorted_losses) // reduction_factor)
    return bisect.bisect_left(sorted_losses, loss) < allowed


def spearman(pairs: Sequence[tuple[float, float]]) -> float:
    """Spearman rank correlation of (x, y) pairs (ties broken by order); 0 when a side is constant."""
    data = np.asarray(pairs, dtype=np.float64)
    if len(data) < 2:
        return 0.0
    ranks = np.argsort(np.argsort(data, axis=0, kind="stable"), axis=0, kind="stable").astype(np.float64)
    ranks -= ranks.mean(axis=0)
    denominator = float(np.sqrt((ranks[:, 0] ** 2).sum() * (ranks[:, 1] ** 2).sum()))
    return float((ranks[:, 0] * ranks[:, 1]).sum() / denominator) if denominator > 0 else 0.0


def bracket_weight(
    s: int,
    rho: float | None,
    n_pairs: int,
    min_pairs: int,
    min_correlation: float,
    reduction_factor: int = 3,
    aggressiveness: float = 0.0,
) -> float:
    """Budget weight of bracket ``s``: 1 for the hedge bracket (s = 0), else rho eta^(aggressiveness s)
    once it is trusted (``n_pairs`` >= ``min_pairs`` and rho >= ``min_correlation``), else 0."""
    if s == 0:
        return 1.0
    if rho is None or n_pairs < min_pairs or rho < min_correlation:
        return 0.0
    return rho * float(reduction_factor) ** (aggressiveness * s)


class HedgedMFHOOptions(SchedulerOptions):
    """MFHO as a self-hedging, stopping Hyperband (see :mod:`hpo.schedulers.mfho_hedge`).

    - ``min_pairs``: (value at a rung, value at R) pairs a bracket needs before it may be trusted;
    - ``min_correlation``: the rank correlation below which a bracket gets no budget;
    - ``aggressiveness``: the exponent a of the bracket weight rho eta^(a s) (0: Hyperband's even split).
    """

    min_pairs: Count = Field(3, ge=2, le=1000)
    min_correlation: Real = Field(0.3, ge=-1.0, le=1.0)
    aggressiveness: Real = Field(1.0, ge=0.0, le=10.0)


class HedgedMFHOCore(SchedulerCore):
    """MFHO; see the module docstring for the rule and its parameters."""

    name = "mfho-hedge"
    Options = HedgedMFHOOptions

    def __init__(
        self,
        searcher: Searcher,
        *,
        max_resource: int,
        reduction_factor: int = 3,
        min_resource: int = 1,
        mode: Mode = "max",
        max_trials: int | None = None,
        max_total_resource: int | None = None,
        retrain: bool = False,
        min_pairs: int = 3,
        min_correlation: float = 0.3,
        aggressiveness: float = 1.0,
    ) -> None:
        super().__init__(
            searcher,
            max_resource=max_resource,
            reduction_factor=reduction_factor,
            min_resource=min_resource,
            mode=mode,
            max_trials=max_trials,
            max_total_resource=max_total_resource,
            retrain=retrain,
        )
        if min_pairs < 2:
            raise ValueError(f"min_pairs is {min_pairs}, but must be >= 2")
        if not -1.0 <= min_correlation <= 1.0:
            raise ValueError(f"min_correlation is {min_correlation}, but must be in [-1, 1]")
        if not (aggressiveness >= 0 and np.isfinite(aggressiveness)):
            raise ValueError(f"aggressiveness is {aggressiveness}, but must be a finite number >= 0")
        self.min_pairs = min_pairs
        self.min_correlation = min_correlation
        self.aggressiveness = float(aggressiveness)
        levels = len(self.milestones) - 1
        self._rung_losses: list[list[float]] = [[] for _ in range(levels)]  # arrival order
        self._pairs: list[list[tuple[float, float]]] = [[] for _ in range(levels)]
        self._committed = [0] * (self.s_max + 1)  # epochs promised to each bracket
        self._rebuild_views()

    def _rebuild_views(self) -> None:
        self._sorted = [sorted(losses) for losses in self._rung_losses]
        self._rho: list[float | None] = [spearman(p) if len(p) >= 2 else None for p in self._pairs]

    def reliability(self, k: int) -> float | None:
        """rho_k: rank correlation of values at milestone k with values at R (None before 2 pairs)."""
        return self._rho[k]

    def weights(self) -> list[float]:
        """Budget weight of each bracket s = 0 .. s_max."""
        return [
            bracket_weight(
                s,
                self._rho[self.s_max - s] if s > 0 else None,
                len(self._pairs[self.s_max - s]) if s > 0 else 0,
                self.min_pairs,
                self.min_correlation,
                self.reduction_factor,
                self.aggressiveness,
            )
            for s in range(self.s_max + 1)
        ]

    def _propose(self, can_start: bool) -> _Proposal | None:
        if not can_start:
            return None
        weights = self.weights()
        # Smallest committed/weight first; ties to the larger (more aggressive) s.
        s = min(
            (s for s in range(self.s_max + 1) if weights[s] > 0),
            key=lambda s: (self._committed[s] / weights[s], -s),
        )
        return _Proposal(None, self.max_resource, s)

    def _accept(self, job: Job) -> None:
        self._committed[job.bracket] += job.cost

    def _decide(self, trial_id: int, resource: int, value: float) -> Decision:
        trial = self._trials[trial_id]
        k = self.milestones.index(resource)
        if k == len(self.milestones) - 1:
            loss_top = self.loss(value)
            for j, epochs in enumerate(self.milestones[:-1]):
                if epochs in trial.values:
                    self._pairs[j].append((self.loss(trial.values[epochs]), loss_top))
                    if len(self._pairs[j]) >= 2:
                        self._rho[j] = spearman(self._pairs[j])
            return Decision.STOP
        loss = self.loss(value)
        self._rung_losses[k].append(loss)
        bisect.insort(self._sorted[k], loss)
        if k < self.s_max - trial.bracket or is_promising(loss, self._sorted[k], self.reduction_factor):
            return Decision.CONTINUE
        assert trial.target is not None  # a reporting trial is running; not an input check
        self._committed[trial.bracket] -= trial.target - resource
        return Decision.STOP

    def _on_failed(self, trial_id: int, target: int | None) -> None:
        trial = self._trials[trial_id]
        if target is not None:
            self._committed[trial.bracket] -= target - trial.charged

    def _settings(self) -> dict[str, Any]:
        return {
            **super()._settings(),
            "min_pairs": self.min_pairs,
            "min_correlation": self.min_correlation,
            "aggressiveness": self.aggressiveness,
        }

    def _extra_state(self) -> dict[str, Any]:
        return {
            "rung_losses": self._rung_losses,
            "pairs": [[list(p) for p in pairs] for pairs in self._pairs],
            "committed": self._committed,
        }

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        self._rung_losses = [[float(x) for x in losses] for losses in state["rung_losses"]]
        self._pairs = [[(float(a), float(b)) for a, b in pairs] for pairs in state["pairs"]]
        self._committed = [int(c) for c in state["committed"]]
        self._rebuild_views()
