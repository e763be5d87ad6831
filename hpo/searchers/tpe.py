"""Single-fidelity TPE (Bergstra et al., NeurIPS 2011) through Optuna's ``TPESampler`` and its ask/tell API.

The model learns from one fidelity only: the highest resource at which any result has been observed (with
FIFO scheduling that is R as soon as one trial completes). Ray's OptunaSearch instead tells Optuna whatever
value a trial last reported, mixing fidelities in one model (REFERENCE_HPO.md); we never do.

Why results are added with ``study.add_trial`` and suggestions come from ``study.ask``: a suggested
configuration may never reach the model's fidelity, so its Optuna trial is left unfinished (TPE ignores
unfinished trials when ``constant_liar`` is off), and every result at the model's fidelity is added as a
finished trial of its own.

State: Optuna studies are not serialisable, so :meth:`TPESearcher.state_dict` stores the observation
history and our generator's state; :meth:`TPESearcher.load_state_dict` rebuilds the study by adding the
model-fidelity observations in their original order. Each ask uses a fresh ``TPESampler`` seeded from our
``np.random.Generator``, so the restored searcher suggests exactly what the saved one would have.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from hpo.searchers.base import HistorySearcher, finite_loss
from hpo.space import CategoricalParam, FixedParam, FloatParam, IntParam, SearchSpace

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution

_LARGEST = float(np.finfo(np.float64).max)


def optuna_distributions(space: SearchSpace) -> dict[str, BaseDistribution]:
    """Optuna distributions of the searched (non-fixed) parameters of ``space``."""
    # Imported here so that importing hpo (the CLI, the cores) does not pay for Optuna.
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, BaseDistribution] = {}
    for name in space.names:
        param = space[name]
        if isinstance(param, FloatParam):
            out[name] = FloatDistribution(param.low, param.high, log=param.log)
        elif isinstance(param, IntParam):
            out[name] = IntDistribution(param.low, param.high, log=param.log)
        elif isinstance(param, CategoricalParam):
            out[name] = CategoricalDistribution(param.choices)
    return out


class TPESearcher(HistorySearcher):
    """Optuna TPE on the highest observed fidelity. ``n_startup_trials`` random configurations come first
    (Optuna's default 10); ``multivariate=True`` models parameter interactions (Falkner et al. 2018)."""

    name = "tpe"

    def __init__(
        self,
        space: SearchSpace,
        rng: np.random.Generator,
        *,
        n_startup_trials: int = 10,
        multivariate: bool = True,
    ) -> None:
        if n_startup_trials < 0:
            raise ValueError(f"n_startup_trials is {n_startup_trials}, but must be >= 0")
        self.space = space
        self.rng = rng
        self.n_startup_trials = n_startup_trials
        self.multivariate = multivariate
        self._distributions = optuna_distributions(space)
        self._history: list[tuple[int, dict[str, Any], int, float]] = []
        self._resource: int | None = None
        self._study = self._new_study()

    @property
    def model_resource(self) -> int | None:
        """The fidelity the model learns from (None before the first result)."""
        return self._resource

    def _new_study(self) -> optuna.Study:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        return optuna.create_study(direction="minimize")

    def _add(self, config: Mapping[str, Any], loss: float) -> None:
        import optuna

        params = {k: v for k, v in config.items() if k in self._distributions}
        dists = {k: self._distributions[k] for k in params}
        value = min(loss, _LARGEST)  # a diverged run (inf loss) ranks last; Optuna wants a finite number
        self._study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=value))

    def _rebuild(self, resource: int) -> None:
        self._resource = resource
        self._study = self._new_study()
        for _, config, r, loss in self._history:
            if r == resource:
                self._add(config, loss)

    def suggest(self, config_id: int, budget_fraction: float | None = None) -> dict[str, Any]:
        import optuna

        seed = int(self.rng.integers(2**31 - 1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._study.sampler = optuna.samplers.TPESampler(
                seed=seed,
                n_startup_trials=self.n_startup_trials,
                multivariate=self.multivariate,
                constant_liar=False,
            )
            trial = self._study.ask(self._distributions)
        values: dict[str, Any] = dict(trial.params)
        for name in self.space.names:
            if isinstance(self.space[name], FixedParam):
                values[name] = self.space[name].value  # type: ignore[union-attr]
        config = {n: values[n] for n in self.space.names if n in values}
        active = {n: v for n, v in config.items() if self.space.is_active(n, config)}
        return self.space.validate_config(active)

    def observe(self, config_id: int, config: Mapping[str, Any], resource: int, loss: float) -> None:
        loss = finite_loss(float(loss))
        self._history.append((config_id, dict(config), int(resource), loss))
        if self._resource is None or resource > self._resource:
            self._rebuild(resource)
        elif resource == self._resource:
            self._add(config, loss)

    def _replay(self) -> None:
        resources = [r for _, _, r, _ in self._history]
        self._study = self._new_study()
        self._resource = None
        if resources:
            self._rebuild(max(resources))
