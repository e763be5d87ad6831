"""Does the ``tiny-cpu`` preset learn on the default synthetic dataset, and how fast?

Prints the validation mAP / R1 of the randomly initialised model (same seed, same features the trained model
starts from), then trains the preset's full schedule and prints loss and validation metrics per epoch, the
wall time, and the gain. Writes JSON.

    python benchmarks/tiny_learning.py [--data .demo/data] [--epochs 40] [--json-out PATH]

Without ``--data`` the default synthetic dataset (``agvp-hpo data synth`` defaults) is generated in a
temporary folder first.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from trainers.data.index import read_dataset
from trainers.data.pipeline import validation_split
from trainers.data.split import validation_views
from trainers.data.synth import generate_dataset
from trainers.engine import build_model, evaluate_model, fit
from trainers.tfclip.config import resolve_config


def run(data: Path, epochs: int | None, json_out: Path) -> None:
    config = resolve_config({"preset": "tiny-cpu", "data": {"root": str(data)}})
    epochs = epochs or config.optim.epochs
    index = read_dataset(data, splits=["train"])
    split = validation_split(index, config.data)
    untrained = build_model(config, num_classes=len(split.train_pids), memory=None)
    baseline = evaluate_model(untrained, config, index, validation_views(index, split), torch.device("cpu"))
    print(f"random init: val mAP {baseline['val_map']:.4f}  R1 {baseline['val_r1']:.4f}")
    started = time.perf_counter()
    rows = []

    def report(result: dict) -> None:
        rows.append(result)
        print(
            f"epoch {result['epoch']:3d}  loss {result['train_loss']:.3f}  val mAP {result['val_map']:.4f}  "
            f"R1 {result['val_r1']:.4f}  ({time.perf_counter() - started:.0f} s)"
        )

    fit(config, max_epochs=epochs, report=report)
    seconds = time.perf_counter() - started
    final = rows[-1]
    print(
        f"trained {epochs} epochs in {seconds:.0f} s: "
        f"val mAP {baseline['val_map']:.4f} -> {final['val_map']:.4f}, "
        f"R1 {baseline['val_r1']:.4f} -> {final['val_r1']:.4f}, loss {rows[0]['train_loss']:.2f} -> "
        f"{final['train_loss']:.2f}"
    )
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(
        json.dumps(
            {
                "benchmark": "tiny_learning",
                "validation_ids": len(split.val_pids),
                "random_init": baseline,
                "epochs": rows,
                "seconds": round(seconds, 1),
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {json_out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--json-out", type=Path, default=Path("benchmarks/results/tiny_learning.json"))
    args = parser.parse_args()
    if args.data is not None:
        run(args.data, args.epochs, args.json_out)
        return
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "synth"
        generate_dataset(data)
        run(data, args.epochs, args.json_out)


if __name__ == "__main__":
    main()
