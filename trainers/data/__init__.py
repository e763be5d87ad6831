"""AG-VPReID data layer: the on-disk layout, frame-name metadata, attributes, the validation split,
temporal sampling, PK batches, transforms, the torch dataset, a synthetic generator and an inspector."""

from trainers.data.attributes import ATTRIBUTE_NAMES, UNKNOWN_CODE, AttributeTable, read_attribute_csv
from trainers.data.config import BatchConfig, SamplingConfig, SplitConfig, TransformConfig
from trainers.data.index import DatasetIndex, Problem, Tracklet, read_dataset, scan_dataset
from trainers.data.naming import FrameInfo, Platform, parse_frame_name
from trainers.data.pipeline import DataConfig, eval_dataset, train_loader, validation_split
from trainers.data.pk_sampler import PKSampler
from trainers.data.sampling import SamplingMode, sample_frame_indices
from trainers.data.split import (
    RetrievalView,
    ValidationSplit,
    label_map,
    make_validation_split,
    protocol_views,
    training_tracklets,
    validation_views,
)
from trainers.data.transforms import ClipTransform
from trainers.data.video_dataset import TrackletDataset, load_frame

__all__ = [
    "ATTRIBUTE_NAMES",
    "UNKNOWN_CODE",
    "AttributeTable",
    "BatchConfig",
    "ClipTransform",
    "DataConfig",
    "DatasetIndex",
    "FrameInfo",
    "PKSampler",
    "Platform",
    "Problem",
    "RetrievalView",
    "SamplingConfig",
    "SamplingMode",
    "SplitConfig",
    "Tracklet",
    "TrackletDataset",
    "TransformConfig",
    "ValidationSplit",
    "eval_dataset",
    "label_map",
    "load_frame",
    "make_validation_split",
    "parse_frame_name",
    "protocol_views",
    "read_attribute_csv",
    "read_dataset",
    "sample_frame_indices",
    "scan_dataset",
    "train_loader",
    "training_tracklets",
    "validation_split",
    "validation_views",
]
