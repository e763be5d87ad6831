"""Typed settings of the data pipeline. Every field is read by the code it configures (tests check that
changing each one changes the output); unknown keys are rejected."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from trainers.data.layout import G2A_SPLITS
from trainers.data.sampling import SamplingMode

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class StrictModel(BaseModel):
    """Frozen settings that reject unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TransformConfig(StrictModel):
    """Per-clip image pipeline: resize, sequence-level flip, random erasing, normalisation."""

    height: int = Field(256, ge=16)
    width: int = Field(128, ge=16)
    interpolation: Literal["bilinear", "bicubic", "nearest"] = "bilinear"
    #: Probability of flipping a whole clip horizontally (training only).
    flip_p: float = Field(0.5, ge=0.0, le=1.0)
    #: Probability of erasing a rectangle in each frame (training only).
    erase_p: float = Field(0.5, ge=0.0, le=1.0)
    #: Erased area as a fraction of the frame, (min, max).
    erase_area: tuple[float, float] = (0.02, 0.2)
    #: Aspect ratio (height / width) of the erased rectangle, (min, max), sampled log-uniformly.
    erase_aspect: tuple[float, float] = (0.3, 3.3)
    #: Fill of the erased rectangle: "mean" = the normalisation mean (0 after normalising), "random" = noise.
    erase_fill: Literal["mean", "random"] = "mean"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @staticmethod
    def parse_size(size: Any) -> tuple[int, int]:
        """``"256x128"`` -> (256, 128)."""
        try:
            height, width = (int(v) for v in str(size).lower().split("x"))
        except ValueError:
            raise ValueError(f"size is {size!r}, but must look like 256x128 (height x width)") from None
        return height, width

    @model_validator(mode="before")
    @classmethod
    def _size_shorthand(cls, data: Any) -> Any:
        """Accept ``size: "256x128"`` for height and width (the trainer config expands it in the layer that
        sets it, see :func:`trainers.tfclip.config.resolve_config`, so it overrides a preset's size)."""
        if isinstance(data, dict) and "size" in data:
            data = dict(data)
            height, width = cls.parse_size(data.pop("size"))
            data.setdefault("height", height)
            data.setdefault("width", width)
        return data

    @model_validator(mode="after")
    def _ranges(self) -> TransformConfig:
        low, high = self.erase_area
        if not 0.0 < low <= high < 1.0:
            raise ValueError(f"erase_area is {self.erase_area}, but must satisfy 0 < min <= max < 1")
        low, high = self.erase_aspect
        if not 0.0 < low <= high:
            raise ValueError(f"erase_aspect is {self.erase_aspect}, but must satisfy 0 < min <= max")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std is {self.std}, but every value must be > 0")
        return self


class SamplingConfig(StrictModel):
    """Temporal sampling (see :mod:`trainers.data.sampling`)."""

    seq_len: int = Field(8, ge=1)
    train_mode: SamplingMode = SamplingMode.CHUNK_RANDOM
    test_mode: SamplingMode = SamplingMode.CHUNK_FIRST


class BatchConfig(StrictModel):
    """PK sampling: ``p`` identities x ``k`` tracklets per batch."""

    p: int = Field(4, ge=2)
    k: int = Field(4, ge=1)

    @property
    def batch_size(self) -> int:
        return self.p * self.k


class SplitConfig(StrictModel):
    """The identity-disjoint validation split carved from train."""

    seed: int = 0
    fraction: float = Field(0.1, gt=0.0, lt=1.0)
    #: Seed of the nested training-identity subsets a data-fraction fidelity trains on (the same identities
    #: for every configuration of a study; a larger fraction's subset contains a smaller one's).
    subset_seed: int = 0


#: An AG-VPReID camera id: C0/C1 CCTV, C2/C3 wearable, C4/C5 UAV.
AgvpCamera = Annotated[int, Field(ge=0, le=5)]


class ExtraSourceConfig(StrictModel):
    """One more training dataset in another layout (see :mod:`trainers.data.sources`). All its tracklets
    train; its identities are renumbered after the largest AG-VPReID training id (then after the previous
    source's), and it never contributes validation identities."""

    root: Path
    layout: Literal["g2a-vreid", "generic"]
    #: The source's splits to train on; None = all (g2a-vreid: train, query, gallery; generic: every split
    #: folder).
    splits: tuple[str, ...] | None = None
    #: Source camera label -> AG-VPReID camera id 0..5, which sets the camera embedding and the platform.
    #: Cameras not listed get the layout's default (g2a-vreid: 1 -> C0 CCTV, 2 -> C4 UAV; generic: by the
    #: platform column, aerial -> C4, cctv and ground -> C0, wearable -> C2).
    cameras: dict[str, AgvpCamera] = Field(default_factory=dict)

    @field_validator("cameras", mode="before")
    @classmethod
    def _camera_labels_are_strings(cls, value: Any) -> Any:
        """YAML reads ``{1: 0}`` with integer keys; labels are compared as text."""
        if isinstance(value, dict):
            return {str(key): camera for key, camera in value.items()}
        return value

    @model_validator(mode="after")
    def _splits(self) -> ExtraSourceConfig:
        if self.splits is None:
            return self
        if not self.splits or len(set(self.splits)) != len(self.splits):
            raise ValueError(f"splits is {list(self.splits)}, but must be a non-empty list without repeats")
        if self.layout == "g2a-vreid" and not set(self.splits) <= set(G2A_SPLITS):
            unknown = sorted(set(self.splits) - set(G2A_SPLITS))
            raise ValueError(
                f"splits has {', '.join(unknown)}, but g2a-vreid splits are {', '.join(G2A_SPLITS)}"
            )
        return self


class DataConfig(StrictModel):
    """Everything about the data a trial can tune or fix."""

    transform: TransformConfig = TransformConfig()
    sampling: SamplingConfig = SamplingConfig()
    batch: BatchConfig = BatchConfig()
    split: SplitConfig = SplitConfig()
    #: Data loader worker processes decoding JPEGs (0 = in the training process). With every training frame
    #: in the frame cache the training loader gathers batches in the training process and needs none.
    workers: int = Field(0, ge=0)
    #: More training data (G2A-VReID, or any dataset in the generic layout); validation stays AG-VPReID.
    extra_sources: tuple[ExtraSourceConfig, ...] = ()
    #: Train on ``extra_sources`` (false: AG-VPReID alone) - a scalar switch a study can search, with the
    #: sources themselves fixed in ``trainer.overrides``.
    use_extra_sources: bool = True
    #: Read frames decoded and resized once into the shared frame cache (:mod:`trainers.data.frame_cache`,
    #: under ``runtime.cache_dir``, else $AGVP_CACHE, else ~/.cache/agvp-hpo) instead of decoding the JPEGs
    #: every epoch; the clips and the results are identical either way. ``auto`` (the default): use the
    #: entry when it exists, build it when it needs at most a quarter of the free disk space there
    #: (``AUTO_DISK_SHARE``), else decode the JPEGs with one warning. Measured 10-15x the JPEG path's frames
    #: per CPU-second (see the README); it costs ~96 KiB of disk per frame at 256x128 (~140 GB for
    #: AG-VPReID's 1.47 M frames) and one decoding pass over every frame to build.
    frame_cache: bool | Literal["auto"] = "auto"
