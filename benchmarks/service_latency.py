"""REST API latency and throughput on a 1M-row store, against a naive read-the-Parquet-per-request baseline.

A study of 10,000 trials x 100 epochs (1,000,000 result rows, one compacted Parquet file) is served by
``agvp-hpo serve`` (uvicorn, one process). A client process keeps ``--concurrency`` requests in flight for
``--seconds`` per endpoint and records each latency (with ``wrk`` when it is installed - Debian's ``wrk``,
a C client that leaves the 2 cores to the server - else an httpx asyncio client):

* best-k: ``GET /api/studies/big/best?k=10``;
* trials: ``GET /api/studies/big/trials?sort=value&order=desc&limit=50&offset=...`` over 20 pages.

The baseline is the same two answers computed on every request from the Parquet files (read the store,
build the trial table, rank), served the same way. Target for the service: p99 < 20 ms and >= 500 req/s.

    python benchmarks/service_latency.py [--seconds 10] [--concurrency 8]
        [--json-out benchmarks/results/service_latency.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from save_json import save_json  # benchmarks/ is on sys.path when a script runs

from hpo.store import ResultStore

TRIALS, EPOCHS = 10_000, 100
PAGES = [f"/api/studies/big/trials?sort=value&order=desc&limit=50&offset={50 * i}" for i in range(20)]
BEST = ["/api/studies/big/best?k=10"]


def build_store(root: Path) -> None:
    """One study, ``TRIALS`` x ``EPOCHS`` rows shaped like the Ray backend's, plus its metadata."""
    rng = np.random.default_rng(0)
    trial = np.repeat(np.arange(TRIALS), EPOCHS)
    epoch = np.tile(np.arange(1, EPOCHS + 1), TRIALS)
    plateau = rng.uniform(0.2, 0.9, TRIALS)
    lr = rng.uniform(1e-5, 1e-3, TRIALS)
    margin = rng.uniform(0.1, 0.6, TRIALS)
    configs = [
        json.dumps(
            {"optim.lr": float(a), "loss.triplet_margin": float(b)}, sort_keys=True, separators=(",", ":")
        )
        for a, b in zip(lr, margin, strict=True)
    ]
    last = epoch == EPOCHS
    frame = pd.DataFrame(
        {
            "study": "big",
            "trial_id": trial,
            "config": np.asarray(configs, dtype=object)[trial],
            "resource": epoch,
            "value": plateau[trial] * (1 - np.exp(-epoch / 20.0)),
            "metric": "val_map",
            "mode": "max",
            "time": np.arange(len(trial), dtype=float),
            "total_resource": np.arange(1, len(trial) + 1),
            "decision": np.where(last, "stop", "continue"),
            "bracket": 0,
            "rung": np.where(
                np.isin(epoch, [1, 3, 11, 33, 100]), np.searchsorted([1, 3, 11, 33, 100], epoch), -1
            ),
            "status": np.where(last, "completed", "running"),
            "param_optim.lr": lr[trial],
            "param_loss.triplet_margin": margin[trial],
        }
    )
    store = ResultStore(root / "big")
    store.append(frame.to_dict("records")[:1])  # the store's own writer; then the bulk as one more part
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.Table.from_pandas(frame.iloc[1:], preserve_index=False),
        store.results_dir / "part-00000001.parquet",
    )
    store.compact()
    spec = {"name": "big", "objective": {"metric": "val_map", "mode": "max"}}
    store.write_metadata({"name": "big", "status": "finished", "spec": spec, "started": time.time()})


NAIVE_APP = """
import json, sys
from pathlib import Path
from fastapi import FastAPI, Response
from hpo.store import ResultStore
from hpo.study.analysis import best_trials, trial_table

store = ResultStore(Path(sys.argv[1]) / "big")
app = FastAPI()

@app.get("/api/studies/big/best")
def best(k: int = 5):
    ranked = best_trials(store.read(), "max", k=k)
    return Response(ranked.to_json(orient="records"), media_type="application/json")

@app.get("/api/studies/big/trials")
def trials(sort: str = "trial_id", order: str = "asc", offset: int = 0, limit: int = 50):
    table = trial_table(store.read()).sort_values(sort, ascending=order == "asc")
    page = table.iloc[offset:offset + limit]
    return Response(page.to_json(orient="records"), media_type="application/json")

if __name__ == "__main__":
    import uvicorn
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="error", access_log=False)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(command: list[str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server did not start: {process.stderr.read().decode() if process.stderr else ''}")


async def load(
    base: str, paths: list[str], seconds: float, concurrency: int, max_requests: int, warm: bool = True
) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        for path in paths if warm else []:  # warm-up: the first answer per query is computed, then cached
            await client.get(path)

        async def worker(index: int) -> None:
            nonlocal errors
            i = index
            while time.perf_counter() < stop_at and len(latencies) < max_requests:
                began = time.perf_counter()
                response = await client.get(paths[i % len(paths)])
                latencies.append(time.perf_counter() - began)
                errors += response.status_code != 200
                i += concurrency

        began = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - began
    ordered = sorted(latencies)
    return {
        "requests": len(latencies),
        "errors": errors,
        "req_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(1000 * statistics.median(ordered), 2),
        "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 2),
    }


def _duration_ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1000.0}[unit]


def load_wrk(base: str, paths: list[str], seconds: float, concurrency: int) -> dict[str, Any]:
    """The same load with wrk (a C client: on 2 cores a Python client would take the server's CPU)."""
    import urllib.request

    for path in paths:  # warm-up: the first answer per query is computed, later ones cached
        urllib.request.urlopen(base + path, timeout=120).read()
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        listed = ", ".join(json.dumps(p) for p in paths)
        script.write(
            f"local paths = {{{listed}}}\nlocal i = 0\n"
            "request = function()\n  i = i + 1\n  return wrk.format('GET', paths[(i % #paths) + 1])\nend\n"
        )
    command = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "--latency", "-s", script.name, base]
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 120).stdout
    Path(script.name).unlink()
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", output, flags=re.MULTILINE))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "client": "wrk",
        "requests": int(re.search(r"(\d+) requests in", output).group(1)),  # type: ignore[union-attr]
        "errors": int(errors.group(1)) if errors else 0,
        "req_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),  # type: ignore[union-attr]
        "p50_ms": round(_duration_ms(percentiles["50"]), 2),
        "p99_ms": round(_duration_ms(percentiles["99"]), 2),
    }


def measure(base: str, seconds: float, concurrency: int, max_requests: int, *, fast: bool) -> dict[str, Any]:
    """Both endpoints; ``fast``: use wrk if installed (its 2-s timeout does not suit the slow baseline)."""
    answers = {}
    for name, paths in (("best_k", BEST), ("trials", PAGES)):
        if fast and shutil.which("wrk"):
            answers[name] = load_wrk(base, paths, seconds, concurrency)
        else:
            answers[name] = {
                "client": "httpx",
                **asyncio.run(load(base, paths, seconds, concurrency, max_requests)),
            }
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--json-out", type=Path, default=Path("benchmarks/results/service_latency.json"))
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="agvp-latency-"))
    result: dict[str, Any] = {"benchmark": "service_latency", "rows": TRIALS * EPOCHS, "trials": TRIALS}
    try:
        began = time.perf_counter()
        build_store(root)
        result["build_store_s"] = round(time.perf_counter() - began, 1)
        port = free_port()
        cli = [sys.executable, "-m", "hpo.cli", "serve", "--store", str(root), "--port", str(port)]
        server = start(cli, port)
        try:
            result["service"] = measure(
                f"http://127.0.0.1:{port}", args.seconds, args.concurrency, 10**9, fast=True
            )
        finally:
            server.terminate()
            server.wait(timeout=30)
        print(json.dumps({"service": result["service"]}), flush=True)
        naive = root / "naive_app.py"
        naive.write_text(NAIVE_APP)
        port = free_port()
        server = start([sys.executable, str(naive), str(root), str(port)], port)
        try:
            result["naive"] = measure(f"http://127.0.0.1:{port}", args.seconds, 2, 20, fast=False)
        finally:
            server.terminate()
            server.wait(timeout=30)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for endpoint in ("best_k", "trials"):
        service, naive_result = result["service"][endpoint], result["naive"][endpoint]
        result[f"{endpoint}_speedup_p50"] = round(naive_result["p50_ms"] / service["p50_ms"], 1)
    save_json(result, args.json_out)


if __name__ == "__main__":
    main()
