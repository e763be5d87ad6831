"""Search quality of every scheduler/searcher pair on mf-prior-bench's multi-fidelity Hartmann functions.

Why this exists: a multi-fidelity method earns its place only if it reaches good configurations with less
training than random search, and must not lose much when low fidelities mislead. Setting (REFERENCE_HPO.md,
"measured baseline"): 25 seeds, a budget of 150 full-budget equivalents (FBE = epochs / 100), eta = 3,
fidelity 1..100 (milestones 1/3/11/33/100), cost linear in fidelity, promotions resume from checkpoints.
Each run goes through the simulator exactly as a study would (hpo.simulator.simulate), on one worker by
default.

Simple regret after x FBE is the full-fidelity value of the best configuration *evaluated at fidelity 100*
so far, minus the known optimum. The table gives, per benchmark and method, the median FBE to reach each
regret threshold over all seeds (a seed that never reaches it counts as infinite, so the median is "-" when
half the seeds or more miss it), and the fraction of seeds that reached it. The pair marked "default" is
the bundled search_spaces/mfho.yaml's: mfho-hedge (its hedge bracket keeps the worst case near random
search) with the mf-tpe searcher; ``mfho`` is the seed report's round-based rule.

Targets: on mfh3, regret <= 0.1 within 20 FBE (median) for ASHA (promotion) and within 12 FBE with mf-tpe;
on the ``_terrible`` variants the default scheduler needs at most 1.2x the FBE of random search.

Needs the ``bench`` extra (mf-prior-bench installed with --no-deps); the PNG plot needs matplotlib.

    python benchmarks/search_quality.py [--seeds 25] [--budget 150] [--benchmarks mfh3,mfh6,...]
        [--methods fifo+random,asha+mf-tpe,...] [--workers 1] [--jobs 2]
        [--json-out benchmarks/results/search_quality.json] [--png benchmarks/results/search_quality.png]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from hpo.schedulers import make_scheduler
from hpo.searchers import make_searcher
from hpo.simulator import mfpbench_problem, simulate

MAX_FIDELITY = 100
ETA = 3
THRESHOLDS = {
    "mfh3": (0.5, 0.2, 0.1, 0.05),
    "mfh6": (1.5, 1.0, 0.7, 0.5),
    "mfh3_terrible": (0.5, 0.2, 0.1, 0.05),
    "mfh6_terrible": (1.5, 1.0, 0.7, 0.5),
}
#: scheduler+searcher; fifo+random is random search.
METHODS = (
    "fifo+random",
    "fifo+tpe",
    "hyperband+random",
    "hyperband+mf-tpe",
    "asha+random",
    "asha+mf-tpe",
    "asha-stopping+random",
    "mfho+random",
    "mfho+mf-tpe",
    "mfho-hedge+random",
    "mfho-hedge+mf-tpe",
)
DEFAULT_SCHEDULER = "mfho+mf-tpe"
RANDOM_SEARCH = "fifo+random"
GRID_POINTS = 151


def run_one(benchmark: str, method: str, seed: int, budget: float, workers: int) -> dict[str, Any]:
    """One study: returns the FBE at which each full-fidelity result arrived and its regret."""
    scheduler, searcher = method.split("+")
    problem = mfpbench_problem(benchmark, seed=seed)
    rng = np.random.default_rng(seed)
    core = make_scheduler(
        scheduler,
        make_searcher(searcher, problem.space, rng),
        max_resource=MAX_FIDELITY,
        reduction_factor=ETA,
        mode="min",
        max_total_resource=int(budget * MAX_FIDELITY),
    )
    started = time.perf_counter()
    result = simulate(core, problem.curve, workers=workers, study=f"{benchmark}-{method}-{seed}")
    fbe, regret = [], []
    best = math.inf
    for row in result.rows:
        if row["resource"] == MAX_FIDELITY and row["value"] < best:
            best = row["value"]
            fbe.append(row["total_resource"] / MAX_FIDELITY)
            regret.append(problem.regret(best))
    return {
        "benchmark": benchmark,
        "method": method,
        "seed": seed,
        "fbe": fbe,
        "regret": regret,
        "trials": core.num_trials,
        "seconds": time.perf_counter() - started,
    }


def fbe_to_reach(run: dict[str, Any], threshold: float) -> float:
    return next((f for f, r in zip(run["fbe"], run["regret"], strict=True) if r <= threshold), math.inf)


def regret_at(run: dict[str, Any], grid: np.ndarray) -> np.ndarray:
    out = np.full(len(grid), np.nan)
    for f, r in zip(run["fbe"], run["regret"], strict=True):
        out[grid >= f] = r
    return out


def summarise(runs: list[dict[str, Any]], budget: float) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    grid = np.linspace(0, budget, GRID_POINTS)
    for benchmark in sorted({r["benchmark"] for r in runs}):
        summary[benchmark] = {}
        for method in METHODS:
            group = [r for r in runs if r["benchmark"] == benchmark and r["method"] == method]
            if not group:
                continue
            cells = []
            for threshold in THRESHOLDS[benchmark]:
                reached = [fbe_to_reach(r, threshold) for r in group]
                median = statistics.median(reached)
                cells.append(
                    {
                        "threshold": threshold,
                        "median_fbe": None if math.isinf(median) else median,
                        "fraction_reached": sum(math.isfinite(x) for x in reached) / len(reached),
                    }
                )
            curves = np.array([regret_at(r, grid) for r in group])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # before any seed has a full-fidelity result
                median_curve = [None if np.isnan(v) else float(v) for v in np.nanmedian(curves, axis=0)]
            summary[benchmark][method] = {
                "seeds": len(group),
                "thresholds": cells,
                "median_trials": statistics.median(r["trials"] for r in group),
                "median_final_regret": statistics.median(
                    r["regret"][-1] if r["regret"] else math.inf for r in group
                ),
                "grid_fbe": grid.tolist(),
                "median_regret": median_curve,
            }
    return summary


def print_table(summary: dict[str, Any], console: Console) -> None:
    for benchmark, methods in summary.items():
        table = Table(title=f"{benchmark}: median FBE to reach simple regret (fraction of seeds reached)")
        table.add_column("method")
        for threshold in THRESHOLDS[benchmark]:
            table.add_column(f"<= {threshold}", justify="right")
        table.add_column("final regret", justify="right")
        for method, data in methods.items():
            cells = []
            for cell in data["thresholds"]:
                median = "-" if cell["median_fbe"] is None else f"{cell['median_fbe']:.1f}"
                cells.append(f"{median} ({cell['fraction_reached']:.0%})")
            label = method + (" (default)" if method == DEFAULT_SCHEDULER else "")
            table.add_row(label, *cells, f"{data['median_final_regret']:.3f}")
        console.print(table)


def plot(summary: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, len(summary), figsize=(5 * len(summary), 4), squeeze=False)
    for ax, (benchmark, methods) in zip(axes[0], summary.items(), strict=True):
        for method, data in methods.items():
            y = np.array([np.nan if v is None else v for v in data["median_regret"]], dtype=float)
            ax.plot(
                data["grid_fbe"], np.maximum(y, 1e-4), label=method, lw=2 if method == RANDOM_SEARCH else 1
            )
        ax.set_yscale("log")
        ax.set_xlabel("full-budget equivalents (FBE)")
        ax.set_ylabel("median simple regret")
        ax.set_title(benchmark)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=25)
    parser.add_argument("--budget", type=float, default=150.0, help="full-budget equivalents per study")
    parser.add_argument("--benchmarks", default=",".join(THRESHOLDS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--workers", type=int, default=1, help="simulated workers per study")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes running studies")
    parser.add_argument("--json-out", type=Path, default=Path("benchmarks/results/search_quality.json"))
    parser.add_argument("--png", type=Path, default=Path("benchmarks/results/search_quality.png"))
    args = parser.parse_args(argv)
    console = Console(width=150)
    benchmarks = [b for b in args.benchmarks.split(",") if b]
    methods = [m for m in args.methods.split(",") if m]
    for name in benchmarks:
        if name not in THRESHOLDS:
            console.print(f"error: benchmark is {name!r}, but must be one of {', '.join(THRESHOLDS)}")
            return 2
    for method in methods:
        if method not in METHODS:
            console.print(f"error: method is {method!r}, but must be one of {', '.join(METHODS)}")
            return 2
    tasks = [
        (b, m, s, args.budget, args.workers) for b in benchmarks for m in methods for s in range(args.seeds)
    ]
    started = time.perf_counter()
    runs = []
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for done, run in enumerate(pool.map(run_one, *zip(*tasks, strict=True), chunksize=4), start=1):
            runs.append(run)
            if done % 50 == 0 or done == len(tasks):  # progress on a run of many minutes
                console.print(
                    f"{done}/{len(tasks)} studies, {time.perf_counter() - started:.0f} s", highlight=False
                )
    elapsed = time.perf_counter() - started
    summary = summarise(runs, args.budget)
    print_table(summary, console)
    console.print(f"{len(runs)} studies in {elapsed:.0f} s on {args.jobs} processes")
    report = {
        "setting": {
            "seeds": args.seeds,
            "budget_fbe": args.budget,
            "eta": ETA,
            "max_fidelity": MAX_FIDELITY,
            "workers": args.workers,
            "default_scheduler": DEFAULT_SCHEDULER,
            "random_search": RANDOM_SEARCH,
        },
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "seconds": elapsed,
        "results": summary,
    }
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    if plot(summary, args.png):
        console.print(f"wrote {args.json_out} and {args.png}")
    else:
        console.print(f"wrote {args.json_out} (matplotlib not installed: no plot)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
