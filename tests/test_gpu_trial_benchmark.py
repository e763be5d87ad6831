"""benchmarks/gpu_trial.py on a CPU: the "no CUDA" line and report, FLOP counting, and its CPU-reachable
parts end to end with a tiny ``tiny-cpu`` configuration (one trial process)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch
from benchmark_script import load_benchmark

TINY = ["--set=data.batch.p=2", "--set=data.batch.k=2", "--set=data.sampling.seq_len=2"]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny steps on a shared CPU run 10x faster on one thread than on contended ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_benchmark("gpu_trial")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_without_cuda_it_says_so_in_one_line_and_a_json(
    bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "gpu_trial.json"
    assert bench.main(["--json-out", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "no CUDA device: not measured on GPU"
    assert json.loads(out.read_text()) == {
        "benchmark": "gpu_trial",
        "measured": False,
        "reason": "no CUDA device: not measured on GPU",
    }


def test_flops_of_a_step_are_counted(bench: ModuleType) -> None:
    layer = torch.nn.Linear(8, 4, bias=False)
    x = torch.randn(3, 8, requires_grad=True)
    assert bench.count_flops(lambda: layer(x)) == 2 * 3 * 8 * 4  # one (3x8) @ (8x4) matmul
    assert bench.count_flops(lambda: layer(x).sum().backward()) == 3 * 2 * 3 * 8 * 4  # + grads of x and W


def test_peak_table(bench: ModuleType) -> None:
    module = bench
    assert module.peak_tflops("NVIDIA H200") == 989.0 and module.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert module.peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0 and module.peak_tflops("Quadro X") is None


def test_the_cpu_parts_run_end_to_end(bench: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "gpu_trial.json"
    argv = ["--device", "cpu", "--preset", "tiny-cpu", "--quick", "--steps", "1", "--warmup", "0"]
    # the trials-per-device processes: test_a_trials_per_device_worker_reports_its_rates
    assert bench.main([*argv, "--trials", "--loader-workers", "0", *TINY, "--json-out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["measured"] and report["device"] == "cpu" and report["peak_bf16_tflops"] is None
    variants = {row["variant"]: row for row in report["train"]}
    # "SDPA off" (bf16-math-attention, CUDA only) works because the ViT's blocks attend through SDPA:
    # open_clip 3.3.0 open_clip/transformer.py:238-285, ResidualAttentionBlock's nn.MultiheadAttention called
    # with need_weights=False, which torch runs as scaled_dot_product_attention.
    assert set(variants) == {"fp32", "bf16"}  # the math-attention and compile variants are CUDA's
    for row in variants.values():
        assert row["clips_per_s"] > 0 and row["step_tflop"] > 0 and row["mfu"] is None
    assert variants["fp32"]["step_tflop"] == variants["bf16"]["step_tflop"]  # the same work either way
    assert report["eval_model_only"]["clips_per_s"] > 0
    assert report["loader_and_extraction"]["loader_frames_per_s"] > 0
    assert report["loader_and_extraction"]["extract_tracklets_per_s"] > 0
    assert report["trials_per_device"] == []
    assert report["summary"]["best_variant"] in variants and report["summary"]["mfu_target_met"] is None
    assert report["summary"]["loader_is_bottleneck"] is False  # 4 clips of 2 frames per step: easily fed


def test_a_trials_per_device_worker_reports_its_rates(
    bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # what each of the 1/2/4 processes runs (in this process here: a subprocess costs a torch import)
    argv = ["--worker", "--device", "cpu", "--preset", "tiny-cpu", "--precision", "fp32", "--seconds", "0.2"]
    assert bench.main([*argv, "--barrier", str(tmp_path), "--of", "1", "--rank", "0", *TINY]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["train_clips_per_s"] > 0 and line["eval_clips_per_s"] > 0 and line["peak_memory_gib"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval-0", "train-0"]  # the barrier's marks
