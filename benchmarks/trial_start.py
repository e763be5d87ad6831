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
  step): its size, save and restore (``torch.load`` plus ``load_state_dict``) seconds;
* how long that checkpoint blocks the training loop: written synchronously (before: save + fsync) against
  ``fit``'s background write while the validation pass runs (the loop waits only for what is left of the
  write when validation ends), and what a CPU copy of the state would cost (``fit`` makes none);
* the weights file read whole against memory-mapped (``torch.load(mmap=True)``), each in a fresh process:
  seconds, and the process's private (anonymous) and file-backed resident memory after the load; mapped
  pages are the node's page cache, shared by every trial that reads the file.

Prints a table and writes JSON. The batch is reduced to 2 identities x 2 tracklets (``--p`` / ``--k``) so
that one ViT-B/16 step fits a CPU; the stages before the step do not depend on it.

    python benchmarks/trial_start.py [--presets tiny-cpu,tfclip] [--threads 2] [--json-out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from save_json import save_json  # benchmarks/ is on sys.path when a script runs

from trainers.atomic import atomic_write
from trainers.checkpoint_writer import CheckpointWriter, save_payload, snapshot
from trainers.data.pipeline import read_training_index, train_loader, validation_split
from trainers.data.split import validation_views
from trainers.data.synth import SynthConfig, generate_dataset
from trainers.data.transforms import to_model_input
from trainers.engine import build_model, build_task, evaluate_model
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
        # the JPEG path: a frame-cache build is a once-per-node cost, measured by loader_throughput.py
        "data.frame_cache": False,
    }
    config = resolve_config({"preset": preset}, overrides=overrides)
    device = torch.device("cpu")
    seconds: dict[str, float] = {}

    def timed(stage: str, started: float) -> None:
        seconds[stage] = round(time.perf_counter() - started, 3)

    started = time.perf_counter()
    index = read_training_index(config.data.root, config.data)
    split = validation_split(index, config.data)
    loader, dataset, _ = train_loader(index, split, config.data, seed=0, cache_dir=config.runtime.cache_dir)
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
    clips = to_model_input(batch, config.data.transform, device)
    terms = task(model(clips, batch["camera"]), batch["label"])
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
    blocked = checkpoint_blocking(model, task, optimizer, config, index, split, scratch / f"{preset}-async")
    weights_memory = {mmap: weights_load(preset, weights, mmap, threads) for mmap in (False, True)}
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
        "checkpoint_blocking": blocked,
        "weights_load": {
            "read whole" if not mmap else "mmap": value for mmap, value in weights_memory.items()
        },
    }


def checkpoint_blocking(
    model: Any, task: Any, optimizer: Any, config: Any, index: Any, split: Any, folder: Path
) -> dict[str, float]:
    """Seconds the training loop waits for one epoch's checkpoint: synchronous (save, fsync, rename) against
    fit's background write of the live tensors overlapping the validation pass (and what a CPU copy of the
    state, which fit does not make, would cost)."""
    folder.mkdir(parents=True, exist_ok=True)
    views = validation_views(index, split)
    device = torch.device("cpu")
    state = {"model": model.state_dict(), "task": task.state_dict(), "optimizer": optimizer.state_dict()}
    started = time.perf_counter()
    evaluate_model(model, config, index, views, device)
    validation_alone = time.perf_counter() - started
    started = time.perf_counter()
    atomic_write(folder / "sync.pt", lambda temporary: save_payload(state, temporary))
    synchronous = time.perf_counter() - started
    started = time.perf_counter()
    snapshot(state)
    copy_seconds = time.perf_counter() - started
    writer = CheckpointWriter()
    started = time.perf_counter()
    writer.submit(folder / "async.pt", state)
    submitted = time.perf_counter() - started
    started = time.perf_counter()
    evaluate_model(model, config, index, views, device)
    validation_during = time.perf_counter() - started
    started = time.perf_counter()
    writer.wait()
    waited = time.perf_counter() - started
    return {
        "validation_seconds": round(validation_alone, 3),
        "blocked_before_sync_write": round(synchronous, 3),
        "blocked_after_submit": round(submitted, 3),
        "blocked_after_wait_at_report": round(waited, 3),
        "blocked_after_total": round(submitted + waited, 3),
        "background_write_seconds": round(writer.written_seconds, 3),
        "validation_seconds_during_write": round(validation_during, 3),
        "cpu_copy_of_state_seconds_not_made": round(copy_seconds, 3),
    }


#: Run in a fresh process: load the weights file into the model's tower, print seconds and memory.
WEIGHTS_PROBE = """
import json, sys, time, torch
from pathlib import Path
from trainers.tfclip import backbone
from trainers.tfclip.config import resolve_config
from trainers.engine import build_model
def status():
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return {k: int(fields[k].split()[0]) / 1024 for k in ("RssAnon", "RssFile", "VmHWM")}
preset, path, mmap, threads = sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "1", int(sys.argv[4])
torch.set_num_threads(threads)
if not mmap:
    original = torch.load
    def whole(*args, **kwargs):
        kwargs["mmap"] = False
        return original(*args, **kwargs)
    torch.load = whole
config = resolve_config({"preset": preset})
model = build_model(config, 4, None)
before = status()
started = time.perf_counter()
state = backbone._visual_state_dict(path)
read = time.perf_counter() - started
loaded = status()
model.encoder.load_weights(path)
seconds = time.perf_counter() - started
after = status()
print(json.dumps({
    "read_state_dict_seconds": round(read, 3),
    "read_and_load_seconds": round(seconds, 3),
    "state_dict_anon_mb": round(loaded["RssAnon"] - before["RssAnon"], 1),
    "state_dict_file_mb": round(loaded["RssFile"] - before["RssFile"], 1),
    "peak_rss_growth_mb": round(after["VmHWM"] - before["VmHWM"], 1),
}))
"""


def weights_load(preset: str, path: Path, mmap: bool, threads: int) -> dict[str, float]:
    command = [sys.executable, "-c", WEIGHTS_PROBE, preset, str(path), "1" if mmap else "0", str(threads)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


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
            for name, value in {**result["checkpoint_blocking"]}.items():
                print(f"  checkpoint {name:40s} {value:8.3f} s")
            for way, figures in result["weights_load"].items():
                print(f"  weights load ({way}): {figures}")
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
