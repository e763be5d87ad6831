"""A memory probe: one trainer configuration's training steps on synthetic clips, measured.

:func:`probe_memory` builds the model, its loss and optimiser exactly as :func:`trainers.engine.fit` does
(random initialisation: the weights do not change the memory), runs ``steps`` training steps at the configured
batch (``data.batch.p x k`` clips), clip length, image size and precision on random pixels, then one
evaluation batch (``runtime.eval_batch_size`` clips), and reports the peak memory they needed
(``torch.cuda.max_memory_allocated``) beside the device's total. A study uses it to pick how many trials share
one GPU (:mod:`hpo.ray_backend.packing`). On a CPU the step still runs (tests) and the result says that no GPU
was probed.

Nothing here imports Ray or hpo.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

from trainers.tfclip.config import TrainerConfig
from trainers.tfclip.losses import ReIDTask
from trainers.tfclip.model import NUM_CAMERAS, TFCLIP

#: Identities of the probe's classifier: about the training identities of AG-VPReID (the classifier is a
#: small share of the memory; a larger dataset changes the figure by megabytes).
PROBE_CLASSES = 1024


@dataclass(frozen=True)
class ProbeResult:
    """What one probe measured; ``gpu`` is False when the step ran on a CPU (then the byte counts are
    None)."""

    gpu: bool
    device: str
    device_name: str
    peak_bytes: int | None
    total_bytes: int | None
    step_seconds: float
    clips: int
    seq_len: int
    image_size: tuple[int, int]
    precision: str
    backbone: str

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["image_size"] = list(self.image_size)
        return data


def build_training(
    config: TrainerConfig, device: torch.device, *, num_classes: int = PROBE_CLASSES
) -> tuple[TFCLIP, ReIDTask, torch.optim.Optimizer]:
    """Model, task and optimiser of ``config`` on ``device``, randomly initialised (an identity memory of
    random rows when the V2M loss is on), as :func:`trainers.engine.fit` builds them."""
    from trainers.engine import build_model, build_task
    from trainers.tfclip.optim import build_optimizer

    config = config.model_copy(update={"model": config.model.model_copy(update={"weights": None})})
    memory = None
    if config.uses_memory:
        embed = build_model(config, num_classes, None).encoder.embed_dim
        memory = torch.nn.functional.normalize(torch.randn(num_classes, embed), dim=1)
    model = build_model(config, num_classes, memory).to(device)
    task = build_task(config, model, num_classes).to(device)
    return model, task, build_optimizer(model, config.optim, task=task)


def synthetic_batch(
    config: TrainerConfig, device: torch.device, *, num_classes: int = PROBE_CLASSES, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One PK batch: random clips ``(p*k, T, 3, H, W)``, camera ids, labels (``p`` identities x ``k``)."""
    batch, transform = config.data.batch, config.data.transform
    generator = torch.Generator().manual_seed(seed)
    shape = (batch.batch_size, config.data.sampling.seq_len, 3, transform.height, transform.width)
    clips = torch.randn(shape, generator=generator)
    cameras = torch.randint(0, NUM_CAMERAS, (batch.batch_size,), generator=generator)
    identities = torch.randperm(num_classes, generator=generator)[: batch.p]
    labels = identities.repeat_interleave(batch.k)
    return clips.to(device), cameras.to(device), labels.to(device)


def uses_bf16(config: TrainerConfig, device: torch.device) -> bool:
    """The engine's rule: ``optim.precision`` bf16, or auto on CUDA."""
    precision = config.optim.precision
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def training_step(
    model: TFCLIP,
    task: ReIDTask,
    optimizer: torch.optim.Optimizer,
    batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    *,
    bf16: bool,
    config: TrainerConfig,
) -> torch.Tensor:
    """One step as :func:`trainers.engine.fit` takes it (autocast forward, loss, backward, gradient
    centralisation and clipping, optimiser step); returns the loss, detached."""
    from trainers.engine import optimizer_step

    clips, cameras, labels = batch
    autocast = torch.autocast(clips.device.type, dtype=torch.bfloat16, enabled=bf16)
    with autocast:
        outputs = model(clips, cameras)
    loss = task(outputs, labels)["loss"]
    optimizer_step(model, optimizer, loss, config)
    return loss.detach()


def evaluation_batch(
    model: TFCLIP,
    config: TrainerConfig,
    batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    *,
    bf16: bool,
) -> torch.Tensor:
    """The retrieval features of one ``runtime.eval_batch_size`` batch of clips like ``batch``'s first."""
    clips, cameras, _ = batch
    size = config.runtime.eval_batch_size
    model.eval()
    autocast = torch.autocast(clips.device.type, dtype=torch.bfloat16, enabled=bf16)
    with torch.inference_mode(), autocast:
        features = model.test_features(clips[:1].expand(size, *clips.shape[1:]), cameras[:1].expand(size))
    model.train()
    return features


def probe_memory(
    config: TrainerConfig,
    *,
    device: torch.device | str | None = None,
    steps: int = 2,
    num_classes: int = PROBE_CLASSES,
) -> ProbeResult:
    """Run ``steps`` training steps of ``config`` on ``device`` (default: CUDA when there is one, else the
    CPU), then one evaluation batch, and measure them; the second step holds the optimiser's state, so two
    steps see the full peak."""
    if steps < 1:
        raise ValueError(f"steps is {steps}, but must be >= 1")
    device = torch.device(device) if device is not None else None
    if device is None:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    on_gpu = device.type == "cuda"
    if on_gpu:
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(config.runtime.seed)
    model, task, optimizer = build_training(config, device, num_classes=num_classes)
    model.train()
    task.train()
    batch = synthetic_batch(config, device, num_classes=num_classes)
    bf16 = uses_bf16(config, device)
    seconds = 0.0
    for _ in range(steps):
        started = time.perf_counter()
        loss = training_step(model, task, optimizer, batch, bf16=bf16, config=config)
        if on_gpu:
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - started
        if not torch.isfinite(loss):
            raise ValueError(f"the probe step's loss is {float(loss)} (a broken configuration?)")
    evaluation_batch(model, config, batch, bf16=bf16)  # fit validates with the optimiser's state alive
    peak = total = None
    name = "cpu"
    if on_gpu:
        peak = int(torch.cuda.max_memory_allocated(device))
        properties = torch.cuda.get_device_properties(device)
        total, name = int(properties.total_memory), str(properties.name)
    del model, task, optimizer, batch
    if on_gpu:
        torch.cuda.empty_cache()
    transform = config.data.transform
    return ProbeResult(
        gpu=on_gpu,
        device=str(device),
        device_name=name,
        peak_bytes=peak,
        total_bytes=total,
        step_seconds=round(seconds, 4),
        clips=config.data.batch.batch_size,
        seq_len=config.data.sampling.seq_len,
        image_size=(transform.height, transform.width),
        precision="bf16" if bf16 else "fp32",
        backbone=config.model.backbone,
    )
