"""One trial on a GPU: training and evaluation throughput, MFU, peak memory, loader speed, trials per GPU.

Why: a study's cost is trials x epochs x the seconds of one epoch, and on a large GPU a small model leaves
most of the device idle unless several trials share it (``resources.trials_per_gpu``). This measures, with
the repo's own builders (:func:`trainers.engine.build_model` / ``build_task``, random initialisation) and
the ``--preset`` (default ``tfclip``: ViT-B/16, 256x128, T=8, PK 4x4 = 16 clips):

* training step variants - fp32 eager, bf16 autocast eager, bf16 with SDPA's math kernel (flash / memory-
  efficient attention off: ``torch.nn.attention.sdpa_kernel``; the towers' ``nn.MultiheadAttention`` call
  SDPA), bf16 + ``torch.compile`` - each as clips/s, step time, peak memory
  (``torch.cuda.max_memory_allocated``) and, from the FLOPs of one step
  (``torch.utils.flop_counter.FlopCounterMode``), achieved TFLOP/s and MFU against the device's dense bf16
  peak (table below; an unknown device reports TFLOP/s only);
* the training loader's frames/s on this machine (synthetic dataset in the AG-VPReID layout, the preset's
  data config with ``--loader-workers`` workers) against the frames/s the trials consume;
* evaluation: feature extraction through :func:`trainers.evaluation.extract.extract_features` (loader
  included) and the model's ``test_features`` alone;
* 1 vs 2 vs 4 trials per GPU (``--trials``): separate processes sharing the device, each training (then
  evaluating) in its best eager variant on random clips for ``--seconds`` after all are ready; aggregate
  clips/s.

Target on an H100/H200-class device: >= 40 % MFU for the training step; the loader never the bottleneck.
Without a CUDA device (``--device cuda``, the default) it prints one line, writes a JSON saying so and exits
0. ``--device cpu --preset tiny-cpu --quick`` runs every CPU-reachable part in seconds (the tests do).

    python benchmarks/gpu_trial.py [--quick] [--device cuda] [--preset tfclip] [--trials 1 2 4]
        [--json-out benchmarks/results/gpu_trial.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import yaml

from trainers.probe import build_training, synthetic_batch, training_step
from trainers.tfclip.config import TrainerConfig, resolve_config

#: Dense bf16 tensor-core peaks (TFLOP/s, vendors' data sheets), by device-name fragment (first match).
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "GH200": 989.0, "A100": 312.0, "L40S": 362.0}
#: Identities of the classifier (AG-VPReID's training ids minus a 10 % validation split).
NUM_CLASSES = 620
NO_CUDA = "no CUDA device: not measured on GPU"
#: ``--set KEY=VALUE`` trainer overrides (every part of the run and its worker processes uses them).
OVERRIDES: dict[str, Any] = {}


def peak_tflops(device_name: str) -> float | None:
    return next((v for k, v in BF16_PEAK_TFLOPS.items() if k in device_name), None)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _config(preset: str, precision: str) -> TrainerConfig:
    return resolve_config({"preset": preset}, overrides={**OVERRIDES, "optim.precision": precision})


@contextlib.contextmanager
def _attention(sdpa: bool) -> Iterator[None]:
    """SDPA's fused kernels (default) or its math kernel alone ("SDPA off")."""
    if sdpa:
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):
        yield


def count_flops(step: Callable[[], Any]) -> int:
    """FLOPs of one call of ``step`` (forward and backward matmuls/convolutions/attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return int(counter.get_total_flops())


def _timed(step: Callable[[], Any], device: torch.device, *, steps: int, warmup: int) -> float:
    """Median seconds of ``step`` after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    _sync(device)
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def train_variant(
    preset: str, device: torch.device, *, precision: str, sdpa: bool, compile: bool, steps: int, warmup: int
) -> dict[str, Any]:
    """One training-step variant: clips/s, step time, peak memory, FLOPs, TFLOP/s and MFU."""
    config = _config(preset, precision)
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    model, task, optimizer = build_training(config, device, num_classes=NUM_CLASSES)
    model.train()
    batch = synthetic_batch(config, device, num_classes=NUM_CLASSES)
    bf16 = precision == "bf16"
    flops = count_flops(lambda: training_step(model, task, optimizer, batch, bf16=bf16, config=config))
    run_model: Any = torch.compile(model) if compile else model

    def step() -> None:
        with _attention(sdpa):
            training_step(run_model, task, optimizer, batch, bf16=bf16, config=config)

    compile_s = None
    if compile:
        started = time.perf_counter()
        step()
        _sync(device)
        compile_s = round(time.perf_counter() - started, 1)
    seconds = _timed(step, device, steps=steps, warmup=warmup)
    clips = config.data.batch.batch_size
    result: dict[str, Any] = {
        "variant": f"{precision}{'' if sdpa else '-math-attention'}{'-compile' if compile else ''}",
        "precision": precision,
        "sdpa_fused": sdpa,
        "compile": compile,
        "compile_s": compile_s,
        "step_s": round(seconds, 5),
        "clips_per_s": round(clips / seconds, 2),
        "frames_per_s": round(clips * config.data.sampling.seq_len / seconds, 1),
        "step_tflop": round(flops / 1e12, 4),
        "achieved_tflops": round(flops / seconds / 1e12, 2),
        "peak_memory_gib": None,
        "mfu": None,
    }
    if device.type == "cuda":
        result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        peak = peak_tflops(torch.cuda.get_device_name(device))
        if peak is not None:
            result["mfu"] = round(flops / seconds / 1e12 / peak, 3)
    return result


def eval_rate(preset: str, device: torch.device, *, steps: int, warmup: int) -> dict[str, Any]:
    """``test_features`` alone on random clips (bf16 on CUDA), at the preset's evaluation batch size."""
    config = _config(preset, "bf16" if device.type == "cuda" else "fp32")
    model, _, _ = build_training(config, device, num_classes=NUM_CLASSES)
    model.eval()
    size = config.runtime.eval_batch_size
    clips, cameras, _ = synthetic_batch(config, device, num_classes=NUM_CLASSES)
    clips = clips[:1].expand(size, *clips.shape[1:]).contiguous()
    cameras = cameras[:1].expand(size).contiguous()

    def step() -> None:
        with (
            torch.inference_mode(),
            torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"),
        ):
            model.test_features(clips, cameras)

    seconds = _timed(step, device, steps=steps, warmup=warmup)
    return {
        "batch": size,
        "clips_per_s": round(size / seconds, 1),
        "frames_per_s": round(size * config.data.sampling.seq_len / seconds, 1),
    }


def loader_and_extraction(
    preset: str, device: torch.device, *, workers: int, batches: int, ids: int, scratch: Path
) -> dict[str, Any]:
    """The training loader's frames/s and the evaluation's (:func:`extract_features`, loader included)."""
    from trainers.data.pipeline import eval_dataset, read_training_index, train_loader, validation_split
    from trainers.data.synth import SynthConfig, generate_dataset
    from trainers.evaluation.extract import extract_features

    root = scratch / "data"
    synth = SynthConfig(
        train_ids=ids, test_ids=2, distractor_ids=0, tracklets_per_platform=(2, 3), frames=(8, 12)
    )
    generate_dataset(root, synth)
    config = resolve_config(
        {"preset": preset}, overrides={**OVERRIDES, "data.root": str(root), "data.workers": workers}
    )
    index = read_training_index(root, config.data)
    split = validation_split(index, config.data)
    loader, _, _ = train_loader(
        index, split, config.data, cache_dir=scratch / "cache", pin_memory=device.type == "cuda"
    )
    iterator = iter(loader)
    next(iterator)  # worker start-up and the frame cache's build are not counted
    frames, started = 0, time.perf_counter()
    for _ in range(batches):
        try:
            batch = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            batch = next(iterator)
        frames += batch["clip"].shape[0] * batch["clip"].shape[1]
    loader_fps = frames / (time.perf_counter() - started)
    del iterator, loader
    model, _, _ = build_training(config, device, num_classes=NUM_CLASSES)
    model.eval()
    bf16 = device.type == "cuda"

    def encode(clips: torch.Tensor, cameras: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
            return model.test_features(clips, cameras)

    tracklets = [t for t in index.tracklets if t.pid in set(split.val_pids)] or list(index.tracklets)
    dataset = eval_dataset(index, tracklets, config.data, cache_dir=scratch / "cache")
    with torch.inference_mode():
        extract_features(encode, dataset, batch_size=config.runtime.eval_batch_size, device=device)  # warm
        started = time.perf_counter()
        extract_features(
            encode, dataset, batch_size=config.runtime.eval_batch_size, num_workers=workers, device=device
        )
        _sync(device)
        seconds = time.perf_counter() - started
    return {
        "loader_workers": workers,
        "loader_frames_per_s": round(loader_fps, 1),
        "extract_tracklets": len(tracklets),
        "extract_tracklets_per_s": round(len(tracklets) / seconds, 1),
    }


def worker(args: argparse.Namespace) -> None:
    """One of ``--trials`` processes: train, wait for the others, train ``--seconds``; then evaluate alike."""
    device = torch.device(args.device)
    config = _config(args.preset, args.precision)
    model, task, optimizer = build_training(config, device, num_classes=NUM_CLASSES)
    batch = synthetic_batch(config, device, num_classes=NUM_CLASSES)
    bf16 = args.precision == "bf16"
    barrier = Path(args.barrier)

    def rate(step: Callable[[], Any], phase: str, clips: int) -> float:
        step()
        _sync(device)
        (barrier / f"{phase}-{args.rank}").touch()
        while len(list(barrier.glob(f"{phase}-*"))) < args.of:
            time.sleep(0.01)
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < args.seconds:
            step()
            count += 1
        _sync(device)
        return count * clips / (time.perf_counter() - started)

    model.train()
    train = rate(
        lambda: training_step(model, task, optimizer, batch, bf16=bf16, config=config), "train", len(batch[0])
    )
    model.eval()

    def evaluate() -> None:
        with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=bf16):
            model.test_features(batch[0], batch[1])

    evaluation = rate(evaluate, "eval", len(batch[0]))
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    print(json.dumps({"train_clips_per_s": train, "eval_clips_per_s": evaluation, "peak_memory_gib": peak}))


def trials_per_device(args: argparse.Namespace, trials: int, precision: str, scratch: Path) -> dict[str, Any]:
    """``trials`` processes on one device at once: per-process and aggregate clips/s."""
    barrier = scratch / f"barrier-{trials}"
    barrier.mkdir()
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        "--device",
        args.device,
        "--preset",
        args.preset,
        "--precision",
        precision,
        "--seconds",
        str(args.seconds),
        "--barrier",
        str(barrier),
        "--of",
        str(trials),
        *(f"--set={key}={json.dumps(value)}" for key, value in OVERRIDES.items()),
    ]
    threads = max(1, (os.cpu_count() or 1) // trials)
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    processes = [
        subprocess.Popen([*command, "--rank", str(rank)], stdout=subprocess.PIPE, text=True, env=environment)
        for rank in range(trials)
    ]
    outputs = [process.communicate(timeout=args.worker_timeout)[0] for process in processes]
    if any(process.returncode for process in processes):
        return {"trials": trials, "error": f"a worker exited with {[p.returncode for p in processes]}"}
    results = [json.loads(output.strip().splitlines()[-1]) for output in outputs]
    train = [r["train_clips_per_s"] for r in results]
    evaluation = [r["eval_clips_per_s"] for r in results]
    return {
        "trials": trials,
        "train_clips_per_s_each": [round(v, 2) for v in train],
        "train_clips_per_s_total": round(sum(train), 2),
        "eval_clips_per_s_total": round(sum(evaluation), 2),
        "peak_memory_gib_each": [r["peak_memory_gib"] for r in results],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    steps, warmup = args.steps, args.warmup
    cuda = device.type == "cuda"
    variants = [("fp32", True, False), ("bf16", True, False)]
    if cuda or args.all_variants:
        variants.append(("bf16", False, False))
    if args.compile if args.compile is not None else cuda:
        variants.append(("bf16", True, True))
    report: dict[str, Any] = {
        "benchmark": "gpu_trial",
        "measured": True,
        "device": name,
        "peak_bf16_tflops": peak_tflops(name) if cuda else None,
        "preset": args.preset,
        "torch": torch.__version__,
        "quick": args.quick,
        "overrides": dict(OVERRIDES),
    }
    train = []
    for precision, sdpa, compiled in variants:
        try:
            train.append(
                train_variant(
                    args.preset,
                    device,
                    precision=precision,
                    sdpa=sdpa,
                    compile=compiled,
                    steps=steps,
                    warmup=warmup,
                )
            )
        except Exception as error:  # one variant failing (a compile error, say) must not lose the others
            train.append({"variant": f"{precision}-sdpa{sdpa}-compile{compiled}", "error": repr(error)[:300]})
        print(json.dumps(train[-1]), flush=True)
    report["train"] = train
    report["eval_model_only"] = eval_rate(args.preset, device, steps=steps, warmup=warmup)
    print(json.dumps(report["eval_model_only"]), flush=True)
    with tempfile.TemporaryDirectory(prefix="agvp-gpu-trial-") as folder:
        scratch = Path(folder)
        workers = args.loader_workers if args.loader_workers is not None else min(8, os.cpu_count() or 1)
        report["loader_and_extraction"] = loader_and_extraction(
            args.preset,
            device,
            workers=workers,
            batches=5 if args.quick else 30,
            ids=16 if args.quick else 128,
            scratch=scratch,
        )
        print(json.dumps(report["loader_and_extraction"]), flush=True)
        precision = "bf16" if cuda else "fp32"
        report["trials_per_device"] = [trials_per_device(args, n, precision, scratch) for n in args.trials]
        for row in report["trials_per_device"]:
            print(json.dumps(row), flush=True)
    ok = [t for t in train if "clips_per_s" in t]
    best = max(ok, key=lambda t: t["clips_per_s"]) if ok else None
    seq_len = _config(args.preset, "fp32").data.sampling.seq_len
    totals = [row.get("train_clips_per_s_total", 0.0) for row in report["trials_per_device"]]
    needed = max([best["clips_per_s"] if best else 0.0, *totals]) * seq_len
    loader_fps = report["loader_and_extraction"]["loader_frames_per_s"]
    report["summary"] = {
        "best_variant": best["variant"] if best else None,
        "best_mfu": best["mfu"] if best else None,
        "mfu_target_met": (best["mfu"] or 0.0) >= 0.40 if best and best["mfu"] is not None else None,
        "frames_per_s_needed": round(needed, 1),
        "loader_frames_per_s": loader_fps,
        "loader_is_bottleneck": loader_fps < needed,
    }
    return report


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--preset", default="tfclip")
    parser.add_argument(
        "--quick", action="store_true", help="few steps and short windows (< 5 min on a H200)"
    )
    parser.add_argument("--steps", type=int, default=None, help="timed steps per variant (20; quick: 3)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (5; quick: 1)")
    parser.add_argument("--trials", type=int, nargs="*", default=[1, 2, 4], help="processes per device")
    parser.add_argument("--seconds", type=float, default=None, help="timed window of each trials-per-GPU run")
    parser.add_argument("--loader-workers", type=int, default=None)
    parser.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, default=None, help="default: on CUDA"
    )
    parser.add_argument("--all-variants", action="store_true", help="the math-attention variant on CPU too")
    parser.add_argument("--worker-timeout", type=float, default=600.0)
    parser.add_argument("--json-out", type=Path, default=Path("benchmarks/results/gpu_trial.json"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a trainer override")
    # a trials-per-GPU process (internal)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="bf16", help=argparse.SUPPRESS)
    parser.add_argument("--barrier", default="", help=argparse.SUPPRESS)
    parser.add_argument("--rank", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--of", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    OVERRIDES.clear()
    for item in args.set:
        key, _, value = item.partition("=")
        OVERRIDES[key] = yaml.safe_load(value)
    if args.seconds is None:
        args.seconds = 5.0 if args.quick else 20.0
    if args.steps is None:
        args.steps = 3 if args.quick else 20
    if args.warmup is None:
        args.warmup = 1 if args.quick else 5
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        print(NO_CUDA)
        report: dict[str, Any] = {"benchmark": "gpu_trial", "measured": False, "reason": NO_CUDA}
    else:
        report = run(args)
        print(json.dumps(report["summary"]))
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
