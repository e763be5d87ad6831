"""Established HPO libraries ("peers") on mf-prior-bench's multi-fidelity Hartmann functions, with the
accounting of benchmarks/search_quality.py, so that it can run them as a subprocess and compare side by side.

This file imports nothing from agvp-hpo: it runs in its own virtualenv (``.venv-peers``: numpy 1.26,
dehb 0.1.2, syne-tune 0.16.0, optuna 5.0.0, ConfigSpace 1.2, mf-prior-bench 1.10) because DEHB and Syne
Tune pin packages that the main ``.venv`` (numpy 2) must not get. The Optuna peers also run under ``.venv``.
Each peer's library is imported inside its runner; a requested peer whose package is missing is one line on
stderr and exit 2.

Objective. ``mfpbench.get(name, seed=seed)`` for name in mfh3, mfh6 and their _good/_moderate/_bad/_terrible
variants; parameters X_0 .. X_{d-1} uniform floats in [0, 1] (d = 3 or 6); the loss at fidelity z is
``bench.query(config, at=z).error``. ``--max-fidelity R`` (100, or 81 = the grid 1/3/9/27/81 neutral for
peers that decide at eta^k) bounds the fidelities to 1..R and makes z = R the full fidelity: a result at z = R
has regret ``query(cfg, at=R).error - optimum`` with the optimum at z = 100 (mfh3: -3.86278, mfh6:
-3.32237), so R = 81 is a slightly different problem, on purpose.

Accounting (as ours). Budget ``--budget B`` full-budget equivalents (FBE): B * R epochs in all; FBE at any
moment = epochs trained so far / R. The run stops when the epochs reach int(B * R); a job that would cross
it is cut there and its result is not counted. A run records, each time a new best value measured at z = R
arrives, ``fbe`` (FBE counting that evaluation's epochs) and ``regret`` (best full-fidelity value so far
minus the optimum); lower fidelities never count for regret. One worker, sequential; the peer's seed and the
mfpbench seed are both the run's seed. ``trials`` counts the configurations started (for DEHB: distinct
parameter vectors, a promotion is not a new one). How an evaluation is charged (field ``accounting``):

* ``stop``: a trial trains epoch by epoch from 1, is queried and reports at every epoch (cost 1 each) and
  is stopped early by the library; it costs the epochs it trained (Optuna pruners, Syne Tune's ASHA).
* ``resume``: DEHB asks for (configuration, fidelity b) jobs; a job costs b minus the highest fidelity at
  which the same parameter values were evaluated before (0 if b is not above it): checkpoint credit, as our
  scheduler resumes promoted trials.
* ``retrain``: DEHB jobs cost b, every time (each job trains from scratch).

Peers, all with the library's defaults except what is listed (``--eta`` is the reduction factor, 3):

* ``optuna-tpe-sh`` (stop): optuna 5.0 ask/tell, ``TPESampler(seed=seed)`` (5.0 defaults: multivariate
  TPE for one objective, constant_liar, 10 startup trials, 24 EI candidates; pruned trials are observations
  too, ranked by how far they trained, then by their last value) and ``SuccessiveHalvingPruner(
  min_resource=1, reduction_factor=eta)`` (rungs 1, 3, 9, 27, 81). Each epoch: ``trial.report(value,
  epoch)``; ``trial.should_prune()`` ends it as PRUNED; a trial reaching epoch R is told COMPLETE with its
  value at R. The study name is fixed per benchmark and seed (Optuna's default name is a random UUID, and
  Hyperband's bracket of a trial hashes it).
* ``optuna-tpe-hb`` (stop): the same with ``HyperbandPruner(min_resource=1, max_resource=R,
  reduction_factor=eta)``: 5 successive-halving brackets (early-stopping rate 0..4), and TPE models each
  trial's bracket from that bracket's trials only (Optuna's own Hyperband/TPE coupling).
* ``dehb`` (resume) and ``dehb-retrain`` (retrain): DEHB 0.1.2 on a ConfigSpace of d uniform floats in
  [0, 1], ``min_fidelity=1, max_fidelity=R, eta=eta, n_workers=1, seed=seed`` and DEHB's defaults
  (mutation_factor 0.5, crossover_prob 0.5, rand1_bin, async_strategy immediate), driven by ``ask``/
  ``tell``. Its fidelities are R * eta^-k as floats (R = 100: 1.23, 3.70, 11.1, 33.3, 100); they are
  rounded to the nearest integer (1, 4, 11, 33, 100) for the query and the cost. ``save_freq=None``: DEHB
  writes nothing but its log, which goes to a temporary directory removed afterwards; its loguru output is
  swallowed.
* ``syne-asha`` (stop): Syne Tune 0.16 ``baselines.ASHA`` (stopping-type asynchronous successive halving,
  random searcher): ``max_t=R, grace_period=1, reduction_factor=eta``, one bracket, minimising; rungs 1, 3,
  9, 27, 81.
* ``syne-bohb`` (stop): Syne Tune 0.16 ``baselines.BOHB``, which is that same stopping-type ASHA scheduler
  with the ``kde`` searcher (two multivariate KDEs, TPE-like, on each trial's *last* reported value,
  whatever its fidelity, through ``LastValueMultiFidelitySearcher``; refit at every suggestion; 1/3 of
  suggestions random, top 15 % as "good", 64 candidates). Not Falkner et al.'s synchronous BOHB.

Syne Tune runs in-process without backend or Tuner: ``scheduler.suggest()`` -> ``on_trial_add`` -> per
epoch ``on_trial_result``; a STOP decision (ASHA also returns STOP at max_t) is followed by
``on_trial_remove``, exactly as Syne Tune's Tuner does (it calls ``on_trial_complete`` only for trials that
end without a STOP decision, which ASHA never lets happen). Syne Tune 0.16's random sampling (the random
searcher, on_trial_add, the KDE's random fraction) draws from numpy's global generator, so each run seeds
that with a value derived from the run's seed (SeedSequence(seed)) as well as passing ``random_seed=seed``.

    python benchmarks/peers.py run --peer NAME --benchmark B [--seeds 0,1,2] [--budget 150]
        [--max-fidelity 100] [--eta 3]
    python benchmarks/peers.py timing --peer NAME [--benchmark mfh3] [--results 100,1000,5000]
        [--repeats 20] [--max-fidelity 100] [--eta 3] [--seed 0] [--max-seconds 120]

``run`` prints one JSON object per seed and line: benchmark, method, seed, max_fidelity, fbe, regret,
trials, seconds (wall time of that run), accounting. ``timing`` runs the peer's own loop on the benchmark
with no budget until it has N results (one result = one value told to the library: an epoch report for the
stop peers, a finished job for DEHB), then times the next ``--repeats`` suggestions (Optuna: ``ask`` plus
the parameter suggestions, where TPE samples; Syne Tune: ``suggest`` plus ``on_trial_add``; DEHB: ``ask``)
and, over the same stretch, the per-result decisions (Optuna: ``report`` + ``should_prune``, or ``tell``;
Syne Tune: ``on_trial_result``/``on_trial_remove``; DEHB: ``tell``). It prints one line per N: method,
results, median/p90 suggest seconds, median/p90 decision seconds; when N is not reached within
``--max-seconds`` (from the start of the run), it measures at what was reached and says so in ``note``.
Errors (unknown peer or benchmark, bad budget, a missing package) are one line on stderr and exit 2.

Cost: a 150-FBE run at R = 100, measured two runs at a time on 2 CPU cores: dehb/dehb-retrain 3-11 s;
syne-asha 15-28 s; optuna-tpe-hb 10-22 s; optuna-tpe-sh 8-135 s (TPE's ask grows with the trials, and SH
prunes into thousands on the _terrible variants); syne-bohb 40-390 s (the KDE is refit from every trial
at every suggestion).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import logging
import math
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

#: benchmark -> (dimensions, value at z = 100 of the global minimiser)
BENCHMARKS: dict[str, tuple[int, float]] = {
    **{name: (3, -3.86278) for name in ("mfh3", "mfh3_good", "mfh3_moderate", "mfh3_bad", "mfh3_terrible")},
    **{name: (6, -3.32237) for name in ("mfh6", "mfh6_good", "mfh6_moderate", "mfh6_bad", "mfh6_terrible")},
}
MAX_BENCH_FIDELITY = 100
#: peer -> (accounting, import names it needs besides mfpbench)
PEERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "optuna-tpe-sh": ("stop", ("optuna",)),
    "optuna-tpe-hb": ("stop", ("optuna",)),
    "dehb": ("resume", ("dehb", "ConfigSpace")),
    "dehb-retrain": ("retrain", ("dehb", "ConfigSpace")),
    "syne-asha": ("stop", ("syne_tune",)),
    "syne-bohb": ("stop", ("syne_tune", "statsmodels")),
}


class UsageError(Exception):
    """A bad command line: one line on stderr, exit 2."""


class Timing:
    """Times suggestions and decisions once the run has ``targets[0]`` results, one target at a time."""

    def __init__(self, method: str, targets: list[int], repeats: int, max_seconds: float) -> None:
        self.method = method
        self.targets = sorted(targets)
        self.repeats = repeats
        self.deadline = time.perf_counter() + max_seconds
        self.max_seconds = max_seconds
        self.started = time.perf_counter()
        self.active = False
        self.note: str | None = None
        self.suggest: list[float] = []
        self.decide: list[float] = []
        self.finished = False

    def before_suggest(self, results: int) -> None:
        if self.active or self.finished:
            return
        if results >= self.targets[0]:
            self.active = True
        elif time.perf_counter() > self.deadline:
            self.active = True
            self.note = (
                f"reached {results} of {self.targets[0]} results in {self.max_seconds:g} s; measured there"
            )

    def after_suggest(self, seconds: float, results: int, trials: int) -> None:
        if not self.active:
            return
        self.suggest.append(seconds)
        if len(self.suggest) < self.repeats:
            return
        target = self.targets.pop(0)
        line: dict[str, Any] = {
            "method": self.method,
            "results": results if self.note else target,
            "median_suggest_seconds": statistics.median(self.suggest),
            "p90_suggest_seconds": p90(self.suggest),
            "median_decision_seconds": statistics.median(self.decide) if self.decide else None,
            "p90_decision_seconds": p90(self.decide) if self.decide else None,
            "trials": trials,
            "seconds_to_reach": time.perf_counter() - self.started,
        }
        if self.note:
            line["requested"] = target
            line["note"] = self.note
        print(json.dumps(line), flush=True)
        self.active = False
        self.suggest, self.decide = [], []
        if self.note:  # out of time: the larger targets are not measured
            for skipped in self.targets:
                print(
                    json.dumps(
                        {
                            "method": self.method,
                            "results": results,
                            "requested": skipped,
                            "median_suggest_seconds": None,
                            "p90_suggest_seconds": None,
                            "note": f"skipped: {self.note}",
                        }
                    ),
                    flush=True,
                )
            self.targets = []
        self.finished = not self.targets


def p90(values: list[float]) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[8]


class Ledger:
    """Epochs, results and the regret trace of one run; the timing hooks when ``timing`` is given."""

    def __init__(
        self, benchmark: str, seed: int, max_fidelity: int, budget: float, timing: Timing | None = None
    ) -> None:
        import mfpbench

        dims, self.optimum = BENCHMARKS[benchmark]
        self.names = [f"X_{i}" for i in range(dims)]
        self.bench = mfpbench.get(benchmark, seed=seed)
        self.max_fidelity = max_fidelity
        self.budget_epochs = math.inf if timing else int(budget * max_fidelity)
        self.timing = timing
        self.epochs = 0
        self.results = 0
        self.trials = 0
        self.best = math.inf
        self.fbe: list[float] = []
        self.regret: list[float] = []

    @property
    def done(self) -> bool:
        if self.timing is not None:
            return self.timing.finished
        return self.epochs >= self.budget_epochs

    def spend(self, epochs: int) -> bool:
        """Charge ``epochs``; False (and the budget used up) when that would cross the budget."""
        if self.epochs + epochs > self.budget_epochs:
            self.epochs = int(self.budget_epochs)
            return False
        self.epochs += epochs
        return True

    def query(self, config: dict[str, float], fidelity: int) -> float:
        """The loss at ``fidelity`` (already paid for with :meth:`spend`), recorded as a result."""
        value = float(self.bench.query(config, at=fidelity).error)
        self.results += 1
        if fidelity == self.max_fidelity and value < self.best:
            self.best = value
            self.fbe.append(self.epochs / self.max_fidelity)
            self.regret.append(value - self.optimum)
        return value

    @contextlib.contextmanager
    def suggesting(self) -> Iterator[None]:
        if self.timing is None:
            yield
            return
        self.timing.before_suggest(self.results)
        started = time.perf_counter()
        yield
        self.timing.after_suggest(time.perf_counter() - started, self.results, self.trials + 1)

    @contextlib.contextmanager
    def deciding(self) -> Iterator[None]:
        if self.timing is None or not self.timing.active:
            yield
            return
        started = time.perf_counter()
        yield
        self.timing.decide.append(time.perf_counter() - started)


def run_optuna(ledger: Ledger, seed: int, eta: int, hyperband: bool, study_name: str) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    r = ledger.max_fidelity
    pruner: Any = (
        optuna.pruners.HyperbandPruner(min_resource=1, max_resource=r, reduction_factor=eta)
        if hyperband
        else optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=eta)
    )
    study = optuna.create_study(
        study_name=study_name,  # fixed: Hyperband assigns brackets by a hash of the name
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=pruner,
    )
    pruned = optuna.trial.TrialState.PRUNED
    while not ledger.done:
        with ledger.suggesting():
            trial = study.ask()
            config = {name: trial.suggest_float(name, 0.0, 1.0) for name in ledger.names}
        ledger.trials += 1
        for epoch in range(1, r + 1):
            if not ledger.spend(1):
                return
            value = ledger.query(config, epoch)
            with ledger.deciding():
                trial.report(value, epoch)
                if epoch == r:
                    study.tell(trial, value)
                    stop = True
                elif trial.should_prune():
                    study.tell(trial, state=pruned)
                    stop = True
                else:
                    stop = False
            if stop or ledger.done:
                break


def run_dehb(ledger: Ledger, seed: int, eta: int, retrain: bool) -> None:
    import ConfigSpace
    from dehb import DEHB
    from loguru import logger

    space = ConfigSpace.ConfigurationSpace(seed=seed)
    space.add([ConfigSpace.Float(name, (0.0, 1.0)) for name in ledger.names])
    with tempfile.TemporaryDirectory(prefix="peers-dehb-") as scratch, warnings.catch_warnings():
        # ConfigSpace 1.x deprecates the accessors DEHB 0.1.2 calls.
        warnings.simplefilter("ignore", DeprecationWarning)
        # DEHB points loguru at stdout (our JSON lines) and a dehb.log in output_path: the first goes to
        # a buffer, the second to the scratch directory, and both sinks are removed right after.
        with contextlib.redirect_stdout(io.StringIO()):
            dehb = DEHB(
                cs=space,
                min_fidelity=1,
                max_fidelity=ledger.max_fidelity,
                eta=eta,
                n_workers=1,
                seed=seed,
                output_path=scratch,
                save_freq=None,  # no incumbent/history/state files (only its run() would save)
            )
        logger.remove()
        highest: dict[tuple[float, ...], int] = {}  # parameter values -> highest fidelity evaluated
        while not ledger.done:
            with ledger.suggesting():
                job = dehb.ask()
            config = {name: float(job["config"][name]) for name in ledger.names}
            # DEHB's fidelities are floats (R * eta^-k): the query and the cost use the nearest integer.
            fidelity = round(float(job["fidelity"]))
            key = tuple(config[name] for name in ledger.names)
            previous = highest.get(key)
            if previous is None:
                ledger.trials += 1
                previous = 0
            cost = fidelity if retrain else max(0, fidelity - previous)
            if not ledger.spend(cost):
                return
            value = ledger.query(config, fidelity)
            highest[key] = max(previous, fidelity)
            with ledger.deciding():
                dehb.tell(job, {"fitness": value, "cost": float(cost)})


def run_syne(ledger: Ledger, seed: int, eta: int, bohb: bool) -> None:
    import numpy as np
    from syne_tune.config_space import uniform
    from syne_tune.optimizer.baselines import ASHA, BOHB
    from syne_tune.optimizer.scheduler import SchedulerDecision

    # Syne Tune 0.16's random searcher (and the KDE's random fraction, and on_trial_add) draw from numpy's
    # global generator. It gets a value derived from the seed, not the seed: the wrapping searcher's own
    # RandomState(seed) draws the first configurations, and the same stream would then repeat them.
    np.random.seed(int(np.random.SeedSequence(seed).generate_state(1)[0]))
    # The 0.16 baselines pass points_to_evaluate twice and their wrapper warns about it at every start.
    logging.getLogger("syne_tune.optimizer.schedulers.searchers.last_value_multi_fidelity_searcher").setLevel(
        logging.ERROR
    )
    r = ledger.max_fidelity
    config_space = {name: uniform(0.0, 1.0) for name in ledger.names}
    kind: Any = BOHB if bohb else ASHA
    scheduler = kind(
        config_space=config_space,
        metric="error",
        time_attr="epoch",
        max_t=r,
        do_minimize=True,
        random_seed=seed,
        grace_period=1,
        reduction_factor=eta,
    )
    with warnings.catch_warnings():
        # statsmodels 0.15 (the KDE searcher) warns at every fit that rng=None means numpy's global
        # generator, which is the one seeded above.
        warnings.simplefilter("ignore", FutureWarning)
        syne_loop(ledger, scheduler, SchedulerDecision.STOP)


def syne_loop(ledger: Ledger, scheduler: Any, stop: str) -> None:
    from datetime import datetime

    from syne_tune.backend.trial_status import Trial

    r = ledger.max_fidelity
    while not ledger.done:
        with ledger.suggesting():
            suggestion = scheduler.suggest()
            if suggestion is None:
                raise RuntimeError("the Syne Tune searcher ran out of configurations")
            trial = Trial(trial_id=ledger.trials, config=suggestion.config, creation_time=datetime.now())
            scheduler.on_trial_add(trial)
        ledger.trials += 1
        config = {name: float(suggestion.config[name]) for name in ledger.names}
        for epoch in range(1, r + 1):
            if not ledger.spend(1):
                return
            value = ledger.query(config, epoch)
            with ledger.deciding():
                decision = scheduler.on_trial_result(trial, {"error": value, "epoch": epoch})
                if decision == stop:
                    scheduler.on_trial_remove(trial)  # what the Tuner does after a STOP
            if decision == stop or ledger.done:
                break


def runner(peer: str, benchmark: str, seed: int, eta: int) -> Callable[[Ledger], None]:
    if peer in ("optuna-tpe-sh", "optuna-tpe-hb"):
        hyperband = peer == "optuna-tpe-hb"
        name = f"{peer}-{benchmark}-{seed}"
        return lambda ledger: run_optuna(ledger, seed, eta, hyperband, name)
    if peer in ("dehb", "dehb-retrain"):
        return lambda ledger: run_dehb(ledger, seed, eta, retrain=peer == "dehb-retrain")
    return lambda ledger: run_syne(ledger, seed, eta, bohb=peer == "syne-bohb")


def run_one(
    peer: str, benchmark: str, seed: int, budget: float, max_fidelity: int, eta: int
) -> dict[str, Any]:
    started = time.perf_counter()
    ledger = Ledger(benchmark, seed, max_fidelity, budget)
    runner(peer, benchmark, seed, eta)(ledger)
    return {
        "benchmark": benchmark,
        "method": peer,
        "seed": seed,
        "max_fidelity": max_fidelity,
        "fbe": ledger.fbe,
        "regret": ledger.regret,
        "trials": ledger.trials,
        "seconds": time.perf_counter() - started,
        "accounting": PEERS[peer][0],
    }


def timing(
    peer: str,
    benchmark: str,
    seed: int,
    targets: list[int],
    repeats: int,
    max_fidelity: int,
    eta: int,
    max_seconds: float,
) -> None:
    clock = Timing(peer, targets, repeats, max_seconds)
    ledger = Ledger(benchmark, seed, max_fidelity, math.inf, timing=clock)
    runner(peer, benchmark, seed, eta)(ledger)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"{what} is {text!r}, but must be comma-separated integers") from None
    if not values or min(values) < 0:
        raise UsageError(f"{what} is {text!r}, but must be non-negative integers, at least one")
    return values


def check(args: argparse.Namespace) -> None:
    if args.peer not in PEERS:
        raise UsageError(f"peer is {args.peer!r}, but must be one of {', '.join(PEERS)}")
    if args.benchmark not in BENCHMARKS:
        raise UsageError(f"benchmark is {args.benchmark!r}, but must be one of {', '.join(BENCHMARKS)}")
    if not 2 <= args.max_fidelity <= MAX_BENCH_FIDELITY:
        raise UsageError(f"max fidelity is {args.max_fidelity}, but must be in [2, {MAX_BENCH_FIDELITY}]")
    if args.eta < 2:
        raise UsageError(f"eta is {args.eta}, but must be an integer >= 2")
    for module in ("mfpbench", *PEERS[args.peer][1]):
        if importlib.util.find_spec(module) is None:
            raise UsageError(
                f"peer {args.peer!r} needs the package {module!r}, not installed in {sys.prefix}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = Parser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    run = commands.add_parser("run", help="runs one peer on one benchmark, one JSON line per seed")
    clock = commands.add_parser("timing", help="times a peer's suggestions after N results")
    for sub in (run, clock):
        sub.add_argument("--peer", required=True, help=", ".join(PEERS))
        sub.add_argument("--max-fidelity", type=int, default=MAX_BENCH_FIDELITY)
        sub.add_argument("--eta", type=int, default=3)
    run.add_argument("--benchmark", required=True, help=", ".join(BENCHMARKS))
    run.add_argument("--seeds", default="0,1,2")
    run.add_argument("--budget", type=float, default=150.0, help="full-budget equivalents per run")
    clock.add_argument("--benchmark", default="mfh3")
    clock.add_argument("--results", default="100,1000,5000")
    clock.add_argument("--repeats", type=int, default=20)
    clock.add_argument("--seed", type=int, default=0)
    clock.add_argument("--max-seconds", type=float, default=120.0, help="time allowed to reach the results")
    try:
        args = parser.parse_args(argv)
        check(args)
        if args.command == "run":
            if not (math.isfinite(args.budget) and args.budget > 0):
                raise UsageError(f"budget is {args.budget:g}, but must be a positive number of FBE")
            seeds = int_list(args.seeds, "seeds")
        else:
            targets = int_list(args.results, "results")
            if min(targets) < 1 or args.repeats < 1 or not args.max_seconds > 0:
                raise UsageError("results and repeats must be >= 1 and max-seconds > 0")
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.command == "run":
        for seed in seeds:
            outcome = run_one(args.peer, args.benchmark, seed, args.budget, args.max_fidelity, args.eta)
            print(json.dumps(outcome), flush=True)
    else:
        timing(
            args.peer,
            args.benchmark,
            args.seed,
            targets,
            args.repeats,
            args.max_fidelity,
            args.eta,
            args.max_seconds,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
