"""Training and inference throughput of the TF-CLIP model, in frames per second.

Why: a GPU-day per full run is the cost this project exists to cut; the HPO layer's promotions are only as
cheap as each epoch. This measures the model alone (random tensors as input, no data loading), so the figure
is the compute ceiling a data pipeline must feed.

* CPU: the ``tiny-cpu`` preset (always).
* GPU (when ``torch.cuda.is_available()``): ViT-B/16 at 256x128, T=8, batch 16 (the ``tfclip`` preset), bf16
  autocast. FLOPs of one training step are counted with ``torch.utils.flop_counter.FlopCounterMode``;
  achieved TFLOP/s and MFU against the device's dense bf16 peak are reported (``--peak-tflops`` overrides the
  built-in table).

    python benchmarks/train_throughput.py [--steps 10] [--warmup 3] [--json-out PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from trainers.engine import _autocast, build_model, build_task
from trainers.tfclip.config import TrainerConfig, resolve_config
from trainers.tfclip.optim import build_optimizer

#: Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets, by device-name fragment.
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}
#: Identities in the classifier and the identity memory: the demo's training ids for tiny-cpu, AG-VPReID's
#: training ids minus a 10 % validation split for ViT-B/16 (the SSP attends over all of them).
NUM_CLASSES = {"tiny-cpu": 51, "tfclip": 620}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(config: TrainerConfig, device: torch.device, *, steps: int, warmup: int) -> dict[str, Any]:
    torch.manual_seed(0)
    classes = NUM_CLASSES[str(config.preset)]
    embed = 512 if config.model.backbone != "tiny-cpu" else 64
    memory = torch.randn(classes, embed) if config.uses_memory else None
    model = build_model(config, classes, memory).to(device)
    task = build_task(config, model, classes).to(device)  # with the parts' widths, as fit builds it
    optimizer = build_optimizer(model, config.optim, task=task)
    batch = config.data.batch.batch_size
    frames = config.data.sampling.seq_len
    size = (config.data.transform.height, config.data.transform.width)
    clips = torch.randn(batch, frames, 3, *size, device=device)
    cameras = torch.randint(0, 6, (batch,), device=device)
    labels = torch.arange(config.data.batch.p, device=device).repeat_interleave(config.data.batch.k)

    def train_step() -> None:
        with _autocast(config, device):
            outputs = model(clips, cameras)
        loss = task(outputs, labels)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    flops = None
    if device.type == "cuda":
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            train_step()
        flops = counter.get_total_flops()
    model.train()
    times = []
    for i in range(warmup + steps):
        _sync(device)
        started = time.perf_counter()
        train_step()
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - started)
    model.eval()
    infer = []
    with torch.inference_mode():
        for i in range(warmup + steps):
            _sync(device)
            started = time.perf_counter()
            with _autocast(config, device):
                model.test_features(clips, cameras)
            _sync(device)
            if i >= warmup:
                infer.append(time.perf_counter() - started)
    step_s, infer_s = statistics.median(times), statistics.median(infer)
    result: dict[str, Any] = {
        "preset": config.preset,
        "backbone": config.model.backbone,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "identities": classes,
        "batch_tracklets": batch,
        "frames_per_tracklet": frames,
        "input": list(size),
        "train_step_s": round(step_s, 5),
        "train_frames_per_s": round(batch * frames / step_s, 1),
        "inference_frames_per_s": round(batch * frames / infer_s, 1),
        "threads": torch.get_num_threads(),
    }
    if flops is not None:
        result["train_step_tflop"] = round(flops / 1e12, 3)
        result["achieved_tflops"] = round(flops / step_s / 1e12, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, default=None, help="Override the device's bf16 peak.")
    parser.add_argument("--json-out", type=Path, default=Path("benchmarks/results/train_throughput.json"))
    args = parser.parse_args()

    results = [
        measure(
            resolve_config({"preset": "tiny-cpu"}), torch.device("cpu"), steps=args.steps, warmup=args.warmup
        )
    ]
    if torch.cuda.is_available():
        device = torch.device("cuda")
        gpu = measure(resolve_config({"preset": "tfclip"}), device, steps=args.steps, warmup=args.warmup)
        name = gpu["device"]
        peak = args.peak_tflops or next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)
        if peak is not None and "achieved_tflops" in gpu:
            gpu["peak_bf16_tflops"] = peak
            gpu["mfu"] = round(gpu["achieved_tflops"] / peak, 3)
        results.append(gpu)
    else:
        print("no GPU available: ViT-B/16 throughput and MFU not measured")
    for result in results:
        print(json.dumps(result))
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(
        json.dumps({"benchmark": "train_throughput", "results": results}, indent=1) + "\n"
    )
    print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
