"""Video features for every tracklet of a dataset, with an optional flip test-time augmentation."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

from trainers.data.sampling import SamplingMode
from trainers.data.transforms import collate_clips, to_model_input
from trainers.data.video_dataset import TrackletDataset
from trainers.evaluation.tta import extract_with_flip

#: (clips (B, T, 3, H, W), camera ids (B,)) -> features (B, D)
Encoder = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@torch.inference_mode()
def extract_features(
    encode: Encoder,
    dataset: TrackletDataset,
    *,
    batch_size: int = 8,
    flip: bool = False,
    num_workers: int = 0,
    device: torch.device | str = "cpu",
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, np.ndarray]:
    """``Tracklet.key`` -> float32 feature. ``encode`` maps clips (normalised float on ``device``, made by
    :func:`trainers.data.transforms.to_model_input` from the dataset's uint8 clips) and camera ids to
    features (B, D).

    In dense sampling mode a tracklet has several clips; its feature is the mean over its clips.
    ``on_progress`` receives the number of tracklets finished since the last call.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size is {batch_size}, but must be >= 1")

    def run(clips: torch.Tensor, cameras: torch.Tensor) -> torch.Tensor:
        cameras = cameras.to(device)
        if flip:
            return extract_with_flip(lambda x: encode(x, cameras), clips).float().cpu()
        return encode(clips, cameras).float().cpu()

    dense = dataset.mode is SamplingMode.DENSE
    loader = DataLoader(
        dataset,
        batch_size=1 if dense else batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_clips,
    )
    features: dict[str, np.ndarray] = {}
    for batch in loader:
        clips = to_model_input(batch, dataset.transform.config, device)  # uint8 -> normalised, on device
        clips = clips[0] if dense else clips
        cameras = batch["camera"].expand(len(clips)) if dense else batch["camera"]
        output = run(clips, cameras)
        if dense:
            output = output.mean(dim=0, keepdim=True)
        for position, feature in zip(batch["index"].tolist(), output.numpy(), strict=True):
            features[dataset.tracklets[position].key] = feature
        if on_progress is not None:
            on_progress(len(output))
    return features
