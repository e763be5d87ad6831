"""Search quality of our scheduler/searcher pairs and of the established libraries a user would pick instead,
side by side on mf-prior-bench's multi-fidelity Hartmann functions.

Why this exists: a multi-fidelity method earns its place only if it reaches good configurations with less
training than the alternatives, and must not lose much when low fidelities mislead.

Setting (REFERENCE_HPO.md): a budget of 150 full-budget equivalents (FBE = epochs trained / R), eta = 3,
fidelity 1..R, cost linear in fidelity, one worker. Both rung grids: R = 100 (our milestones 1/3/11/33/100)
and R = 81 (1/3/9/27/81, the grid on which peers that decide at eta^k lose nothing). Our pairs run through
the simulator exactly as a study would (hpo.simulator.simulate: promotions resume from checkpoints). Peers
run in benchmarks/peers.py (its docstring lists their settings and how each is charged: ``stop`` - trained
epoch by epoch and stopped, ``resume`` - checkpoint credit, ``retrain`` - every job from scratch); DEHB and
Syne Tune need their own virtualenv (``make bench-peers`` creates ``.venv-peers``; without it those peers
are skipped with a note, Optuna's run in ``.venv``).

Functions: all ten mf-prior-bench Hartmann variants, split once and for all (it is written here and never
changes with what the results say):

* tuning set (our defaults were chosen looking at these): mfh3, mfh6, mfh3_terrible, mfh6_terrible;
* held-out set (reported, never tuned on): mfh3_good, mfh3_moderate, mfh3_bad, mfh6_good, mfh6_moderate,
  mfh6_bad.

Simple regret after x FBE is the value (at z = 100) of the best configuration *evaluated at the full
fidelity R* so far, minus the known optimum; a seed without a full-fidelity result yet has infinite regret.
Reported per function and method: the median FBE to reach regret <= 0.5 / 0.1 / 0.01 (a seed that never
reaches it counts as infinite, so the median is "-" when half the seeds or more miss) with the share of
seeds that did; the median regret at 10 / 20 / 50 / 150 FBE (infinite seeds included); and each against
the best peer on that function (ratio < 1: ours is better), with a bootstrap interval of the ratio (5-95 %
over 2,000 resamples of each side's seeds: medians over 10-20 seeds of these bimodal regrets move by 2-3x
between random streams, so a ratio without its interval says little). A PNG per function (median and
quartiles of regret against FBE). ``--timing`` measures the wall-clock cost of one suggestion of each
searcher after 100 / 1,000 / 5,000 results, ours in-process and the peers' through peers.py.

``--fidelity data_fraction`` benchmarks the data-subset fidelity (``fidelity.resource: data_fraction``): the
Hartmann functions' fidelity z is read as the share of the training data, a rung trains the whole
schedule, so every job - promotions too - trains from scratch and pays its whole fidelity; DEHB retraining
is the comparable peer (Optuna's and Syne Tune's trials continue, which a data fraction cannot).

Needs the ``bench`` extra (``make bench``: mf-prior-bench installed with --no-deps; matplotlib for PNGs).

Every report stores its runs; ``--reuse`` pools the runs of earlier reports with this run's (same budget and
fidelity), so seeds can be added later (``--first-seed 20 --seeds 10``) and slow peers run once.

    python benchmarks/search_quality.py [--seeds 10] [--first-seed 0] [--budget 150] [--grids 100,81]
        [--benchmarks tuning|held-out|all|mfh3,...] [--methods hyperband+mf-tpe,...,optuna-tpe-sh,...]
        [--jobs 2] [--timing] [--peers-python .venv-peers/bin/python] [--fidelity epochs|data_fraction]
        [--json-out benchmarks/results/search_quality.json] [--png-dir benchmarks/results/search_quality]
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from hpo.schedulers import make_scheduler
from hpo.searchers import make_searcher
from hpo.searchers.prior import Prior
from hpo.simulator import mfpbench_problem, simulate

ROOT = Path(__file__).resolve().parent.parent
ETA = 3
TUNING = ("mfh3", "mfh6", "mfh3_terrible", "mfh6_terrible")
HELD_OUT = ("mfh3_good", "mfh3_moderate", "mfh3_bad", "mfh6_good", "mfh6_moderate", "mfh6_bad")
THRESHOLDS = (0.5, 0.1, 0.01)
CHECKPOINTS = (10.0, 20.0, 50.0, 150.0)
#: Ours: scheduler+searcher (fifo+random is random search). The default pair is what a study file gets
#: when it names only the kinds, and the bundled search_spaces/mfho.yaml's.
OURS = (
    "fifo+random",
    "fifo+tpe",
    "hyperband+random",
    "hyperband+mf-tpe",
    "asha+random",
    "asha+mf-tpe",
    "asha-stopping+random",
    "mfho+mf-tpe",
    "mfho-hedge+mf-tpe",
)
DEFAULT_PAIR = "hyperband+mf-tpe"
#: Peers (benchmarks/peers.py) and the package each needs.
PEERS = {
    "optuna-tpe-sh": "optuna",
    "optuna-tpe-hb": "optuna",
    "dehb": "dehb",
    "dehb-retrain": "dehb",
    "syne-asha": "syne_tune",
    "syne-bohb": "syne_tune",
}
DEFAULT_METHODS = ("fifo+random", "hyperband+mf-tpe", "asha+mf-tpe", "mfho-hedge+mf-tpe", *PEERS)
#: With ``--fidelity data_fraction`` (a whole schedule per rung: every job trains from scratch) only peers
#: that charge every job in full are comparable, and only our schedulers whose jobs end at rungs apply.
RETRAINING_PEERS = ("dehb-retrain",)
STOPS_MIDWAY = ("mfho-hedge", "asha-stopping")
TIMING_RESULTS = (100, 1000, 5000)
GRID_POINTS = 301
#: Seed resamples for the ratio intervals, and the interval's percentiles.
BOOTSTRAP = 2000
INTERVAL = (5.0, 95.0)
#: What a stored run keeps (enough to summarise it again when a later report merges it).
RUN_KEYS = ("benchmark", "method", "seed", "max_fidelity", "fbe", "regret", "trials", "seconds", "accounting")


@functools.cache
def worst_configuration(dims: int) -> dict[str, float]:
    """mf-prior-bench's "bad" prior: the worst of many uniform samples at the full fidelity (the z = 100
    function is the same for every seed and variant; mf-prior-bench samples 10^6, 20,000 suffice here)."""
    problem = mfpbench_problem(f"mfh{dims}", seed=0)
    rng = np.random.default_rng(12345)
    samples = [problem.space.sample(rng) for _ in range(20_000)]
    return max(samples, key=lambda c: problem.curve(c, 100))


def benchmark_prior(problem: Any, kind: str, seed: int) -> Prior | None:
    """mf-prior-bench's priors (``python -m mfpbench priors`` defaults): ``good`` is the optimum perturbed by
    a Gaussian of 0.01 of each range, ``bad`` the worst sampled configuration; both at confidence medium
    (a user does not know whether their prior is good)."""
    if kind == "none":
        return None
    if kind == "good":
        rng = np.random.default_rng(10_000 + seed)
        optimum = {k: float(v) for k, v in dict(problem.bench.optimum).items()}
        values = {k: float(np.clip(v + rng.normal() * 0.01, 0.0, 1.0)) for k, v in optimum.items()}
    else:
        values = worst_configuration(problem.space.dimensions)
    return Prior(values=values, confidence={})


def run_ours(
    benchmark: str,
    method: str,
    seed: int,
    budget: float,
    grid: int,
    prior: str = "none",
    retrain: bool = False,
) -> dict[str, Any]:
    """One study of our pair: the FBE at which each new best full-fidelity result arrived, and its regret.
    ``retrain``: the fidelity is a data fraction (``fidelity.resource: data_fraction``), so every job trains
    from scratch and pays its whole target."""
    scheduler, searcher = method.split("+")
    problem = mfpbench_problem(benchmark, seed=seed, max_fidelity=grid)
    rng = np.random.default_rng(seed)
    options = {} if prior == "none" else {"prior": benchmark_prior(problem, prior, seed)}
    core = make_scheduler(
        scheduler,
        make_searcher(searcher, problem.space, rng, **options),
        max_resource=grid,
        reduction_factor=ETA,
        mode="min",
        max_total_resource=int(budget * grid),
        retrain=retrain,
    )
    started = time.perf_counter()
    result = simulate(core, problem.curve, study=f"{benchmark}-{method}-{seed}")
    fbe, regret = [], []
    best = math.inf
    for row in result.rows:
        if row["resource"] == grid and row["value"] < best:
            best = row["value"]
            fbe.append(row["total_resource"] / grid)
            regret.append(problem.regret(best))
    return {
        "benchmark": benchmark,
        "method": method if prior == "none" else f"{method}@{prior}-prior",
        "seed": seed,
        "max_fidelity": grid,
        "fbe": fbe,
        "regret": regret,
        "trials": core.num_trials,
        "seconds": time.perf_counter() - started,
        "accounting": "retrain" if retrain else "resume",
    }


def run_peer(
    python: str, peer: str, benchmark: str, seeds: list[int], budget: float, grid: int
) -> list[dict[str, Any]]:
    """All seeds of one peer on one function and grid, through benchmarks/peers.py in ``python``."""
    command = [
        python,
        str(ROOT / "benchmarks" / "peers.py"),
        "run",
        "--peer",
        peer,
        "--benchmark",
        benchmark,
        "--seeds",
        ",".join(map(str, seeds)),
        "--budget",
        str(budget),
        "--max-fidelity",
        str(grid),
        "--eta",
        str(ETA),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{peer} on {benchmark} (R = {grid}) failed: {done.stderr.strip()[-2000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def fbe_to_reach(run: dict[str, Any], threshold: float) -> float:
    return next((f for f, r in zip(run["fbe"], run["regret"], strict=True) if r <= threshold), math.inf)


def regret_at(run: dict[str, Any], fbe: float) -> float:
    """Best full-fidelity regret after ``fbe`` (infinite before the first full-fidelity result)."""
    out = math.inf
    for f, r in zip(run["fbe"], run["regret"], strict=True):
        if f <= fbe:
            out = r
    return out


def curve_quartiles(group: list[dict[str, Any]], grid: np.ndarray) -> dict[str, list[float | None]]:
    curves = np.array([[regret_at(run, x) for x in grid] for run in group])
    out: dict[str, list[float | None]] = {}
    for name, q in (("q25", 25), ("median", 50), ("q75", 75)):
        values = np.percentile(curves, q, axis=0, method="lower")  # inf stays inf (no interpolation)
        out[name] = [None if not math.isfinite(v) else float(v) for v in values]
    return out


def finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def per_seed(group: list[dict[str, Any]], checkpoints: list[float]) -> dict[str, list[Any]]:
    """Each seed's figures (None: never reached / no full-fidelity result yet), for the intervals."""
    out: dict[str, list[Any]] = {"seed": [r["seed"] for r in group]}
    for t in THRESHOLDS:
        out[f"fbe_to_{t}"] = [finite_or_none(fbe_to_reach(r, t)) for r in group]
    for c in checkpoints:
        out[f"regret_at_{c}"] = [finite_or_none(regret_at(r, c)) for r in group]
    return out


def ratio_interval(ours: list[float | None], peer: list[float | None], seed: int = 0) -> list[float] | None:
    """A bootstrap interval (``INTERVAL`` percentiles over ``BOOTSTRAP`` resamples of each side's seeds)
    of median(ours) / median(peer); None (a missing value) counts as infinite. None when the ratio is
    undefined (both medians infinite) in more than 5 % of the resamples."""
    a = np.array([math.inf if v is None else v for v in ours], dtype=float)
    b = np.array([math.inf if v is None else v for v in peer], dtype=float)
    if not len(a) or not len(b):
        return None
    rng = np.random.default_rng(seed)
    # lower/higher order statistics: an even-sized resample's median is one of its own values, never inf - inf
    ma = np.percentile(a[rng.integers(len(a), size=(BOOTSTRAP, len(a)))], 50, axis=1, method="lower")
    mb = np.percentile(b[rng.integers(len(b), size=(BOOTSTRAP, len(b)))], 50, axis=1, method="lower")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(mb > 0, ma / mb, np.where(ma > 0, math.inf, 1.0))
    defined = ratio[~np.isnan(ratio)]
    if len(defined) < 0.95 * BOOTSTRAP:
        return None
    low, high = INTERVAL
    return [
        float(np.percentile(defined, low, method="lower")),
        float(np.percentile(defined, high, method="higher")),
    ]


def summarise(runs: list[dict[str, Any]], budget: float, methods: list[str]) -> dict[str, Any]:
    """grid -> benchmark -> method -> figures (and, per benchmark, ratios to the best peer)."""
    summary: dict[str, Any] = {}
    fbe_grid = np.linspace(0, budget, GRID_POINTS)
    checkpoints = [c for c in CHECKPOINTS if c <= budget] or [budget]
    for grid in sorted({r["max_fidelity"] for r in runs}, reverse=True):
        by_benchmark: dict[str, Any] = {}
        for benchmark in [*TUNING, *HELD_OUT]:
            cells: dict[str, Any] = {}
            for method in methods:
                group = [
                    r
                    for r in runs
                    if r["benchmark"] == benchmark and r["method"] == method and r["max_fidelity"] == grid
                ]
                if not group:
                    continue
                reach = {t: [fbe_to_reach(r, t) for r in group] for t in THRESHOLDS}
                cells[method] = {
                    "seeds": len(group),
                    "accounting": group[0]["accounting"],
                    "fbe_to": {
                        str(t): {
                            "median": finite_or_none(statistics.median(v)),
                            "share": sum(math.isfinite(x) for x in v) / len(v),
                        }
                        for t, v in reach.items()
                    },
                    "regret_at": {
                        str(c): finite_or_none(statistics.median(regret_at(r, c) for r in group))
                        for c in checkpoints
                    },
                    "per_seed": per_seed(group, checkpoints),
                    "median_trials": statistics.median(r["trials"] for r in group),
                    "median_seconds": statistics.median(r["seconds"] for r in group),
                    "curve": {"fbe": fbe_grid.tolist(), **curve_quartiles(group, fbe_grid)},
                }
            if cells:
                by_benchmark[benchmark] = {"methods": cells, "vs_best_peer": versus_best_peer(cells)}
        summary[str(grid)] = by_benchmark
    return summary


def versus_best_peer(cells: dict[str, Any]) -> dict[str, Any]:
    """Each of our pairs against the best peer on the function, per figure (ratio < 1: ours is better)."""
    peers = {m: c for m, c in cells.items() if m in PEERS}
    if not peers:
        return {}

    def ratio(ours: float | None, best: float | None) -> float | None:
        if best is None:
            return 0.0 if ours is not None else None
        if ours is None:
            return math.inf
        return ours / best if best > 0 else (1.0 if ours <= 0 else math.inf)

    figures: dict[str, Any] = {}
    keys = [(f"fbe_to_{t}", lambda c, t=t: c["fbe_to"][str(t)]["median"]) for t in THRESHOLDS]
    keys += [
        (f"regret_at_{k}", lambda c, k=k: c["regret_at"][k]) for k in next(iter(cells.values()))["regret_at"]
    ]
    for name, get in keys:
        values = [get(c) for c in peers.values()]
        finite = [v for v in values if v is not None]
        best = min(finite) if finite else None
        best_peer = next((m for m, c in peers.items() if get(c) == best), None)
        figures[name] = {
            "best_peer": best_peer,
            "best_peer_value": best,
            "ratios": {m: ratio(get(c), best) for m, c in cells.items() if m not in PEERS},
        }
        peer_seeds = peers[best_peer].get("per_seed", {}).get(name) if best_peer else None
        if peer_seeds is not None:
            figures[name]["intervals"] = {
                m: ratio_interval(c["per_seed"][name], peer_seeds)
                for m, c in cells.items()
                if m not in PEERS and name in c.get("per_seed", {})
            }
    return figures


def method_rank(method: str) -> tuple[int, int, str]:
    """Table order: our pairs (prior variants after their pair), then the peers."""
    base = method.split("@")[0]
    if base in PEERS:
        return (1, list(PEERS).index(base), method)
    return (0, OURS.index(base) if base in OURS else len(OURS), method)


def read_reports(paths: list[Path], args: argparse.Namespace) -> list[tuple[Path, dict[str, Any]]]:
    """Earlier reports for ``--reuse``, checked against this run's setting (ValueError names the file)."""
    reports = []
    for path in paths:
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ValueError(f"{path}: cannot read it ({error})") from None
        setting = old.get("setting", {})
        if setting.get("fidelity", "epochs") != args.fidelity:
            raise ValueError(
                f"{path} was run with --fidelity {setting.get('fidelity', 'epochs')}, not {args.fidelity}"
            )
        if setting.get("budget_fbe") != args.budget:
            raise ValueError(
                f"{path} has budget {setting.get('budget_fbe')}, but this run has {args.budget}: only the "
                "same setting can be merged"
            )
        if not stored_runs(old) and (setting.get("seeds") != args.seeds or setting.get("first_seed", 0) != 0):
            raise ValueError(
                f"{path} stores no runs and has seeds {setting.get('seeds')}, but this run has {args.seeds} "
                "from seed 0: a report without runs merges only with the same seeds"
            )
        reports.append((path, old))
    return reports


def stored_runs(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's runs, if it stores them whole (reports written before RUN_KEYS kept only figures)."""
    runs = report.get("runs") or []
    return runs if runs and all(all(k in r for k in RUN_KEYS) for r in runs) else []


def merge_runs(runs: list[dict[str, Any]], reports: list[tuple[Path, dict[str, Any]]]) -> int:
    """Add the earlier reports' runs that this run did not make (same function, method, grid and seed:
    this run's wins), so seeds and methods of several runs pool into one table; returns how many."""
    have = {(r["benchmark"], r["method"], r["max_fidelity"], r["seed"]) for r in runs}
    added = 0
    for _, report in reports:
        for run in stored_runs(report):
            key = (run["benchmark"], run["method"], run["max_fidelity"], run["seed"])
            if key not in have:
                have.add(key)
                runs.append(dict(run))
                added += 1
    return added


def merge_reports(
    summary: dict[str, Any], reports: list[tuple[Path, dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Add the cells of methods this run did not run from earlier reports that store no runs (same seeds,
    checked by :func:`read_reports`); returns every report's suggestion timings. Ratios to the best peer are
    recomputed over the merged cells."""
    timings: list[dict[str, Any]] = []
    for _, old in reports:
        timings += old.get("timing", [])
        if stored_runs(old):
            continue  # merged run by run (merge_runs)
        for grid, benchmarks in old.get("results", {}).items():
            for benchmark, data in benchmarks.items():
                target = summary.setdefault(grid, {}).setdefault(benchmark, {"methods": {}})
                for method, cell in data["methods"].items():
                    target["methods"].setdefault(method, cell)
    for grid, benchmarks in summary.items():
        for data in benchmarks.values():
            data["methods"] = dict(sorted(data["methods"].items(), key=lambda item: method_rank(item[0])))
            data["vs_best_peer"] = versus_best_peer(data["methods"])
        summary[grid] = dict(sorted(benchmarks.items(), key=lambda item: [*TUNING, *HELD_OUT].index(item[0])))
    return timings


def fmt(x: float | None, digits: int = 1) -> str:
    if x is None:
        return "-"
    if math.isinf(x):
        return "inf"
    return f"{x:.{digits}f}" if abs(x) >= 0.01 or x == 0 else f"{x:.1e}"


def print_tables(summary: dict[str, Any], console: Console) -> None:
    for grid, benchmarks in summary.items():
        for benchmark, data in benchmarks.items():
            split = "tuning" if benchmark in TUNING else "held-out"
            table = Table(
                title=f"{benchmark} ({split}), R = {grid}: median FBE to regret (share of seeds), "
                "median regret at FBE",
                title_justify="left",
            )
            table.add_column("method")
            for t in THRESHOLDS:
                table.add_column(f"FBE <= {t}", justify="right")
            checkpoints = next(iter(data["methods"].values()))["regret_at"]
            for c in checkpoints:
                table.add_column(f"r@{float(c):g}", justify="right")
            table.add_column("x best peer (FBE 0.1 / r@20 / r@final)", justify="right")
            last = list(checkpoints)[-1]
            for method, cell in data["methods"].items():
                reach = [
                    f"{fmt(cell['fbe_to'][str(t)]['median'])} ({cell['fbe_to'][str(t)]['share']:.0%})"
                    for t in THRESHOLDS
                ]
                regrets = [fmt(cell["regret_at"][c], 3) for c in checkpoints]
                ratios = ""
                vs = data["vs_best_peer"]
                if vs and method not in PEERS:
                    parts = [vs.get("fbe_to_0.1"), vs.get("regret_at_20.0"), vs.get(f"regret_at_{last}")]
                    ratios = " / ".join(fmt(p["ratios"][method], 2) if p else "-" for p in parts)
                label = method + (" (default)" if method == DEFAULT_PAIR else "")
                table.add_row(label, *reach, *regrets, ratios)
            console.print(table)


def with_interval(text: str, interval: list[float] | None) -> str:
    """``text`` and a ratio's bootstrap interval, e.g. ``0.38 [0.21, 0.70]`` (just ``text`` without one)."""
    return text if interval is None else f"{text} [{fmt(interval[0], 2)}, {fmt(interval[1], 2)}]"


def interval_text(vs: dict[str, Any] | None, method: str = DEFAULT_PAIR) -> str:
    """The ratio of ``method`` to the best peer with its bootstrap interval, e.g. ``0.38 [0.21, 0.70]``."""
    if not vs:
        return "-"
    ratio = vs["ratios"].get(method)
    if vs["best_peer_value"] is None:
        return "no peer gets there" if ratio == 0.0 else "-"
    return with_interval(fmt(ratio, 2), (vs.get("intervals") or {}).get(method))


def default_table(summary: dict[str, Any]) -> str:
    """The README's headline table: the default pair against the best peer on each function and figure,
    with the ratios' bootstrap intervals (``INTERVAL`` percentiles over seed resamples)."""
    low, high = INTERVAL
    out = []
    for grid, benchmarks in summary.items():
        checkpoints = list(next(iter(next(iter(benchmarks.values()))["methods"].values()))["regret_at"])
        shown = list(dict.fromkeys([c for c in checkpoints if float(c) == 20.0] + checkpoints[-1:]))
        figures = [("FBE to 0.1", "fbe_to_0.1")] + [(f"r@{float(c):g}", f"regret_at_{c}") for c in shown]
        seeds = sorted(  # of the methods compared here (the prior runs have their own table)
            {c["seeds"] for data in benchmarks.values() for m, c in data["methods"].items() if "@" not in m}
        )
        out.append(
            f"**R = {grid}** ({'/'.join(map(str, seeds))} seeds; x = default / best peer with its "
            f"{low:g}-{high:g} % bootstrap interval over seeds; below 1 is better)\n"
        )
        header = ["function"]
        for name, _ in figures:
            header += [f"default {name}", "best peer", "x"]
        out.append("| " + " | ".join(header) + " |")
        out.append("|---" * len(header) + "|")
        for benchmark, data in benchmarks.items():
            cell = data["methods"].get(DEFAULT_PAIR)
            if cell is None:
                continue
            row = [benchmark + ("" if benchmark in TUNING else " (held-out)")]
            for _, key in figures:
                vs = data.get("vs_best_peer", {}).get(key)
                if key.startswith("fbe_to_"):
                    reach = cell["fbe_to"][key.removeprefix("fbe_to_")]
                    row.append(f"{fmt(reach['median'])} ({reach['share']:.0%})")
                    best = fmt(vs["best_peer_value"]) if vs else "-"
                else:
                    row.append(fmt(cell["regret_at"].get(key.removeprefix("regret_at_")), 3))
                    best = fmt(vs["best_peer_value"], 3) if vs else "-"
                got_there = vs is not None and vs["best_peer_value"] is not None
                row.append(f"{vs['best_peer']} ({best})" if got_there else "none gets there")
                row.append(interval_text(vs))
            out.append("| " + " | ".join(row) + " |")
        out.append("")
    return "\n".join(out)


def prior_table(summary: dict[str, Any]) -> str:
    """The default pair with mf-prior-bench's good and bad priors against no prior: median FBE to regret <=
    0.1 (share of seeds), how many times fewer FBE the good prior needs, and bad / none, each ratio with its
    bootstrap interval. Empty when the run measured no prior."""
    good, bad = f"{DEFAULT_PAIR}@good-prior", f"{DEFAULT_PAIR}@bad-prior"
    out = []
    for grid, benchmarks in summary.items():
        rows = []
        for benchmark, data in benchmarks.items():
            cells = data["methods"]
            if DEFAULT_PAIR not in cells or (good not in cells and bad not in cells):
                continue
            none = cells[DEFAULT_PAIR]

            def reach(method: str, cells: dict[str, Any] = cells) -> str:
                if method not in cells:
                    return "-"
                r = cells[method]["fbe_to"]["0.1"]
                return f"{fmt(r['median'])} ({r['share']:.0%})"

            def times(a: dict[str, Any] | None, b: dict[str, Any] | None) -> str:
                """median(a) / median(b) over FBE to 0.1, with its interval."""
                if a is None or b is None:
                    return "-"
                ma, mb = a["fbe_to"]["0.1"]["median"], b["fbe_to"]["0.1"]["median"]
                if ma is None and mb is None:
                    return "neither gets there"
                if mb is None:
                    return "0 (only the first gets there)"
                return with_interval(
                    "inf" if ma is None else fmt(ma / mb, 2),
                    ratio_interval(a["per_seed"]["fbe_to_0.1"], b["per_seed"]["fbe_to_0.1"]),
                )

            split = "" if benchmark in TUNING else " (held-out)"
            rows.append(
                f"| {benchmark}{split} | {reach(DEFAULT_PAIR)} | {reach(good)} | {reach(bad)} | "
                f"{times(none, cells.get(good))} | {times(cells.get(bad), none)} |"
            )
        if rows:
            low, high = INTERVAL
            out.append(
                f"**Priors, R = {grid}** (FBE to regret <= 0.1, share of seeds; ratios with their "
                f"{low:g}-{high:g} % bootstrap interval)\n"
            )
            out.append("| function | no prior | good prior | bad prior | none / good | bad / none |")
            out.append("|---|---|---|---|---|---|")
            out += [*rows, ""]
    return "\n".join(out)


def markdown(summary: dict[str, Any]) -> str:
    """The README's tables: the headline table (:func:`default_table`), then per grid and figure, functions
    x methods, and the default pair's ratio to the best peer on each function."""
    figures = [
        ("FBE to regret <= 0.5 (share of seeds)", "fbe:0.5"),
        ("FBE to regret <= 0.1 (share of seeds)", "fbe:0.1"),
        ("regret at 20 FBE", "regret_at_20.0"),
        ("regret at 150 FBE", "regret_at_150.0"),
    ]
    out = []
    for grid, benchmarks in summary.items():
        methods = list(dict.fromkeys(m for data in benchmarks.values() for m in data["methods"]))
        for title, key in figures:
            out.append(f"R = {grid}, {title}:\n")
            out.append("| function | " + " | ".join(methods) + " | default / best peer |")
            out.append("|---" * (len(methods) + 2) + "|")
            for benchmark, data in benchmarks.items():
                cells = []
                for method in methods:
                    cell = data["methods"].get(method)
                    if cell is None:
                        cells.append("")
                    elif key.startswith("fbe:"):
                        reach = cell["fbe_to"][key.removeprefix("fbe:")]
                        cells.append(f"{fmt(reach['median'])} ({reach['share']:.0%})")
                    else:
                        cells.append(fmt(cell["regret_at"].get(key.removeprefix("regret_at_")), 3))
                figure = key.replace("fbe:", "fbe_to_")
                ratio = interval_text(data.get("vs_best_peer", {}).get(figure))
                split = "" if benchmark in TUNING else " (held-out)"
                out.append(f"| {benchmark}{split} | " + " | ".join(cells) + f" | {ratio} |")
            out.append("")
    return "\n".join([default_table(summary), prior_table(summary), *out])


def plot(summary: dict[str, Any], directory: Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    directory.mkdir(parents=True, exist_ok=True)
    for grid, benchmarks in summary.items():
        for benchmark, data in benchmarks.items():
            fig, ax = plt.subplots(figsize=(7, 4.5))
            for method, cell in data["methods"].items():
                curve = cell["curve"]
                x = np.array(curve["fbe"])

                def arr(key: str, curve: dict[str, Any] = curve) -> np.ndarray:
                    return np.array([np.nan if v is None else max(v, 1e-5) for v in curve[key]], dtype=float)

                style = "--" if method in PEERS else "-"
                (line,) = ax.plot(
                    x, arr("median"), style, label=method, lw=2 if method == DEFAULT_PAIR else 1
                )
                ax.fill_between(x, arr("q25"), arr("q75"), color=line.get_color(), alpha=0.12)
            ax.set_yscale("log")
            ax.set_xlabel("full-budget equivalents (FBE)")
            ax.set_ylabel("simple regret (median, quartiles)")
            ax.set_title(f"{benchmark}, R = {grid}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
            fig.tight_layout()
            path = directory / f"{benchmark}-R{grid}.png"
            fig.savefig(path, dpi=100)
            plt.close(fig)
            written.append(path)
    return written


# --- suggestion cost -------------------------------------------------------------------------------------


def time_ours(searcher_name: str, results: int, repeats: int = 20) -> dict[str, Any]:
    """Median / p90 seconds per suggestion after ``results`` observations spread over rungs as in an ASHA
    study on mfh3 (2/3 at the first rung, then a third fewer per rung), values from the function."""
    problem = mfpbench_problem("mfh3", seed=0)
    rng = np.random.default_rng(0)
    searcher = make_searcher(searcher_name, problem.space, rng)
    rungs = [1, 3, 11, 33, 100]
    weights = np.array([3.0**-i for i in range(len(rungs))])
    weights /= weights.sum()
    for i in range(results):
        config = problem.space.sample(rng)
        resource = int(rng.choice(rungs, p=weights))
        searcher.observe(i, config, resource, problem.curve(config, resource))
    seconds = []
    for i in range(repeats):
        started = time.perf_counter()
        searcher.suggest(results + i)
        seconds.append(time.perf_counter() - started)
    seconds.sort()
    return {
        "method": searcher_name,
        "results": results,
        "median_suggest_seconds": statistics.median(seconds),
        "p90_suggest_seconds": seconds[min(len(seconds) - 1, int(0.9 * len(seconds)))],
    }


def time_peer(python: str, peer: str, results: list[int]) -> list[dict[str, Any]]:
    command = [
        python,
        str(ROOT / "benchmarks" / "peers.py"),
        "timing",
        "--peer",
        peer,
        "--benchmark",
        "mfh3",
        "--results",
        ",".join(map(str, results)),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return [{"method": peer, "error": done.stderr.strip()[-500:]}]
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


# --- main ------------------------------------------------------------------------------------------------


def peer_python(requested: str | None, peer: str) -> str | None:
    """The interpreter that has ``peer``'s package: the one asked for, else .venv-peers, else this one."""
    candidates = [requested] if requested else [str(ROOT / ".venv-peers" / "bin" / "python"), sys.executable]
    for python in candidates:
        if python and Path(python).exists():
            probe = subprocess.run(
                [python, "-c", f"import {PEERS[peer]}, mfpbench"], capture_output=True, check=False
            )
            if probe.returncode == 0:
                return python
    return None


def select_benchmarks(text: str) -> list[str]:
    if text == "tuning":
        return list(TUNING)
    if text == "held-out":
        return list(HELD_OUT)
    if text == "all":
        return [*TUNING, *HELD_OUT]
    return [b for b in text.split(",") if b]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10, help="how many seeds")
    parser.add_argument(
        "--first-seed", type=int, default=0, help="seeds are FIRST..FIRST+SEEDS-1 (to add seeds with --reuse)"
    )
    parser.add_argument("--budget", type=float, default=150.0, help="full-budget equivalents per study")
    parser.add_argument("--grids", default="100,81", help="R values (max fidelity), comma-separated")
    parser.add_argument("--benchmarks", default="all", help="tuning, held-out, all, or names")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes running studies")
    parser.add_argument("--peers-python", default=None, help="interpreter for DEHB / Syne Tune peers")
    parser.add_argument("--timing", action="store_true", help="also time one suggestion per searcher")
    parser.add_argument(
        "--fidelity",
        choices=("epochs", "data_fraction"),
        default="epochs",
        help="data_fraction: every job trains a whole schedule from scratch (fidelity.resource: "
        "data_fraction)",
    )
    parser.add_argument(
        "--priors", default="none", help="none,good,bad: also run the default pair with these priors"
    )
    parser.add_argument("--json-out", type=Path, default=Path("benchmarks/results/search_quality.json"))
    parser.add_argument("--png-dir", type=Path, default=Path("benchmarks/results/search_quality"))
    parser.add_argument("--markdown", type=Path, default=None, help="also write the tables as Markdown")
    parser.add_argument(
        "--reuse",
        default="",
        help="earlier reports (JSON, same budget and fidelity) whose runs join the tables where this run did "
        "not make them (e.g. the slow peers, or more seeds); a report that stores no runs merges only with "
        "the same seeds",
    )
    args = parser.parse_args(argv)
    console = Console(width=170)
    retrain = args.fidelity == "data_fraction"
    benchmarks = select_benchmarks(args.benchmarks)
    methods = [m for m in args.methods.split(",") if m]
    try:
        grids = [int(g) for g in args.grids.split(",") if g]
    except ValueError:
        grids = [0]
    for name in benchmarks:
        if name not in (*TUNING, *HELD_OUT):
            console.print(
                f"error: --benchmarks: {name!r} must be one of tuning, held-out, all, "
                f"{', '.join(TUNING + HELD_OUT)}"
            )
            return 2
    for method in methods:
        if method not in OURS and method not in PEERS:
            console.print(f"error: --methods: {method!r} must be one of {', '.join((*OURS, *PEERS))}")
            return 2
    if not grids or any(not 1 < g <= 100 for g in grids):
        console.print(f"error: --grids is {args.grids!r}, but must be integers in (1, 100], e.g. 100,81")
        return 2
    pythons: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for method in methods:
        if method in PEERS:
            python = peer_python(args.peers_python, method)
            if python is None:
                skipped[method] = f"{PEERS[method]} is not installed (make bench-peers)"
            else:
                pythons[method] = python
    if retrain:
        for method in methods:
            if method in PEERS and method not in RETRAINING_PEERS:
                skipped[method] = "continues its trials, which a data-fraction fidelity cannot"
            elif method.split("+")[0] in STOPS_MIDWAY:
                skipped[method] = "stops trials within a job, which a data-fraction fidelity cannot"
    for method, why in skipped.items():
        console.print(f"note: skipping {method}: {why}")
    methods = [m for m in methods if m not in skipped]
    priors = [p for p in args.priors.split(",") if p]
    if not priors or any(p not in ("none", "good", "bad") for p in priors):
        console.print(f"error: --priors is {args.priors!r}, but must name none, good or bad")
        return 2
    if args.seeds < 1 or args.first_seed < 0:
        console.print(
            f"error: --seeds is {args.seeds} and --first-seed {args.first_seed}, but must be >= 1 and >= 0"
        )
        return 2
    try:
        reports = read_reports([Path(f) for f in args.reuse.split(",") if f], args)
    except ValueError as error:
        console.print(f"error: --reuse: {error}")
        return 2
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    started = time.perf_counter()
    runs: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = []
        # Peers first: one subprocess per (peer, function, grid) runs every seed, and they are the long ones.
        for method in methods:
            if method in PEERS:
                for grid in grids:
                    for b in benchmarks:
                        futures.append(
                            pool.submit(run_peer, pythons[method], method, b, seeds, args.budget, grid)
                        )
        total = 0
        for method in methods:
            for prior in priors:
                if method in PEERS and prior != "none":
                    continue  # no peer here takes a prior
                if method not in PEERS and prior != "none" and method != DEFAULT_PAIR:
                    continue  # priors are measured on the default pair
                total += len(benchmarks) * len(grids) * len(seeds)
                if method in PEERS:
                    continue
                for grid in grids:
                    for b in benchmarks:
                        for seed in seeds:
                            futures.append(
                                pool.submit(run_ours, b, method, seed, args.budget, grid, prior, retrain)
                            )
        for future in as_completed(futures):
            result = future.result()
            runs.extend(result if isinstance(result, list) else [result])
            if len(runs) % 100 < (len(result) if isinstance(result, list) else 1) or len(runs) == total:
                console.print(
                    f"{len(runs)}/{total} studies, {time.perf_counter() - started:.0f} s", highlight=False
                )
    elapsed = time.perf_counter() - started
    made = len(runs)
    reused = merge_runs(runs, reports)
    order = [m if p == "none" else f"{m}@{p}-prior" for m in methods for p in priors]
    order += sorted({r["method"] for r in runs} - set(order), key=method_rank)
    summary = summarise(runs, args.budget, order)
    reused_timings = merge_reports(summary, reports)
    print_tables(summary, console)
    console.print(
        f"{made} studies in {elapsed:.0f} s on {args.jobs} processes"
        + (f", {reused} more from --reuse" if reused else ""),
        highlight=False,
    )
    timings: list[dict[str, Any]] = []
    if args.timing:
        for method in methods:
            if method in PEERS:
                timings += time_peer(pythons[method], method, list(TIMING_RESULTS))
        for searcher in sorted({m.split("+")[1] for m in methods if m not in PEERS}):
            timings += [time_ours(searcher, n) for n in TIMING_RESULTS]
    timed = {t["method"] for t in timings}
    timings += [t for t in reused_timings if t["method"] not in timed]
    if timings:
        table = Table(title="seconds per suggestion (median / p90) after N results", title_justify="left")
        table.add_column("searcher")
        for n in TIMING_RESULTS:
            table.add_column(f"N = {n}", justify="right")
        for method in dict.fromkeys(t["method"] for t in timings):
            rows = {t.get("results"): t for t in timings if t["method"] == method}
            cells = []
            for n in TIMING_RESULTS:
                t = rows.get(n)
                if t is None or "median_suggest_seconds" not in t:
                    cells.append("-")
                else:
                    cells.append(
                        f"{t['median_suggest_seconds'] * 1e3:.1f} / {t['p90_suggest_seconds'] * 1e3:.1f} ms"
                    )
            table.add_row(method, *cells)
        console.print(table)
    report = {
        "setting": {
            "seeds": args.seeds,
            "first_seed": args.first_seed,
            "budget_fbe": args.budget,
            "eta": ETA,
            "grids": grids,
            "tuning": list(TUNING),
            "held_out": list(HELD_OUT),
            "default_pair": DEFAULT_PAIR,
            "skipped": skipped,
            "priors": priors,
            "fidelity": args.fidelity,
            "reused": args.reuse or "",
            "command": " ".join(["python", "benchmarks/search_quality.py", *(argv or sys.argv[1:])]),
        },
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "seconds": elapsed,
        "results": summary,
        "timing": timings,
        "runs": [{k: r[k] for k in RUN_KEYS} for r in runs],
    }
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown(summary), encoding="utf-8")
    pngs = plot(summary, args.png_dir)
    console.print(
        f"wrote {args.json_out}"
        + (f" and {len(pngs)} PNGs in {args.png_dir}" if pngs else " (no matplotlib: no plots)")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
