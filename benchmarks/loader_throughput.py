"""Training data loader throughput: decoding JPEGs every epoch vs the shared frame cache.

Why this exists: every trial of a study re-reads the same frames every epoch, and on a many-trial study the
data loader, not the model, can bound the speed. The frame cache (trainers/data/frame_cache.py) decodes and
resizes each frame once per (dataset, size, interpolation). This script measures, on a synthetic dataset in
the AG-VPReID layout (``--scale agvp``: 689 training ids, ~5.5k tracklets, as the release's 689 / 5,317;
fewer frames per tracklet), the training loader's frames/s for

* the JPEG path (``data.frame_cache: false``) and the cache path (``true``),
* at each ``--sizes`` (256x128 and 288x144) and ``--workers`` count (1 and 2 loader processes),

plus the cache's build time and size per frame size, and checks that both paths give identical batches
(same seed -> same tensors; exit 1 if not). Frames/s counts clip frames delivered (P x K x T per batch)
after one warm-up batch, so worker start-up is excluded (workers are persistent anyway). Per core = frames
per CPU-second actually spent in the timed window by the loader workers *and* the training process (which
receives and unpacks the batches: with a fast frame source it is a real share of the work, and on a machine
with as many cores as workers it competes with them), counted the same way for both paths; ``cores`` is
that CPU time over the wall time. Dividing wall-clock frames/s by the worker count (as this script did
before) left the training process out and, with 2 workers on 2 shared cores, charged each path for cores
it could not get. Both paths are measured ``--rounds`` times, alternately (JPEG, cache, JPEG, ...), so load
from other processes hits both alike; the ratios quoted are medians over rounds. The loader delivers
uint8 clips; the trainer's conversion to normalised float (``to_model_input``, on the GPU in training) is
timed apart, on this CPU, as ``normalise_ms_per_batch_cpu``. With every tracklet in the cache the
training loader gathers batches in the training process (``trainers/data/cache_loader.py``: one prefetch
thread, no worker processes), so ``--workers`` shapes the JPEG path only; the cache path is measured beside
each JPEG setting all the same, alternately, to keep the per-round ratios.

    python benchmarks/loader_throughput.py [--scale agvp] [--data ROOT] [--batches 20] [--rounds 3]
        [--min-frames 4] [--max-frames 8] [--json-out benchmarks/results/loader_throughput.json]
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from save_json import save_json  # benchmarks/ is on sys.path when a script runs

from trainers.data.config import DataConfig
from trainers.data.frame_cache import ensure_frame_cache
from trainers.data.index import read_dataset
from trainers.data.pipeline import train_loader, validation_split
from trainers.data.synth import SynthConfig, generate_dataset
from trainers.data.transforms import to_model_input

#: --scale: training ids and tracklets per identity and platform (as ``agvp-hpo data synth --scale``).
SCALES = {"agvp": (689, (3, 5)), "small": (64, (3, 5))}


def _config(size: str, workers: int, cache: bool) -> DataConfig:
    return DataConfig.model_validate(
        {"transform": {"size": size}, "workers": workers, "frame_cache": cache, "batch": {"p": 8, "k": 4}}
    )


def _process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_seconds(loader: Any) -> float:
    """CPU seconds so far of this process (all its threads) plus the loader's worker processes."""
    # a loader with persistent workers keeps torch's multiprocessing iterator, which keeps the Processes;
    # the cache path's CacheLoader has none (its prefetch thread is this process's CPU time)
    expected = getattr(loader, "num_workers", 0)
    workers = getattr(getattr(loader, "_iterator", None), "_workers", [])
    if expected and len(workers) != expected:
        raise RuntimeError("cannot find the loader's worker processes to count their CPU time")
    return time.process_time() + sum(_process_cpu_seconds(w.pid) for w in workers)


def _measure(index: Any, config: DataConfig, batches: int, cache_dir: Path) -> dict[str, Any]:
    """Frames/s delivered, frames per CPU-second (workers + this process), ms per batch of
    ``to_model_input`` on this CPU, and the first batch."""
    loader, _, sampler = train_loader(index, validation_split(index, config), config, cache_dir=cache_dir)

    def epochs(loader: Any) -> Iterator[dict[str, Any]]:  # as many epochs as --batches needs
        for epoch in itertools.count():
            sampler.set_epoch(epoch)
            yield from loader

    stream = epochs(loader)
    first = next(stream)  # warm-up: worker start-up, first page-ins
    frames = 0
    cpu = _cpu_seconds(loader)
    started = time.perf_counter()
    for _ in range(batches):
        batch = next(stream)
        frames += batch["clip"].shape[0] * batch["clip"].shape[1]
    seconds = time.perf_counter() - started
    cpu = _cpu_seconds(loader) - cpu
    stream.close()
    del stream, loader
    # The trainer's side, timed apart (not in frames/s): uint8 -> normalised, erased float. On a GPU this
    # runs there; here it is the CPU worst case.
    started = time.perf_counter()
    for _ in range(3):
        to_model_input(batch, config.transform, "cpu")
    normalise_ms = (time.perf_counter() - started) / 3 * 1e3
    return {
        "fps": frames / seconds,
        "fps_per_core": frames / cpu,
        "cores": cpu / seconds,
        "normalise_ms": normalise_ms,
        "first": first,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="agvp")
    parser.add_argument("--data", type=Path, help="An existing dataset root instead of a synthetic one.")
    parser.add_argument("--min-frames", type=int, default=4)
    parser.add_argument("--max-frames", type=int, default=8)
    parser.add_argument("--sizes", nargs="+", default=["256x128", "288x144"])
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--batches", type=int, default=20, help="Timed batches (P=8 x K=4 clips of T=8).")
    parser.add_argument("--rounds", type=int, default=3, help="Alternating JPEG / cache measurements.")
    parser.add_argument("--json-out", type=Path, default=Path("benchmarks/results/loader_throughput.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    console = Console()
    scratch = Path(tempfile.mkdtemp(prefix="agvp-loader-"))
    try:
        root = args.data
        synth_seconds = None
        if root is None:
            ids, per_platform = SCALES[args.scale]
            synth = SynthConfig(
                train_ids=ids,
                test_ids=2,
                distractor_ids=0,
                tracklets_per_platform=per_platform,
                frames=(args.min_frames, args.max_frames),
            )
            started = time.perf_counter()
            root = scratch / "data"
            generate_dataset(root, synth)
            synth_seconds = time.perf_counter() - started
        index = read_dataset(root, splits=["train"])
        total_frames = sum(len(t.frames) for t in index.tracklets)
        rows: list[dict[str, Any]] = []
        builds: dict[str, dict[str, float]] = {}
        identical = True
        for size in args.sizes:
            cache_dir = scratch / f"cache-{size}"
            started = time.perf_counter()
            entry = ensure_frame_cache(index, _config(size, 0, True).transform, cache_dir)
            builds[size] = {"seconds": time.perf_counter() - started, "mib": entry.nbytes / 2**20}
            for workers in args.workers:
                runs: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
                for _ in range(args.rounds):  # alternately, so other load hits both paths alike
                    for cache in (False, True):
                        runs[cache].append(
                            _measure(index, _config(size, workers, cache), args.batches, cache_dir)
                        )
                jpeg, cached = runs[False], runs[True]
                same = all(
                    torch.equal(j["first"][key], c["first"][key])
                    for j, c in zip(jpeg, cached, strict=True)
                    for key in ("clip", "erase", "flip", "label")
                    if key in j["first"]
                )
                identical &= same

                def median(rs: list[dict[str, Any]], key: str) -> float:
                    return statistics.median(r[key] for r in rs)

                rows.append(
                    {
                        "size": size,
                        "workers": workers,
                        "jpeg_fps": median(jpeg, "fps"),
                        "cache_fps": median(cached, "fps"),
                        "jpeg_cores": median(jpeg, "cores"),
                        "cache_cores": median(cached, "cores"),
                        "jpeg_fps_per_core": median(jpeg, "fps_per_core"),
                        "cache_fps_per_core": median(cached, "fps_per_core"),
                        "speedup": statistics.median(
                            c["fps_per_core"] / j["fps_per_core"] for j, c in zip(jpeg, cached, strict=True)
                        ),
                        "speedup_wall": statistics.median(
                            c["fps"] / j["fps"] for j, c in zip(jpeg, cached, strict=True)
                        ),
                        "speedups_per_round": [
                            c["fps_per_core"] / j["fps_per_core"] for j, c in zip(jpeg, cached, strict=True)
                        ],
                        "normalise_ms_per_batch_cpu": median(cached, "normalise_ms"),
                        "identical": same,
                    }
                )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    table = Table(title=f"training loader, {len(index.tracklets)} tracklets, {total_frames} frames")
    columns = (
        "size",
        "workers",
        "JPEG frames/s",
        "cache frames/s",
        "cores JPEG/cache",
        "per core JPEG/cache",
    )
    for column in (*columns, "x per core", "x wall", "same"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(
            r["size"],
            str(r["workers"]),
            f"{r['jpeg_fps']:.0f}",
            f"{r['cache_fps']:.0f}",
            f"{r['jpeg_cores']:.2f} / {r['cache_cores']:.2f}",
            f"{r['jpeg_fps_per_core']:.0f} / {r['cache_fps_per_core']:.0f}",
            f"{r['speedup']:.1f}",
            f"{r['speedup_wall']:.1f}",
            "yes" if r["identical"] else "NO",
        )
    console.print(table)
    for size, build in builds.items():
        console.print(f"cache {size}: built in {build['seconds']:.1f} s, {build['mib']:.0f} MiB")
    result = {
        "scale": args.scale if args.data is None else str(args.data),
        "train_ids": len({t.pid for t in index.tracklets}),
        "tracklets": len(index.tracklets),
        "frames": total_frames,
        "synth_seconds": synth_seconds,
        "batches": args.batches,
        "rounds": args.rounds,
        "builds": builds,
        "rows": rows,
        "identical": identical,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    save_json(result, args.json_out)
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
