"""The CLIP identity memory: per-identity mean of the frozen pre-trained encoder's projected features.

Computed once before training, as TF-CLIP's stage-2 processor does with its ``train_loader_stage1`` (dense
sampling, one tracklet per batch): every dense clip of a training tracklet is encoded (projected CLS
features averaged over its T frames, no camera embedding), the clips are averaged per tracklet, then the
tracklets per identity; never refreshed. It is cached on disk under a key hashing everything it depends on
- the weights (file content, or the random-init seed and backbone), the activation, the dataset index and
training identities, input size, normalisation and T - so concurrent trials share it safely and a change to
any input gives a new entry (the reference code keyed caches by batch index; we do not).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from trainers.atomic import atomic_write
from trainers.data.index import DatasetIndex
from trainers.data.pipeline import eval_dataset
from trainers.data.sampling import SamplingMode
from trainers.data.split import ValidationSplit, training_tracklets
from trainers.evaluation.extract import extract_features
from trainers.tfclip.backbone import TokenEncoder, file_digest
from trainers.tfclip.config import TrainerConfig

#: Part of every cache key: bump it when the code computing the memory changes, so old entries are not reused.
MEMORY_CODE_VERSION = 2
_digest_cache: dict[tuple[str, int, float], str] = {}


def default_cache_dir(config: TrainerConfig) -> Path:
    if config.runtime.cache_dir is not None:
        return config.runtime.cache_dir
    return Path(os.environ.get("AGVP_CACHE", Path.home() / ".cache" / "agvp-hpo"))


def _weights_identity(config: TrainerConfig) -> str:
    weights = config.model.weights
    if weights is None:
        return f"random-init:{config.model.backbone}:seed={config.runtime.seed}"
    stat = weights.stat()
    key = (str(weights.resolve()), stat.st_size, stat.st_mtime)
    if key not in _digest_cache:  # hashing a 600 MB file once per process is enough
        _digest_cache[key] = file_digest(weights)
    return f"file:{_digest_cache[key]}"


def memory_key(config: TrainerConfig, index: DatasetIndex, split: ValidationSplit) -> str:
    """Content key of the memory for this configuration, dataset and split."""
    transform = config.data.transform
    parts = {
        "code": MEMORY_CODE_VERSION,
        "weights": _weights_identity(config),
        "backbone": config.model.backbone,
        "stride": config.model.stride,
        "pos_interpolation": config.model.pos_interpolation,
        "quick_gelu": config.model.quick_gelu,
        "index": index.fingerprint(),
        "train_pids": hashlib.sha256(json.dumps(split.train_pids).encode()).hexdigest()[:16],
        "size": [transform.height, transform.width],
        "interpolation": transform.interpolation,
        "mean": list(transform.mean),
        "std": list(transform.std),
        "seq_len": config.data.sampling.seq_len,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


@torch.no_grad()
def identity_memory(
    config: TrainerConfig,
    index: DatasetIndex,
    split: ValidationSplit,
    labels: dict[int, int],
    *,
    device: torch.device,
) -> tuple[torch.Tensor, str]:
    """(num_classes x embed_dim) memory, rows in label order, and its cache key."""
    key = memory_key(config, index, split)
    path = default_cache_dir(config) / "clip_memory" / f"{key}.pt"
    if path.is_file():
        cached = torch.load(path, map_location="cpu", weights_only=True)
        if cached.get("key") == key and cached["memory"].shape[0] == len(labels):
            return cached["memory"], key
    transform = config.data.transform
    encoder = TokenEncoder(
        config.model.backbone,
        image_size=(transform.height, transform.width),
        stride=config.model.stride,
        pos_interpolation=config.model.pos_interpolation,
        quick_gelu=config.model.quick_gelu,
        weights=config.model.weights,
        seed=config.runtime.seed,
    ).to(device)
    encoder.eval()
    tracklets = training_tracklets(index, split)
    dataset = eval_dataset(
        index, tracklets, config.data, mode=SamplingMode.DENSE, cache_dir=config.runtime.cache_dir
    )

    def encode(clips: torch.Tensor, cameras: torch.Tensor) -> torch.Tensor:
        batch, frames = clips.shape[:2]
        cls = encoder(clips.flatten(0, 1))[:, 0]
        return encoder.project(cls).view(batch, frames, -1).mean(dim=1)

    features = extract_features(encode, dataset, batch_size=config.runtime.eval_batch_size, device=device)
    memory = torch.zeros(len(labels), encoder.embed_dim)
    counts = torch.zeros(len(labels))
    for tracklet in tracklets:
        label = labels[tracklet.pid]
        memory[label] += torch.from_numpy(features[tracklet.key])
        counts[label] += 1
    memory /= counts.clamp_min(1).unsqueeze(1)
    atomic_write(path, lambda temporary: torch.save({"key": key, "memory": memory}, temporary))
    return memory, key
