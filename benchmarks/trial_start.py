"""Where a trial's start goes and what its checkpoint costs (issue 15, part 2: measure, then make it cheap).

For each preset (default ``tiny-cpu`` and ``tfclip``, i.e. ViT-B/16) on a small synthetic dataset, on CPU,
the seconds of each stage ``trainers.engine.fit`` runs before its first training step, in its order:

* data setup: read the index, carve the validation split, build the PK loader;
* identity memory: a cache miss (CLIP features of every training tracklet) and a hit;
* model build, and loading its image encoder from a local weights file (an open_clip-style checkpoint of
  the randomly initialised tower, written here first);
* task and optimizer;
* the first batch (loading it) and the first step (forward, backward, optimizer step);
* the checkpoint ``fit`` writes after an epoch (model, task, optimizer state with Adam's moments after that
  step): its size, save and restore (``torch.load`` plus ``load_state_dict``) seconds.

Prints a table and writes JSON. The batch is reduced to 2 identities x 2 tracklets (``--p`` / ``--k``) so
that one ViT-B/16 step fits a CPU; the stages before the step do not depend on it.

    python benchmarks/trial_start.py [--presets tiny-cpu,tfclip] [--threads 2] [--json-out PATH]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from save_json import save_json  # benchmarks/ is on sys.path when a script runs

from trainers.data.pipeline import read_training_index, train_loader, validation_split
from trainers.data.synth import SynthConfig, generate_dataset
from trainers.engine import build_model, build_task
from trainers.tfclip.config import resolve_config
from trainers.tfclip.memory import identity_memory
from trainers.tfclip.optim import build_optimizer

#: A small dataset: the stages' costs that grow with the data (memory miss) are reported per tracklet too.
DATA = SynthConfig(seed=3, train_ids=12, test_ids=2, distractor_ids=1, frames=(4, 8))


def measure(preset: str, data: Path, scratch: Path, p: int, k: int, threads: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    overrides = {
        "data.root": str(data),
        "data.batch.p": p,
        "data.batch.k": k,
        "data.split.fraction": 0.3,
        "runtime.cache_dir": str(scratch / f"cache-{preset}"),
        "runtime.threads": threads,
    }
    config = resolve_config({"preset": preset}, overrides=overrides)
    device = torch.device("cpu")
    seconds: dict[str, float] = {}

    def timed(stage: str, started: float) -> None:
        seconds[stage] = round(time.perf_counter() - started, 3)

    started = time.perf_counter()
    index = read_training_index(config.data.root, config.data)
    split = validation_split(index, config.data)
    loader, dataset, _ = train_loader(index, split, config.data, seed=0)
    labels = dict(dataset.labels or {})
    timed("data setup", started)
    memory = None
    if config.uses_memory:
        started = time.perf_counter()
        memory, _ = identity_memory(config, index, split, labels, device=device)
        timed("identity memory (miss)", started)
        started = time.perf_counter()
        memory, _ = identity_memory(config, index, split, labels, device=device)
        timed("identity memory (hit)", started)
    started = time.perf_counter()
    model = build_model(config, len(labels), memory)
    timed("model build", started)
    weights = scratch / f"{preset}-weights.pt"
    visual = {f"visual.{key}": value for key, value in model.encoder.tower.state_dict().items()}
    torch.save({"state_dict": visual}, weights)
    started = time.perf_counter()
    model.encoder.load_weights(weights)
    timed("weights load", started)
    started = time.perf_counter()
    task = build_task(config, model, len(labels))
    optimizer = build_optimizer(model, config.optim, task=task)
    timed("task + optimizer", started)
    started = time.perf_counter()
    batch = next(iter(loader))
    timed("first batch", started)
    started = time.perf_counter()
    model.train()
    terms = task(model(batch["clip"], batch["camera"]), batch["label"])
    optimizer.zero_grad(set_to_none=True)
    terms["loss"].backward()
    optimizer.step()
    timed("first step", started)
    payload = {"model": model.state_dict(), "task": task.state_dict(), "optimizer": optimizer.state_dict()}
    path = scratch / f"{preset}-checkpoint.pt"
    started = time.perf_counter()
    torch.save(payload, path)
    with path.open("rb") as handle:
        os.fsync(handle.fileno())
    timed("checkpoint save (+fsync)", started)
    started = time.perf_counter()
    restored = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(restored["model"])
    task.load_state_dict(restored["task"])
    optimizer.load_state_dict(restored["optimizer"])
    timed("checkpoint restore", started)
    before_step = sum(
        v for s, v in seconds.items() if s not in ("identity memory (hit)",) and "checkpoint" not in s
    )
    return {
        "preset": preset,
        "backbone": config.model.backbone,
        "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "train_tracklets": len(dataset),
        "batch_clips": p * k,
        "seq_len": config.data.sampling.seq_len,
        "size": f"{config.data.transform.height}x{config.data.transform.width}",
        "seconds": seconds,
        "start_to_first_step_miss": round(before_step, 2),
        "checkpoint_mb": round(path.stat().st_size / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="tiny-cpu,tfclip")
    parser.add_argument("--p", type=int, default=2)
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json-out", type=Path, default=Path("benchmarks/results/trial_start.json"))
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="agvp-trial-start-") as folder:
        scratch = Path(folder)
        data = scratch / "data"
        generate_dataset(data, DATA)
        for preset in args.presets.split(","):
            result = measure(preset, data, scratch, args.p, args.k, args.threads)
            results.append(result)
            print(
                f"\n{preset} ({result['backbone']}, {result['parameters_m']}M parameters, "
                f"{result['train_tracklets']} training tracklets, batch {result['batch_clips']} clips x "
                f"{result['seq_len']} frames at {result['size']}):"
            )
            for stage, value in result["seconds"].items():
                print(f"  {stage:28s} {value:8.3f} s")
            print(
                f"  start to first step (memory miss): {result['start_to_first_step_miss']:.2f} s; "
                f"checkpoint {result['checkpoint_mb']} MB",
                flush=True,
            )
    save_json(
        {
            "setting": {
                "presets": args.presets,
                "batch": [args.p, args.k],
                "threads": args.threads,
                "data": {"train_ids": DATA.train_ids, "frames": list(DATA.frames)},
                "device": "cpu",
                "command": "python benchmarks/trial_start.py "
                + f"--presets {args.presets} --threads {args.threads}",
            },
            "results": results,
        },
        args.json_out,
    )


if __name__ == "__main__":
    main()
