"""Fractional-GPU packing (``resources.trials_per_gpu``): the option, the arithmetic, the memory probe on a
CPU, the choice from a (fake) probe result, and the refusal of ``auto`` on a CPU-only Ray cluster."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from hpo.ray_backend import packing
from hpo.ray_backend.packing import (
    CONTEXT_BYTES,
    choose,
    gpu_share,
    heaviest_params,
    pack_trials,
    probe_configs,
    trials_per_gpu,
)
from hpo.ray_backend.runner import RunError, cluster_concurrency, run_study
from hpo.study import StudyError, dump_study, load_study, loads_study, parse_study
from hpo.study.spec import MAX_TRIALS_PER_GPU
from trainers.probe import probe_memory
from trainers.tfclip.config import resolve_config

GIB = 2**30


def _study(root: Path, **resources: Any) -> dict[str, Any]:
    return {
        "name": "packed",
        "space": {"x": {"uniform": [0.0, 1.0]}},
        "fidelity": {"min": 1, "max": 2, "eta": 2},
        "scheduler": "fifo",
        "budget": {"max_trials": 2},
        "resources": {"cpu": 1, **resources},
        "execution": {"cpus": 2},
        "trainer": {"name": "synthetic"},
        "storage": {"root": str(root / "results")},
    }


# --- the option ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [("auto", "auto"), (4, 4), (4.0, 4), (None, None)])
def test_trials_per_gpu_accepts_auto_or_a_count(tmp_path: Path, value: Any, expected: Any) -> None:
    spec = parse_study(_study(tmp_path, trials_per_gpu=value))
    assert spec.resources.trials_per_gpu == expected and spec.resources.gpu == 0
    # the study folder's copy reads back the same (a resumed study measures again)
    assert loads_study(dump_study(spec)).resources == spec.resources


@pytest.mark.parametrize(
    "resources, message",
    [
        ({"trials_per_gpu": 0}, "trials_per_gpu must be auto or a whole number in [1, 16], got 0"),
        ({"trials_per_gpu": 17}, "trials_per_gpu must be auto or a whole number in [1, 16], got 17"),
        ({"trials_per_gpu": "many"}, "trials_per_gpu must be auto or a whole number of trials, got 'many'"),
        ({"trials_per_gpu": True}, "trials_per_gpu must be auto or a whole number of trials, got True"),
        ({"trials_per_gpu": 2.5}, "trials_per_gpu must be a whole number"),
        ({"trials_per_gpu": 2, "gpu": 0.5}, "resources.gpu is 0.5 but trials_per_gpu is set"),
    ],
)
def test_bad_trials_per_gpu_is_a_one_line_error(tmp_path: Path, resources: Any, message: str) -> None:
    with pytest.raises(StudyError) as caught:
        parse_study(_study(tmp_path, **resources))
    text = str(caught.value)
    assert message in text and "\n" not in text and "resources." in text


# --- the arithmetic -----------------------------------------------------------------------------------------


def test_trials_per_gpu_arithmetic() -> None:
    h200 = 141 * GIB
    # floor(0.9 * 141 / (10 * 1.25 + 0.75)) = floor(126.9 / 13.25) = 9
    assert trials_per_gpu(10 * GIB, h200) == 9
    assert trials_per_gpu(10 * GIB, h200, usable=1.0, safety=1.0, reserve=0) == 14  # floor(141 / 10)
    assert trials_per_gpu(GIB // 4, h200) == MAX_TRIALS_PER_GPU  # a tiny model: clamped to the most
    assert trials_per_gpu(200 * GIB, h200) == 1  # does not fit on paper: one trial still runs
    assert trials_per_gpu(0, 80 * GIB) == min(MAX_TRIALS_PER_GPU, math.floor(0.9 * 80 * GIB / CONTEXT_BYTES))
    with pytest.raises(ValueError):
        trials_per_gpu(GIB, 0)
    for n in range(1, MAX_TRIALS_PER_GPU + 1):
        share = gpu_share(n)
        assert n * share <= 1.0 and math.floor(1.0 / share + 1e-9) == n  # what cluster_concurrency counts
    assert gpu_share(3) == 0.3333 and gpu_share(4) == 0.25


# --- the candidates the probe measures ----------------------------------------------------------------------


def test_the_probe_measures_the_largest_memory_candidate_of_each_backbone() -> None:
    spec = load_study("challenge.yaml")
    candidates = heaviest_params(spec.space)
    assert [c["model.backbone"] for c in candidates] == ["ViT-B-16", "EVA02-L-14"]
    vit, eva = candidates
    assert vit["model.stride"] == 12 and "model.stride" not in eva  # its condition holds for the ViT only
    assert vit["data.transform.size"] == "224x224"  # the most pixels of 256x128, 288x144, 224x224
    assert vit["model.acp.cross_view"] is True and vit["model.acp.memory_slots"] == 128
    assert "optim.lr" not in vit and "data.use_extra_sources" not in vit  # no bearing on a step's memory
    configs = probe_configs(spec)
    assert [c["model"]["backbone"] for c in configs] == ["ViT-B-16", "EVA02-L-14"]
    assert configs[0]["data"]["transform"]["height"] == 224 and configs[0]["model"]["stride"] == 12


# --- the probe, on a CPU ------------------------------------------------------------------------------------


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny steps on a shared CPU run many times faster on one thread than on contended ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
def test_the_probe_runs_on_a_cpu_and_says_no_gpu_was_probed() -> None:
    config = resolve_config({"preset": "tiny-cpu"}, overrides={"data.batch.p": 2, "data.batch.k": 2})
    result = probe_memory(config, steps=1, num_classes=8)
    assert not result.gpu and result.device == "cpu"
    assert result.peak_bytes is None and result.total_bytes is None
    assert result.clips == 4 and result.seq_len == 4 and result.image_size == (64, 32)
    assert result.precision == "fp32" and result.backbone == "tiny-cpu"  # auto is fp32 off CUDA
    assert 0 < result.step_seconds < 60
    assert (
        probe_memory(
            config.model_copy(update={"optim": config.optim.model_copy(update={"precision": "bf16"})}),
            steps=1,
            num_classes=8,
        ).precision
        == "bf16"
    )
    with pytest.raises(ValueError, match="steps is 0"):
        probe_memory(config, steps=0)


# --- the choice from a probe result -------------------------------------------------------------------------


def _probe(backbone: str, peak: float) -> dict[str, Any]:
    return {
        "backbone": backbone,
        "peak_bytes": int(peak * GIB),
        "total_bytes": 140 * GIB,
        "device_name": "H200",
    }


def test_pack_trials_resolves_auto_from_the_probe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    probes = [_probe("ViT-B-16", 6.0), _probe("EVA02-L-14", 30.0)]
    monkeypatch.setattr(packing, "run_probe", lambda spec: probes)
    spec = parse_study(_study(tmp_path, trials_per_gpu="auto"))
    packed = pack_trials(spec)
    # the larger peak decides: floor(0.9 * 140 / (30 * 1.25 + 0.75)) = floor(126 / 38.25) = 3
    assert choose(probes)["trials_per_gpu"] == 3
    assert packed.spec.resources.gpu == 0.3333 and packed.spec.resources.trials_per_gpu is None
    assert packed.spec.resources.cpu == spec.resources.cpu and spec.resources.trials_per_gpu == "auto"
    record = packed.metadata["packing"]
    assert record["trials_per_gpu"] == 3 and record["source"] == "probe" and record["probes"] == probes
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and line.startswith("trials per GPU: 3 (probe: EVA02-L-14 peak 30.0 GiB")
    # the cluster then fits 3 trials per GPU (CPUs permitting)
    monkeypatch.setattr("ray.nodes", lambda: [{"Alive": True, "Resources": {"CPU": 16.0, "GPU": 2.0}}])
    assert cluster_concurrency(packed.spec) == 6


def test_pack_trials_without_auto_needs_no_probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_probe(spec: Any) -> Any:
        raise AssertionError("probed")

    monkeypatch.setattr(packing, "run_probe", no_probe)
    counted = pack_trials(parse_study(_study(tmp_path, trials_per_gpu=4)))
    assert counted.spec.resources.gpu == 0.25 and counted.metadata["packing"]["source"] == "study"
    plain = parse_study(_study(tmp_path, gpu=0.5))
    assert pack_trials(plain).spec is plain and pack_trials(plain).metadata == {}


def test_auto_on_a_trainer_without_a_model_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ray.nodes", lambda: [{"Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0}}])
    with pytest.raises(RunError, match="trainer 'synthetic' has no model; give a number of trials"):
        pack_trials(parse_study(_study(tmp_path, trials_per_gpu="auto")))


# --- the runner ---------------------------------------------------------------------------------------------


def test_the_runner_refuses_auto_on_a_cpu_only_cluster(short_tmp: Path) -> None:
    spec = parse_study(_study(short_tmp, trials_per_gpu="auto"))
    with pytest.raises(RunError) as caught:
        run_study(spec)
    message = str(caught.value)
    assert "trials_per_gpu is auto, but no Ray node has a GPU to probe" in message and "\n" not in message
    assert not (short_tmp / "results").exists()  # nothing written: no study folder, no Ray session folder


@pytest.mark.parametrize(
    ("packed", "expected"),
    [
        (4, "2.2 GPU-hours (0.25 GPU per trial)"),
        (3, "3.0 GPU-hours (0.3333 GPU per trial)"),  # the share the runner reserves (gpu_share), not 1/3
        ("auto", "GPU-hours depend on the trials per GPU the probe picks"),
    ],
)
def test_validate_prices_packed_trials_by_their_gpu_share(tmp_path: Path, packed: Any, expected: str) -> None:
    from typer.testing import CliRunner

    from hpo.cli import app

    study = tmp_path / "packed.yaml"
    study.write_text(
        "name: packed\nspace: {x: {uniform: [0, 1]}}\nfidelity: {min: 1, max: 3, eta: 3}\nscheduler: asha\n"
        f"budget: {{max_trials: 3}}\nresources: {{trials_per_gpu: {packed}}}\ntrainer: {{name: synthetic}}\n"
    )
    shown = CliRunner().invoke(app, ["validate", str(study), "--epoch-time", "1h"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert expected in " ".join(shown.output.split())
