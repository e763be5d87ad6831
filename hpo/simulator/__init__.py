"""The simulator backend: scheduler cores and searchers against learning-curve functions in simulated time,
writing the same result rows as the real backend. No Ray import."""

from __future__ import annotations

from hpo.simulator.engine import LearningCurve, SimulationResult, simulate
from hpo.simulator.prior_bench import BENCHMARKS, BenchmarkProblem, MissingDependencyError, mfpbench_problem

__all__ = [
    "BENCHMARKS",
    "BenchmarkProblem",
    "LearningCurve",
    "MissingDependencyError",
    "SimulationResult",
    "mfpbench_problem",
    "simulate",
]
