"""Does the ``tiny-cpu`` preset learn on the default synthetic dataset, and how fast?

For each seed: the validation mAP / R1 of the randomly initialised model (same seed, same features the
trained model starts from), then the preset's full schedule with loss and validation metrics per epoch, the
wall time and the gain. Prints one line per epoch and a summary with the median over seeds; writes JSON.

    python benchmarks/tiny_learning.py [--data .demo/data] [--epochs 40] [--seeds 0,1,2] [--json-out PATH]

Without ``--data`` the default synthetic dataset (``agvp-hpo data synth`` defaults) is generated in a
temporary folder first.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from save_json import save_json  # benchmarks/ is on sys.path when a script runs

from trainers.data.index import read_dataset
from trainers.data.pipeline import validation_split
from trainers.data.split import validation_views
from trainers.data.synth import generate_dataset
from trainers.engine import build_model, evaluate_model, fit
from trainers.tfclip.config import resolve_config


def run_seed(data: Path, epochs: int | None, seed: int, cache: Path) -> dict[str, Any]:
    runtime = {"seed": seed, "cache_dir": str(cache)}  # the memory cache stays out of the user's home
    config = resolve_config({"preset": "tiny-cpu", "data": {"root": str(data)}, "runtime": runtime})
    epochs = epochs or config.optim.epochs
    index = read_dataset(data, splits=["train"])
    split = validation_split(index, config.data)
    untrained = build_model(config, num_classes=len(split.train_pids), memory=None)
    baseline = evaluate_model(untrained, config, index, validation_views(index, split), torch.device("cpu"))
    print(f"seed {seed}: random init val mAP {baseline['val_map']:.4f}  R1 {baseline['val_r1']:.4f}")
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []

    def report(result: dict) -> None:
        rows.append(result)
        print(
            f"seed {seed} epoch {result['epoch']:3d}  loss {result['train_loss']:.3f}  "
            f"val mAP {result['val_map']:.4f}  R1 {result['val_r1']:.4f}  "
            f"({time.perf_counter() - started:.0f} s)"
        )

    fit(config, max_epochs=epochs, report=report)
    seconds = time.perf_counter() - started
    final = rows[-1]
    print(
        f"seed {seed}: trained {epochs} epochs in {seconds:.0f} s: "
        f"val mAP {baseline['val_map']:.4f} -> {final['val_map']:.4f}, "
        f"R1 {baseline['val_r1']:.4f} -> {final['val_r1']:.4f}, loss {rows[0]['train_loss']:.2f} -> "
        f"{final['train_loss']:.2f}"
    )
    return {
        "seed": seed,
        "validation_ids": len(split.val_pids),
        "random_init": baseline,
        "final": {k: final[k] for k in ("val_map", "val_r1", "train_loss")},
        "best_val_map": max(r["val_map"] for r in rows),
        "epochs": rows,
        "seconds": round(seconds, 1),
    }


def run(data: Path, epochs: int | None, seeds: list[int], json_out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="agvp-cache-") as cache:
        runs = [run_seed(data, epochs, seed, Path(cache)) for seed in seeds]

    def median(values: list[float]) -> float:
        return round(statistics.median(values), 4)

    summary = {
        "random_init_val_map": median([r["random_init"]["val_map"] for r in runs]),
        "final_val_map": median([r["final"]["val_map"] for r in runs]),
        "final_val_r1": median([r["final"]["val_r1"] for r in runs]),
        "best_val_map": median([r["best_val_map"] for r in runs]),
        "seconds": median([r["seconds"] for r in runs]),
    }
    print(
        f"median over seeds {seeds}: val mAP {summary['random_init_val_map']} -> {summary['final_val_map']} "
        f"(best epoch {summary['best_val_map']}), R1 {summary['final_val_r1']}, "
        f"{summary['seconds']} s per run"
    )
    save_json({"benchmark": "tiny_learning", "seeds": seeds, "median": summary, "runs": runs}, json_out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated runtime seeds")
    parser.add_argument("--json-out", type=Path, default=Path("benchmarks/results/tiny_learning.json"))
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.data is not None:
        run(args.data, args.epochs, seeds, args.json_out)
        return
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "synth"
        generate_dataset(data)
        run(data, args.epochs, seeds, args.json_out)


if __name__ == "__main__":
    main()
