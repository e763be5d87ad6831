"""Hyperband bracket arithmetic: Algorithm 1 of Li et al., "Hyperband: A Novel Bandit-Based Approach to
Hyperparameter Optimization", JMLR 18 (2018).

Symbols of the paper and our names: R = ``max_resource`` (epochs of a full training run), r =
``min_resource`` (the smallest budget worth measuring; the paper's r = 1), eta = ``reduction_factor``.

* s_max = floor(log_eta(R / r)), computed with an integer loop (``math.log(243, 3)`` is 4.999...);
* B = (s_max + 1) R is the budget of one bracket;
* for s = s_max .. 0: n = ceil((B / R) eta^s / (s + 1)) configurations start at r_s = R eta^-s epochs;
* successive halving inside bracket s: rung i = 0 .. s evaluates n_i = floor(n eta^-i) configurations at
  r_i = r_s eta^i epochs and keeps the best floor(n_i / eta) for rung i + 1.

**The paper's printed table is not Algorithm 1.** For R = 81, eta = 3 the table in the paper lists bracket
sizes 81, 27, 9, 6, 5; Algorithm 1 gives 81, 34, 15, 8, 5 (e.g. s = 3: ceil(5 * 27 / 4) = 34). We implement
Algorithm 1, and the tests pin its numbers.

Resources are whole epochs: r_i = floor(R eta^(i - s)), exact when R / r is a power of eta, never below r
(because r eta^s_max <= R). For R = 100, eta = 3 the milestones are 1, 3, 11, 33, 100.

Cost of a bracket: *restarted* promotions retrain from scratch (sum of n_i r_i epochs); *resumed* promotions
continue from the checkpoint of the previous rung and pay only r_i - r_(i-1) extra epochs (what our engine
does). One full pass at R = 81, eta = 3 costs 1,581 epochs resumed (19.52 full-budget equivalents, FBE =
epochs / R) and 1,902 epochs restarted.
"""

from __future__ import annotations

from dataclasses import dataclass


def check_resources(max_resource: int, reduction_factor: int, min_resource: int = 1) -> None:
    """Raise ``ValueError`` naming the first of R, eta, r that breaks its rule."""
    for name, value, low in (
        ("max_resource", max_resource, 1),
        ("reduction_factor", reduction_factor, 2),
        ("min_resource", min_resource, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} is {value!r}, but must be an integer >= {low}")
        if value < low:
            raise ValueError(f"{name} is {value}, but must be >= {low}")
    if min_resource > max_resource:
        raise ValueError(f"min_resource is {min_resource}, but must be <= max_resource ({max_resource})")


def max_bracket_index(max_resource: int, reduction_factor: int, min_resource: int = 1) -> int:
    """s_max = floor(log_eta(R / r)): the largest s with r eta^s <= R, found exactly with integers."""
    check_resources(max_resource, reduction_factor, min_resource)
    s = 0
    while min_resource * reduction_factor ** (s + 1) <= max_resource:
        s += 1
    return s


def milestones(max_resource: int, reduction_factor: int, min_resource: int = 1) -> tuple[int, ...]:
    """Every rung resource of every bracket, ascending: floor(R eta^-k) for k = s_max .. 0.

    ASHA and MFHO use the same grid, so all schedulers measure configurations at the same epochs."""
    s_max = max_bracket_index(max_resource, reduction_factor, min_resource)
    return tuple(max_resource // reduction_factor**k for k in range(s_max, -1, -1))


@dataclass(frozen=True)
class Rung:
    """One step of successive halving: ``configs`` configurations trained to ``resource`` epochs, of which
    the best ``keep`` continue to the next rung (0 at the last rung of a bracket)."""

    resource: int
    configs: int
    keep: int

    def __post_init__(self) -> None:
        if self.resource < 1:
            raise ValueError(f"resource is {self.resource}, but must be >= 1")
        if self.configs < 1:
            raise ValueError(f"configs is {self.configs}, but must be >= 1")
        if not 0 <= self.keep <= self.configs:
            raise ValueError(f"keep is {self.keep}, but must be in [0, configs={self.configs}]")


@dataclass(frozen=True)
class Bracket:
    """Bracket ``s`` of Hyperband: s + 1 rungs of successive halving (Algorithm 1, inner loop)."""

    s: int
    rungs: tuple[Rung, ...]

    def __post_init__(self) -> None:
        if len(self.rungs) != self.s + 1:
            raise ValueError(f"bracket s={self.s} has {len(self.rungs)} rungs, but must have s + 1")
        for lower, upper in zip(self.rungs, self.rungs[1:], strict=False):
            if upper.resource <= lower.resource:
                raise ValueError(f"rung resources {lower.resource}, {upper.resource} must increase")
            if upper.configs != lower.keep:
                raise ValueError(
                    f"rung of {upper.configs} configs follows keep={lower.keep}; they must match"
                )
        if self.rungs[-1].keep != 0:
            raise ValueError(f"the last rung keeps {self.rungs[-1].keep}, but must keep 0")

    @property
    def configs(self) -> int:
        """n: configurations sampled for this bracket."""
        return self.rungs[0].configs

    @property
    def epochs_resumed(self) -> int:
        """Epochs when promoted configurations resume from their checkpoint (pay only the extra epochs)."""
        previous = 0
        total = 0
        for rung in self.rungs:
            total += rung.configs * (rung.resource - previous)
            previous = rung.resource
        return total

    @property
    def epochs_restarted(self) -> int:
        """Epochs when every promotion retrains from scratch."""
        return sum(rung.configs * rung.resource for rung in self.rungs)


@dataclass(frozen=True)
class HyperbandPlan:
    """All brackets of one Hyperband pass, s = s_max first (Algorithm 1's order)."""

    max_resource: int
    reduction_factor: int
    min_resource: int
    brackets: tuple[Bracket, ...]

    def __post_init__(self) -> None:
        check_resources(self.max_resource, self.reduction_factor, self.min_resource)
        if not self.brackets:
            raise ValueError("a Hyperband plan needs at least one bracket")

    @property
    def s_max(self) -> int:
        return self.brackets[0].s

    def bracket(self, s: int) -> Bracket:
        """Bracket ``s`` (0 = the hedge bracket: plain random search at R)."""
        if not 0 <= s <= self.s_max:
            raise ValueError(f"s is {s}, but must be in [0, {self.s_max}]")
        return self.brackets[self.s_max - s]

    @property
    def epochs_resumed(self) -> int:
        return sum(b.epochs_resumed for b in self.brackets)

    @property
    def epochs_restarted(self) -> int:
        return sum(b.epochs_restarted for b in self.brackets)

    @property
    def fbe_resumed(self) -> float:
        """Full-budget equivalents of one pass with resumed promotions: epochs / R."""
        return self.epochs_resumed / self.max_resource

    @property
    def fbe_restarted(self) -> float:
        return self.epochs_restarted / self.max_resource

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (``agvp-hpo plan --json``)."""
        return {
            "max_resource": self.max_resource,
            "reduction_factor": self.reduction_factor,
            "min_resource": self.min_resource,
            "s_max": self.s_max,
            "brackets": [
                {
                    "s": b.s,
                    "configs": b.configs,
                    "rungs": [
                        {"resource": r.resource, "configs": r.configs, "keep": r.keep} for r in b.rungs
                    ],
                    "epochs_resumed": b.epochs_resumed,
                    "epochs_restarted": b.epochs_restarted,
                }
                for b in self.brackets
            ],
            "epochs_resumed": self.epochs_resumed,
            "epochs_restarted": self.epochs_restarted,
            "fbe_resumed": self.fbe_resumed,
            "fbe_restarted": self.fbe_restarted,
        }


def bracket_size(s: int, s_max: int, reduction_factor: int) -> int:
    """n = ceil((s_max + 1) eta^s / (s + 1)) in exact integer arithmetic (B / R = s_max + 1)."""
    return -(-(s_max + 1) * reduction_factor**s // (s + 1))


def make_bracket(s: int, max_resource: int, reduction_factor: int, min_resource: int = 1) -> Bracket:
    """Bracket ``s`` of Algorithm 1 for these resources."""
    s_max = max_bracket_index(max_resource, reduction_factor, min_resource)
    if not 0 <= s <= s_max:
        raise ValueError(f"s is {s}, but must be in [0, s_max={s_max}]")
    n = bracket_size(s, s_max, reduction_factor)
    rungs = []
    for i in range(s + 1):
        configs = n // reduction_factor**i
        keep = configs // reduction_factor if i < s else 0
        resource = max_resource * reduction_factor**i // reduction_factor**s
        rungs.append(Rung(resource=resource, configs=configs, keep=keep))
    return Bracket(s=s, rungs=tuple(rungs))


def plan_hyperband(max_resource: int, reduction_factor: int = 3, min_resource: int = 1) -> HyperbandPlan:
    """One Hyperband pass (Algorithm 1): brackets s = s_max .. 0."""
    s_max = max_bracket_index(max_resource, reduction_factor, min_resource)
    brackets = tuple(
        make_bracket(s, max_resource, reduction_factor, min_resource) for s in range(s_max, -1, -1)
    )
    return HyperbandPlan(max_resource, reduction_factor, min_resource, brackets)
