"""Fractional-GPU packing: how many trials share one GPU (``resources.trials_per_gpu``).

``trials_per_gpu: N`` reserves ``1/N`` GPU per trial. ``auto`` measures first: the study's largest-memory
candidate (:func:`heaviest_params`) takes two training steps and one evaluation batch on a GPU of the cluster
(:func:`trainers.probe.probe_memory` in a Ray task with ``num_gpus=1``: the driver may have no GPU), and

    N = floor(USABLE_FRACTION x total / (peak x SAFETY + CONTEXT_BYTES)), clamped to [1, MAX_TRIALS_PER_GPU]

where ``peak`` is their ``torch.cuda.max_memory_allocated``, ``SAFETY`` covers the caching allocator's
fragmentation and batches longer than the probe's, and ``CONTEXT_BYTES`` is each process's CUDA context and
library workspaces, which the allocator does not count. :func:`pack_trials` returns the spec the Tuner runs
with (``resources.gpu = 1/N``) and what goes into the study's metadata (``packing``); the study file keeps
``auto``, so a resumed study measures again on whatever GPUs it then has.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any

from hpo.session.lifecycle import RunError
from hpo.space import CategoricalParam, FixedParam, FloatParam, IntParam, SearchSpace
from hpo.study.build import trainer_settings
from hpo.study.spec import MAX_TRIALS_PER_GPU, StudySpec

#: Share of the device's memory the trials may fill together (the rest: the driver's and Ray's margins).
USABLE_FRACTION = 0.9
#: Measured peak x this = one trial's planned memory (allocator fragmentation, batches unlike the probe's).
SAFETY = 1.25
#: Per process, outside ``max_memory_allocated``: CUDA context, cuBLAS/cuDNN workspaces (~0.5 GiB on Hopper).
CONTEXT_BYTES = 768 * 2**20
#: Seconds the probe task may take, its wait for a free GPU included.
PROBE_TIMEOUT_S = 900.0
#: Searched keys whose larger values need more memory per step (the probe takes each at its largest).
GROWING_KEYS = frozenset(
    {
        "data.batch.p",
        "data.batch.k",
        "data.sampling.seq_len",
        "data.transform.height",
        "data.transform.width",
        "model.ssp_layers",
        "model.acp.memory_slots",
        "model.acp.cross_view_layers",
    }
)


def trials_per_gpu(
    peak_bytes: int,
    total_bytes: int,
    *,
    usable: float = USABLE_FRACTION,
    safety: float = SAFETY,
    reserve: int = CONTEXT_BYTES,
    most: int = MAX_TRIALS_PER_GPU,
) -> int:
    """How many trials of ``peak_bytes`` each fit on a device of ``total_bytes`` (at least 1: a single
    trial runs even when the plan says it does not fit, as with ``gpu: 1``)."""
    if peak_bytes < 0 or total_bytes <= 0:
        raise ValueError(f"peak {peak_bytes} and total {total_bytes} bytes must be >= 0 and > 0")
    fits = math.floor(usable * total_bytes / (peak_bytes * safety + reserve))
    return max(1, min(most, fits))


def gpu_share(trials: int) -> float:
    """``1/trials`` rounded down to Ray's resource precision (1e-4), so ``trials`` shares fit in one GPU."""
    return math.floor(10_000 / trials) / 10_000


def heaviest_params(space: SearchSpace) -> list[dict[str, Any]]:
    """Searched values of the study's largest-memory candidates, one per searched backbone: every growing
    key (:data:`GROWING_KEYS`) at its largest, the largest image size, the smallest patch stride, fp32 if
    the precision is searched, and every model switch on (modules add parameters and activations). Other
    keys keep the trainer's value; a parameter whose condition does not hold is left out."""
    params: dict[str, Any] = {}
    backbones: list[Any] = []
    for name in space.names:
        param = space[name]
        value: Any = None
        if isinstance(param, FixedParam):
            value = param.value
        elif isinstance(param, IntParam | FloatParam):
            value = param.high if name in GROWING_KEYS else None
        elif isinstance(param, CategoricalParam):
            value = _heaviest_choice(name, param.choices)
            if name == "model.backbone":
                backbones = list(param.choices)
        if value is not None:
            params[name] = value
    candidates = [{**params, "model.backbone": b} for b in backbones] if backbones else [params]
    return [{k: v for k, v in c.items() if space.is_active(k, c)} for c in candidates]


def _heaviest_choice(name: str, choices: list[Any]) -> Any:
    from trainers.data.config import TransformConfig

    if name == "data.transform.size":
        return max(choices, key=lambda size: math.prod(TransformConfig.parse_size(size)))
    if name == "model.stride":
        return min(choices)
    if name == "optim.precision":
        return "fp32" if "fp32" in choices else None
    if name in GROWING_KEYS:
        return max(choices)
    if name.startswith("model.") and True in choices and all(isinstance(c, bool) for c in choices):
        return True
    return None


def probe_configs(spec: StudySpec) -> list[dict[str, Any]]:
    """The resolved trainer configs (JSON) the probe measures; a candidate the trainer rejects (a
    combination no trial can draw) falls back to the trainer's own values with that backbone."""
    from trainers.tfclip.config import ConfigError, trial_config

    settings = trainer_settings(spec)
    configs = []
    for params in heaviest_params(spec.space):
        try:
            config = trial_config(settings, params)
        except ConfigError:
            backbone = {k: v for k, v in params.items() if k == "model.backbone"}
            config = trial_config(settings, backbone)
        configs.append(config.model_dump(mode="json"))
    return configs


def _probe_task(configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs on a GPU worker: each config's probe (trainers only; Ray gave this task one GPU)."""
    from trainers.probe import probe_memory
    from trainers.tfclip.config import TrainerConfig

    return [probe_memory(TrainerConfig.model_validate(c), device="cuda").to_dict() for c in configs]


def cluster_gpus() -> float:
    """GPUs of the cluster's alive nodes (the largest node's count: one probe needs one device)."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return max((float(n.get("Resources", {}).get("GPU", 0)) for n in nodes), default=0.0)


def run_probe(spec: StudySpec) -> list[dict[str, Any]]:
    """The probe's results, from a Ray task with one GPU; a :class:`RunError` when it cannot run."""
    import ray

    if cluster_gpus() < 1:
        raise RunError(
            "resources.trials_per_gpu is auto, but no Ray node has a GPU to probe; trials would wait "
            "forever. Use gpu: 0 (and no trials_per_gpu) on CPU-only machines"
        )
    if spec.trainer.name != "tfclip":
        raise RunError(
            f"resources.trials_per_gpu: auto probes the model's memory, but trainer "
            f"{spec.trainer.name!r} has no model; give a number of trials instead"
        )
    # max_calls=1: the worker process exits after the probe, so its CUDA context does not hold the GPU
    task = ray.remote(num_gpus=1, num_cpus=1, max_retries=0, max_calls=1)(_probe_task)
    ref = task.remote(probe_configs(spec))
    try:
        return list(ray.get(ref, timeout=PROBE_TIMEOUT_S))
    except ray.exceptions.GetTimeoutError:
        ray.cancel(ref, force=True)
        raise RunError(
            f"resources.trials_per_gpu: auto: the memory probe did not end within {PROBE_TIMEOUT_S:g} s "
            "(every GPU busy?); give a number of trials instead"
        ) from None
    except ray.exceptions.RayTaskError as error:
        cause = str(error.cause if getattr(error, "cause", None) else error).strip().splitlines()
        raise RunError(
            f"resources.trials_per_gpu: auto: the memory probe failed on the cluster "
            f"({cause[-1] if cause else type(error).__name__}); one trial may not fit on one GPU"
        ) from None


@dataclass(frozen=True)
class Packing:
    """The spec the Tuner runs with and the ``packing`` record of the study's metadata (empty without
    ``trials_per_gpu``)."""

    spec: StudySpec
    metadata: dict[str, Any] = field(default_factory=dict)


def choose(probes: list[dict[str, Any]]) -> dict[str, Any]:
    """The packing of measured ``probes`` (the largest peak counts): trials per GPU, the GPU share."""
    heaviest = max(probes, key=lambda p: p["peak_bytes"])
    n = trials_per_gpu(int(heaviest["peak_bytes"]), int(heaviest["total_bytes"]))
    return {"trials_per_gpu": n, "gpu": gpu_share(n), "source": "probe", "probes": probes}


def pack_trials(spec: StudySpec) -> Packing:
    """Resolve ``resources.trials_per_gpu`` (an ``auto`` probes the cluster, which must be connected) into
    ``resources.gpu``; a study without it is returned as it is."""
    wanted = spec.resources.trials_per_gpu
    if wanted is None:
        return Packing(spec)
    if wanted == "auto":
        record = choose(run_probe(spec))
        heaviest = max(record["probes"], key=lambda p: p["peak_bytes"])
        print(
            f"trials per GPU: {record['trials_per_gpu']} (probe: {heaviest['backbone']} peak "
            f"{heaviest['peak_bytes'] / 2**30:.1f} GiB of {heaviest['total_bytes'] / 2**30:.0f} GiB on "
            f"{heaviest['device_name']}; {record['gpu']:g} GPU per trial)",
            file=sys.stderr,
        )
    else:
        record = {"trials_per_gpu": int(wanted), "gpu": gpu_share(int(wanted)), "source": "study"}
    resources = spec.resources.model_copy(update={"gpu": record["gpu"], "trials_per_gpu": None})
    return Packing(spec.model_copy(update={"resources": resources}), {"packing": record})
