"""The TF-CLIP training loop behind the trainer protocol (:mod:`trainers.protocol`):
``fit(config, *, max_epochs, checkpoint_dir, resume_from, report)``.

Nothing here imports Ray. Per epoch: train on PK batches, evaluate on the identity-disjoint validation split
(A2G and G2A mAP/R1; objective ``val_map`` = mean mAP of the two), write a checkpoint (model, losses' state,
optimiser, epoch, RNG state, memory key; atomically, in a background thread while validation runs:
:mod:`trainers.checkpoint_writer`), then call ``report(result)`` once it is on disk - the result names the
checkpoint it belongs to, so a scheduler can resume exactly that state.

Resume is exact: the schedule is a function of the epoch, sampling and augmentation are functions of
(seed, epoch, index), and the torch RNG state is restored, so training to m epochs equals training to k,
stopping, and resuming to m (tested on CPU).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainers.checkpoint_writer import CheckpointWriter
from trainers.data.pipeline import eval_dataset, read_training_index, train_loader, validation_split
from trainers.data.sources import save_sources
from trainers.data.split import ValidationSplit, validation_views
from trainers.data.transforms import to_model_input
from trainers.errors import AgvpError
from trainers.evaluation.extract import extract_features
from trainers.evaluation.protocol import ProtocolOptions, evaluate_views
from trainers.protocol import CHECKPOINT_FILE, CheckpointError, NonFiniteLossError, Report
from trainers.tfclip.config import TrainerConfig, config_to_yaml
from trainers.tfclip.losses import ReIDTask
from trainers.tfclip.memory import identity_memory
from trainers.tfclip.model import TFCLIP
from trainers.tfclip.optim import build_optimizer, centralize_gradients, set_epoch_lr

SPLIT_FILE = "split.json"
#: Written next to a run trained with extra sources: how their identities were renumbered.
SOURCES_FILE = "sources.json"
CONFIG_FILE = "config.yaml"
CHECKPOINT_FORMAT = "agvp-tfclip-1"

Progress = Callable[[str, int, int, float], None]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _autocast(config: TrainerConfig, device: torch.device) -> Any:
    precision = config.optim.precision
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16) if use_bf16 else nullcontext()


def _save(payload: dict[str, Any], path: Path) -> None:
    torch.save(payload, path)


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    """Read a checkpoint file (or the checkpoint inside a run folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # an unreadable file, whatever the unpickler raised
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(error).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not an agvp-hpo checkpoint")
    return payload


def optimizer_step(
    model: TFCLIP, optimizer: torch.optim.Optimizer, loss: torch.Tensor, config: TrainerConfig
) -> None:
    """Backward, gradient centralisation and clipping as configured, then the optimiser's step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.optim.grad_centralization:
        centralize_gradients(model)
    if config.optim.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
    optimizer.step()


def build_model(config: TrainerConfig, num_classes: int, memory: torch.Tensor | None) -> TFCLIP:
    transform = config.data.transform
    return TFCLIP(
        config.model,
        num_classes=num_classes,
        image_size=(transform.height, transform.width),
        seq_len=config.data.sampling.seq_len,
        seed=config.runtime.seed,
        memory=memory,
    )


def build_task(config: TrainerConfig, model: TFCLIP, num_classes: int) -> ReIDTask:
    """The loss of ``model``: its parts and their widths (center loss), the clip length (frame loss)."""
    return ReIDTask(
        config.loss,
        num_classes=num_classes,
        parts=model.parts,
        seq_len=config.data.sampling.seq_len,
        dims=model.dims,
    )


def model_from_checkpoint(payload: dict[str, Any]) -> tuple[TFCLIP, TrainerConfig]:
    """Rebuild the trained model of a checkpoint (for evaluation)."""
    config = TrainerConfig.model_validate(payload["config"])
    num_classes = int(payload["num_classes"])
    memory = payload["model"].get("memory")
    model = build_model(
        config.model_copy(update={"model": config.model.model_copy(update={"weights": None})}),
        num_classes,
        memory,
    )
    model.load_state_dict(payload["model"])
    return model, config


@torch.no_grad()
def evaluate_model(
    model: TFCLIP, config: TrainerConfig, index: Any, views: dict[str, Any], device: torch.device
) -> dict[str, float]:
    """Validation metrics: per-view mAP/R1 and the objective (mean mAP over views), with the config's flip
    TTA and soft-biometric masking (``runtime.eval_flip`` / ``runtime.eval_mask``)."""
    model.eval()
    tracklets = {t.key: t for view in views.values() for t in (*view.query, *view.gallery)}
    dataset = eval_dataset(index, list(tracklets.values()), config.data, cache_dir=config.runtime.cache_dir)
    features = extract_features(
        model.test_features,
        dataset,
        batch_size=config.runtime.eval_batch_size,
        flip=config.runtime.eval_flip,
        device=device,
    )
    options = ProtocolOptions(mask_penalties=config.runtime.eval_mask)
    report, _ = evaluate_views(index, views, features, options)
    metrics: dict[str, float] = {}
    for name, case in report.cases.items():
        if case.metrics is None:
            raise AgvpError(f"validation view {name} has no scorable query")
        metrics[f"val_{name}_map"] = case.metrics.mAP
        metrics[f"val_{name}_r1"] = case.metrics.r1
    overall = report.overall or {}
    metrics["val_map"] = overall.get("mAP", float("nan"))
    metrics["val_r1"] = overall.get("r1", float("nan"))
    return metrics


def fit(
    config: TrainerConfig,
    *,
    max_epochs: int,
    data_fraction: float = 1.0,
    checkpoint_dir: Path | str | None = None,
    resume_from: Path | str | None = None,
    report: Report | None = None,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Train up to ``max_epochs`` (total, counting resumed epochs) on ``data_fraction`` of the training
    identities (the epochs trained now: a checkpoint from a smaller fraction continues on a larger one, the
    classifier covers every identity); returns the per-epoch results.

    ``progress(phase, done, total, loss)`` is called after each training step (phase "train") for displays.
    """
    if max_epochs < 1:
        raise ValueError(f"max_epochs is {max_epochs}, but must be >= 1")
    if not 0.0 < data_fraction <= 1.0:
        raise ValueError(f"data_fraction is {data_fraction}, but must be in (0, 1]")
    runtime = config.runtime
    if runtime.threads is not None:
        torch.set_num_threads(runtime.threads)
    device = resolve_device(runtime.device)
    seed_everything(runtime.seed)

    index = read_training_index(config.data.root, config.data)
    split = validation_split(index, config.data)
    loader, dataset, sampler = train_loader(
        index,
        split,
        config.data,
        seed=runtime.seed,
        data_fraction=data_fraction,
        cache_dir=runtime.cache_dir,
        pin_memory=device.type == "cuda",  # page-locked batches: to_model_input's copy is asynchronous
    )
    labels = dict(dataset.labels or {})
    memory, memory_key = (None, None)
    if config.uses_memory:
        memory, memory_key = identity_memory(config, index, split, labels, device=device)
    model = build_model(config, len(labels), memory).to(device)
    task = build_task(config, model, len(labels)).to(device)
    optimizer = build_optimizer(model, config.optim, task=task)  # the task's center-loss centers too

    start_epoch = 0
    if resume_from is not None:
        payload = load_checkpoint(resume_from)
        if payload["memory_key"] != memory_key or payload["split"] != _split_dict(split):
            raise CheckpointError(f"{resume_from}: checkpoint was made for different data or memory")
        if _trained_alike(TrainerConfig.model_validate(payload["config"])) != _trained_alike(config):
            raise CheckpointError(f"{resume_from}: checkpoint was made with a different configuration")
        model.load_state_dict(payload["model"])
        task.load_state_dict(payload["task"])
        optimizer.load_state_dict(payload["optimizer"])
        torch.set_rng_state(payload["rng"]["torch"])
        start_epoch = int(payload["epoch"])

    if checkpoint_dir is not None:
        checkpoint_dir = Path(checkpoint_dir)
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        split.save(checkpoint_dir / SPLIT_FILE)
        if index.sources:
            save_sources(index, checkpoint_dir / SOURCES_FILE)
        (checkpoint_dir / CONFIG_FILE).write_text(config_to_yaml(config), encoding="utf-8")

    views = validation_views(index, split)
    results: list[dict[str, Any]] = []
    writer = CheckpointWriter(_save) if checkpoint_dir is not None else None
    static = {
        "format": CHECKPOINT_FORMAT,
        "config": config.model_dump(mode="json"),
        "num_classes": len(labels),
        "labels": labels,
        "split": _split_dict(split),
        "memory_key": memory_key,
    }

    def checkpoint(epoch: int, rng: torch.Tensor) -> dict[str, Any]:
        """What resume needs after ``epoch``. The live tensors, not copies: the write overlaps only the
        validation pass, which changes no state (tested), and the next epoch starts after ``wait``."""
        state = {"model": model.state_dict(), "task": task.state_dict(), "optimizer": optimizer.state_dict()}
        return {**static, "epoch": epoch + 1, **state, "rng": {"torch": rng}}

    for epoch in range(start_epoch, max_epochs):
        started = time.perf_counter()
        model.train()
        task.train()
        lr_factor = set_epoch_lr(optimizer, epoch, config.optim)
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        totals: dict[str, float] = {}
        steps = len(sampler)
        for step, batch in enumerate(loader):
            clips = to_model_input(batch, config.data.transform, device)  # uint8 -> normalised float
            cameras = batch["camera"].to(device)
            targets = batch["label"].to(device)
            with _autocast(config, device):
                outputs = model(clips, cameras)
            terms = task(outputs, targets)
            loss = terms["loss"]
            if not torch.isfinite(loss):
                raise NonFiniteLossError(epoch + 1, step, {k: float(v.detach()) for k, v in terms.items()})
            optimizer_step(model, optimizer, loss, config)
            for name, value in terms.items():
                totals[name] = totals.get(name, 0.0) + float(value.detach())
            if progress is not None:
                progress("train", step + 1, steps, float(loss.detach()))
        task.next_epoch()
        train_seconds = time.perf_counter() - started
        # The checkpoint is the state after training, written while validation runs; validation draws from
        # its own copy of the RNG, so a resume continues exactly where this run does.
        rng = torch.get_rng_state()
        if writer is not None:
            writer.submit(checkpoint_dir / CHECKPOINT_FILE, checkpoint(epoch, rng))
        try:
            metrics = evaluate_model(model, config, index, views, device)
        except BaseException:
            if writer is not None:
                writer.close(failing=True)  # no thread outlives fit; the validation error wins
            raise
        torch.set_rng_state(rng)
        result: dict[str, Any] = {
            "epoch": epoch + 1,
            **{f"train_{name}": total / max(1, steps) for name, total in totals.items()},
            "lr": config.optim.lr * lr_factor,
            "train_ids": sampler.num_identities,
            **metrics,
            "train_seconds": round(train_seconds, 3),
            "eval_seconds": round(time.perf_counter() - started - train_seconds, 3),
        }
        if writer is not None:
            writer.wait()  # the report names only a checkpoint complete on disk
            result["checkpoint"] = str(checkpoint_dir / CHECKPOINT_FILE)
        results.append(result)
        if report is not None:
            report(result)
    return results


def _trained_alike(config: TrainerConfig) -> TrainerConfig:
    """``config`` without the settings that change how frames are read, never what is trained on:
    ``data.frame_cache`` and ``data.workers`` give the same batches, random stream and results
    (``tests/test_tfclip_engine.py``), so a checkpoint resumes across them (e.g. one written before the
    frame cache defaulted to ``auto``)."""
    return config.model_copy(
        update={"data": config.data.model_copy(update={"frame_cache": False, "workers": 0})}
    )


def _split_dict(split: ValidationSplit) -> dict[str, Any]:
    data = asdict(split)
    data["train_pids"] = list(data["train_pids"])
    data["val_pids"] = list(data["val_pids"])
    return data
