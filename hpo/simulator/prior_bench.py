"""Adapter for mf-prior-bench's multi-fidelity Hartmann functions (Mallik et al., "PriorBand", NeurIPS 2023;
PyPI ``mf-prior-bench``, import ``mfpbench``).

``mfpbench.get(name, seed=...)`` gives a benchmark whose fidelity z runs 1..100 and whose parameters are
X_0 .. X_{d-1} in [0, 1]; ``query(config, at=z).error`` is the objective (lower is better, exact at
z = 100). The ``_terrible`` variants flatten and even invert the landscape at low fidelity and add noise
there, so low-fidelity rankings mislead. The package is imported lazily: nothing else in agvp-hpo needs it,
and it must be installed with ``pip install --no-deps mf-prior-bench`` (it pins numpy<2 but works with
numpy 2) next to ``configspace`` and ``more-itertools`` - the ``bench`` extra.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hpo.simulator.engine import LearningCurve
from hpo.space import FloatParam, SearchSpace
from trainers.errors import AgvpError

#: name -> (dimensions, optimum at z = 100). The variants differ only in how far the low fidelities are
#: biased and noisy (mf-prior-bench's (bias, noise): plain (0.5, 0.1), good (2.5, 2), moderate (3, 3),
#: bad (3.5, 4), terrible (4, 5)); the function at z = 100 is the same Hartmann function.
BENCHMARKS: dict[str, tuple[int, float]] = {
    f"mfh{dims}{variant}": (dims, optimum)
    for dims, optimum in ((3, -3.86278), (6, -3.32237))
    for variant in ("", "_good", "_moderate", "_bad", "_terrible")
}
MIN_FIDELITY = 1
MAX_FIDELITY = 100


class MissingDependencyError(AgvpError, ImportError):
    """An optional package (here mf-prior-bench) is needed but not installed."""


@dataclass(frozen=True)
class BenchmarkProblem:
    """A search space, a learning curve over fidelity 1..``max_fidelity``, and the known optimum."""

    name: str
    space: SearchSpace
    curve: LearningCurve
    optimum: float
    max_fidelity: int = MAX_FIDELITY
    mode: str = "min"
    bench: Any = None  # the mfpbench benchmark object (for its priors and sampler)

    def regret(self, value: float) -> float:
        """Simple regret of a value measured at the full fidelity."""
        return value - self.optimum


def mfpbench_problem(name: str, *, seed: int, max_fidelity: int = MAX_FIDELITY) -> BenchmarkProblem:
    """The mf-prior-bench Hartmann benchmark ``name`` (a key of :data:`BENCHMARKS`), noise seed ``seed``,
    with fidelities 1..``max_fidelity`` (100, or e.g. 81 for the grid eta^k; its full fidelity is then
    z = 81, slightly biased, and regret is still measured against the z = 100 optimum)."""
    if not MIN_FIDELITY < max_fidelity <= MAX_FIDELITY:
        raise ValueError(f"max_fidelity is {max_fidelity}, but must be in ({MIN_FIDELITY}, {MAX_FIDELITY}]")
    if name not in BENCHMARKS:
        raise ValueError(f"benchmark is {name!r}, but must be one of {', '.join(BENCHMARKS)}")
    try:
        import mfpbench
    except ImportError as error:
        raise MissingDependencyError(
            f"benchmark {name!r} needs mf-prior-bench ({error}); install it with "
            "`pip install --no-deps mf-prior-bench configspace more-itertools`"
        ) from None
    dims, optimum = BENCHMARKS[name]
    bench = mfpbench.get(name, seed=seed)
    space = SearchSpace({f"X_{i}": FloatParam(low=0.0, high=1.0) for i in range(dims)})

    def curve(config: Mapping[str, Any], resource: int) -> float:
        if not MIN_FIDELITY <= resource <= max_fidelity:
            raise ValueError(f"resource is {resource}, but must be in [{MIN_FIDELITY}, {max_fidelity}]")
        return float(bench.query(dict(config), at=int(resource)).error)

    return BenchmarkProblem(
        name=name, space=space, curve=curve, optimum=optimum, max_fidelity=max_fidelity, bench=bench
    )
