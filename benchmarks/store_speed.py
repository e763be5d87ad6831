"""How fast the Parquet results store takes rows and gives them back.

Why: the driver appends a part file per batch of trial reports while the CLI and the service read the whole
store; neither may become the bottleneck of a study. This measures, with rows shaped like real result rows
(config JSON, six metrics, five ``param_`` columns):

* append throughput (rows/s) for parts of 1 row (one report per call, the worst case) and of 100 rows;
* the time to read a store of 1,000,000 rows as compacted + a tail of parts, and after full compaction.

    python benchmarks/store_speed.py [--rows 1000000] [--json-out benchmarks/results/store_speed.json]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from save_json import save_json  # benchmarks/ is on sys.path when a script runs

from hpo.store import ResultStore


def make_rows(start: int, count: int, rng: np.random.Generator) -> list[dict[str, object]]:
    rows = []
    for i in range(start, start + count):
        config = {
            "optim.lr": float(rng.uniform(1e-6, 1e-4)),
            "optim.weight_decay": float(rng.uniform(1e-5, 1e-2)),
            "loss.triplet_margin": float(rng.uniform(0.1, 0.6)),
            "model.temporal_pool": str(rng.choice(["mean", "attention"])),
            "data.batch.p": int(rng.choice([3, 4, 6])),
        }
        rows.append(
            {
                "study": "bench",
                "trial_id": i // 10,
                "config": config,
                "resource": i % 10 + 1,
                "value": float(rng.random()),
                "val_a2g_map": float(rng.random()),
                "val_g2a_map": float(rng.random()),
                "val_a2g_r1": float(rng.random()),
                "val_g2a_r1": float(rng.random()),
                "train_loss": float(rng.random() * 10),
                "decision": "continue",
                "status": "running",
                "time": float(i),
            }
        )
    return rows


def append_rate(root: Path, rows_per_part: int, parts: int, rng: np.random.Generator) -> float:
    store = ResultStore(root)
    batches = [make_rows(i * rows_per_part, rows_per_part, rng) for i in range(parts)]
    started = time.perf_counter()
    for batch in batches:
        store.append(batch)
    return rows_per_part * parts / (time.perf_counter() - started)


def _median_read(store: ResultStore) -> tuple[float, int]:
    reads, rows = [], 0
    for _ in range(3):
        started = time.perf_counter()
        rows = len(store.read())
        reads.append(time.perf_counter() - started)
    return round(statistics.median(reads), 3), rows


def million_row_reads(folder: Path, rows: int, rng: np.random.Generator) -> dict[str, object]:
    """Build a store of ``rows`` rows (compacted every 100,000) plus a tail of 100 ten-row parts; median
    read time with the tail, compaction time, median read time once compacted, bytes on disk."""
    store = ResultStore(folder)
    chunk = 100_000
    for start in range(0, rows, chunk):
        store.append(make_rows(start, min(chunk, rows - start), rng))
        store.compact()
    for start in range(rows, rows + 1000, 10):  # a tail of small parts after the compaction
        store.append(make_rows(start, 10, rng))
    result: dict[str, object] = {}
    result["read_s_with_100_part_tail"], result["rows_read"] = _median_read(store)
    started = time.perf_counter()
    store.compact()
    result["compact_s"] = round(time.perf_counter() - started, 3)
    result["read_s_compacted"], _ = _median_read(store)
    result["bytes_on_disk"] = sum(p.stat().st_size for p in folder.rglob("*.parquet"))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--json-out", type=Path, default=Path("benchmarks/results/store_speed.json"))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    result: dict[str, object] = {"benchmark": "store_speed", "rows": args.rows}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        result["append_rows_per_s_1_row_parts"] = round(append_rate(root / "a", 1, 300, rng))
        result["append_rows_per_s_100_row_parts"] = round(append_rate(root / "b", 100, 100, rng))
        result.update(million_row_reads(root / "big", args.rows, rng))
    save_json(result, args.json_out)


if __name__ == "__main__":
    main()
