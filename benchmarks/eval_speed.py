"""Speed and exactness of the evaluation protocol at AG-VPReID test scale.

Why this exists: every HPO trial ends with an evaluation, so CMC/mAP must cost well under a second at the
real test sizes, and being fast must not change a single number. This script builds random 2048-d float32
features of the public test-set sizes, then times

* ``pairwise_distance`` (float32 ``2 - 2 cos``),
* ``cmc_map`` (vectorised over queries), and
* a classic per-query Python loop of the same Market-1501 rules (stable argsort, junk mask, cumsum,
  precision at the hits), written out below as the reference,

reporting the median over ``--repeats`` runs, the speed-ups, and the largest difference between the two
results. Cases (REFERENCE_REID.md, section 1):

* A2G: 3,023 aerial queries x 2,751 ground gallery tracklets, 645 identities.
* G2A: the 2,751 ground tracklets as queries x 4,416 gallery tracklets: the 3,023 aerial ones plus 1,393
  tracklets of distractor identities that no query shares.

Camera ids are random in 0..5 so that some same-identity same-camera "junk" exists. Exit status: 0, or 1 if
the vectorised and the loop results differ by more than 1e-9 (a correctness failure, whatever the timings).

    python benchmarks/eval_speed.py [--repeats 3] [--seed 0] [--json-out benchmarks/results/eval_speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from rich.console import Console
from rich.table import Table

from trainers.evaluation import cmc_map, pairwise_distance

FEATURE_DIM = 2048
NUM_IDS = 645
NUM_AERIAL = 3023
NUM_GROUND = 2751
NUM_DISTRACTORS = 1393  # 3,023 + 1,393 = 4,416 G2A gallery tracklets
NUM_CAMERAS = 6
MAX_RANK = 50
TOLERANCE = 1e-9
TARGET_SECONDS = 1.0
TARGET_SPEEDUP = 10.0
#: Per-dimension noise around each identity centre. 3.5 gives R1 / mAP in the 0.6-0.8 range, like the
#: published AG-VPReID results, so the true matches sit at realistic depths in the rankings.
FEATURE_NOISE = 3.5

T = TypeVar("T")


@dataclass(frozen=True)
class CaseData:
    name: str
    query: np.ndarray
    gallery: np.ndarray
    q_pids: np.ndarray
    g_pids: np.ndarray
    q_camids: np.ndarray
    g_camids: np.ndarray


@dataclass(frozen=True)
class CaseResult:
    case: str
    num_query: int
    num_gallery: int
    distance_s: float
    cmc_map_s: float
    vectorised_total_s: float
    loop_cmc_map_s: float
    loop_total_s: float
    metric_speedup: float
    end_to_end_speedup: float
    max_abs_diff_cmc: float
    abs_diff_map: float
    mAP: float
    rank1: float
    under_target_seconds: bool
    meets_target_speedup: bool


def loop_cmc_map(
    distmat: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    max_rank: int = MAX_RANK,
) -> tuple[np.ndarray, float]:
    """The straightforward per-query implementation of the Market-1501 rules, as found in most ReID code."""
    all_cmc = []
    all_ap = []
    for i in range(distmat.shape[0]):
        order = np.argsort(distmat[i], kind="stable")
        matches = g_pids[order] == q_pids[i]
        junk = matches & (g_camids[order] == q_camids[i])
        raw = matches[~junk]
        if not raw.any():
            continue
        cmc = raw.cumsum()
        cmc[cmc > 1] = 1
        cmc = cmc[:max_rank].astype(np.float64)
        if cmc.size < max_rank:
            cmc = np.concatenate([cmc, np.full(max_rank - cmc.size, cmc[-1])])
        all_cmc.append(cmc)
        hits_so_far = raw.cumsum()
        precision = hits_so_far / (np.arange(raw.size) + 1.0)
        all_ap.append(float((precision * raw).sum() / raw.sum()))
    if not all_ap:
        raise ValueError("no query has a true match in the gallery")
    return np.mean(np.asarray(all_cmc), axis=0), float(np.mean(all_ap))


def make_cases(seed: int) -> list[CaseData]:
    """Identity-structured random features, so that the rankings (and mAP) are not pure noise."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((NUM_IDS + NUM_DISTRACTORS, FEATURE_DIM), dtype=np.float32)

    def features(pids: np.ndarray) -> np.ndarray:
        noise = rng.standard_normal((pids.size, FEATURE_DIM), dtype=np.float32)
        return centres[pids] + np.float32(FEATURE_NOISE) * noise

    # Every identity gets at least one tracklet on each platform, the rest are spread at random.
    aerial_pids = np.concatenate([np.arange(NUM_IDS), rng.integers(0, NUM_IDS, NUM_AERIAL - NUM_IDS)])
    ground_pids = np.concatenate([np.arange(NUM_IDS), rng.integers(0, NUM_IDS, NUM_GROUND - NUM_IDS)])
    distractor_pids = NUM_IDS + rng.integers(0, NUM_DISTRACTORS // 2, NUM_DISTRACTORS)
    aerial, ground, distractors = features(aerial_pids), features(ground_pids), features(distractor_pids)
    aerial_cams = rng.integers(0, NUM_CAMERAS, NUM_AERIAL)
    ground_cams = rng.integers(0, NUM_CAMERAS, NUM_GROUND)
    distractor_cams = rng.integers(0, NUM_CAMERAS, NUM_DISTRACTORS)
    a2g = CaseData("A2G", aerial, ground, aerial_pids, ground_pids, aerial_cams, ground_cams)
    g2a = CaseData(
        "G2A",
        ground,
        np.concatenate([aerial, distractors]),
        ground_pids,
        np.concatenate([aerial_pids, distractor_pids]),
        ground_cams,
        np.concatenate([aerial_cams, distractor_cams]),
    )
    return [a2g, g2a]


def timed(fn: Callable[[], T], repeats: int) -> tuple[float, T]:
    """Median wall-clock seconds of ``repeats`` calls after one untimed warm-up call, and the last result.

    The warm-up keeps one-off costs (BLAS thread start-up, first-touch page faults of fresh buffers) out of
    the figures, for the loop and the vectorised code alike.
    """
    seconds = []
    result = fn()
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def run_case(case: CaseData, repeats: int) -> CaseResult:
    labels = (case.q_pids, case.g_pids, case.q_camids, case.g_camids)
    distance_s, dist = timed(lambda: pairwise_distance(case.query, case.gallery), repeats)
    vec_s, (cmc, mean_ap) = timed(lambda: cmc_map(dist, *labels, max_rank=MAX_RANK), repeats)
    loop_s, (loop_cmc, loop_map) = timed(lambda: loop_cmc_map(dist, *labels, max_rank=MAX_RANK), repeats)
    vectorised_total = distance_s + vec_s
    loop_total = distance_s + loop_s
    metric_speedup = loop_s / vec_s
    return CaseResult(
        case=case.name,
        num_query=int(dist.shape[0]),
        num_gallery=int(dist.shape[1]),
        distance_s=distance_s,
        cmc_map_s=vec_s,
        vectorised_total_s=vectorised_total,
        loop_cmc_map_s=loop_s,
        loop_total_s=loop_total,
        metric_speedup=metric_speedup,
        end_to_end_speedup=loop_total / vectorised_total,
        max_abs_diff_cmc=float(np.abs(cmc - loop_cmc).max()),
        abs_diff_map=abs(mean_ap - loop_map),
        mAP=mean_ap,
        rank1=float(cmc[0]),
        under_target_seconds=vectorised_total < TARGET_SECONDS,
        meets_target_speedup=metric_speedup >= TARGET_SPEEDUP,
    )


def render(results: list[CaseResult], console: Console) -> None:
    for r in results:
        table = Table(title=f"{r.case}: {r.num_query} queries x {r.num_gallery} gallery, {FEATURE_DIM}-d")
        table.add_column("measure")
        table.add_column("value", justify="right")
        table.add_row("distance (s)", f"{r.distance_s:.3f}")
        table.add_row("cmc_map vectorised (s)", f"{r.cmc_map_s:.3f}")
        table.add_row("distance + cmc_map (s)", f"{r.vectorised_total_s:.3f}")
        table.add_row("cmc_map per-query loop (s)", f"{r.loop_cmc_map_s:.3f}")
        table.add_row("distance + loop (s)", f"{r.loop_total_s:.3f}")
        table.add_row("speed-up, metric only", f"{r.metric_speedup:.1f}x")
        table.add_row("speed-up, end to end", f"{r.end_to_end_speedup:.1f}x")
        table.add_row("max |cmc diff|", f"{r.max_abs_diff_cmc:.3g}")
        table.add_row("|mAP diff|", f"{r.abs_diff_map:.3g}")
        table.add_row("R1 / mAP", f"{r.rank1:.4f} / {r.mAP:.4f}")
        console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random features and labels")
    parser.add_argument(
        "--json-out",
        type=Path,
        default=Path("benchmarks/results/eval_speed.json"),
        help="where to write JSON",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats is {args.repeats}, but must be >= 1")

    console = Console()
    results = [run_case(case, args.repeats) for case in make_cases(args.seed)]
    render(results, console)

    report = {
        "benchmark": "eval_speed",
        "repeats": args.repeats,
        "seed": args.seed,
        "feature_dim": FEATURE_DIM,
        "max_rank": MAX_RANK,
        "tolerance": TOLERANCE,
        "targets": {"seconds_per_case": TARGET_SECONDS, "metric_speedup": TARGET_SPEEDUP},
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "cpu_count": os.cpu_count(),
        },
        "cases": [asdict(r) for r in results],
    }
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    console.print(f"wrote {args.json_out}")

    mismatched = [r.case for r in results if max(r.max_abs_diff_cmc, r.abs_diff_map) > TOLERANCE]
    if mismatched:
        console.print(
            f"[red]vectorised and loop results differ by more than {TOLERANCE} in {mismatched}[/red]"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
