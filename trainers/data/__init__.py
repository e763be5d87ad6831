"""AG-VPReID data layer: the on-disk layout, frame-name metadata, attributes, the validation split,
temporal sampling, PK batches, transforms, the torch dataset, a synthetic generator and an inspector; extra
training sources (G2A-VReID, a generic layout) with their readers and synthetic writers.

Public names are resolved lazily (PEP 562) so that torch-free uses - ``agvp-hpo data synth``/``inspect``, the
reader - do not pay for importing torch.
"""

from __future__ import annotations

from trainers._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "ATTRIBUTE_NAMES": "attributes",
    "UNKNOWN_CODE": "attributes",
    "AttributeTable": "attributes",
    "read_attribute_csv": "attributes",
    "BatchConfig": "config",
    "SamplingConfig": "config",
    "SplitConfig": "config",
    "TransformConfig": "config",
    "DatasetIndex": "index",
    "Problem": "index",
    "Tracklet": "index",
    "read_dataset": "index",
    "scan_dataset": "index",
    "FrameInfo": "naming",
    "Platform": "naming",
    "parse_frame_name": "naming",
    "DataConfig": "config",
    "ExtraSourceConfig": "config",
    "ExtraSource": "index",
    "read_extra_sources": "sources",
    "scan_extra_sources": "sources",
    "save_sources": "sources",
    "generate_source": "synth_sources",
    "read_training_index": "pipeline",
    "eval_dataset": "pipeline",
    "train_loader": "pipeline",
    "validation_split": "pipeline",
    "PKSampler": "pk_sampler",
    "SamplingMode": "sampling",
    "sample_frame_indices": "sampling",
    "RetrievalView": "split",
    "ValidationSplit": "split",
    "label_map": "split",
    "make_validation_split": "split",
    "protocol_views": "split",
    "training_tracklets": "split",
    "validation_views": "split",
    "ClipTransform": "transforms",
    "TrackletDataset": "video_dataset",
    "load_frame": "video_dataset",
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
