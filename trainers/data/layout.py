"""Where each split lives on disk, in the layout the AG-VPReID challenge distributed (REFERENCE_REID.md §1).

Only names live here, so the reader, the synthetic generator and the inspector agree by construction.
"""

from __future__ import annotations

from pathlib import PurePosixPath

#: Split name -> folder of ``<pid>/<tracklet>/<frame>`` relative to the dataset root.
SPLIT_DIRS: dict[str, PurePosixPath] = {
    "train": PurePosixPath("train"),
    "case1_query": PurePosixPath("case1_aerial_to_ground/query"),
    "case1_gallery": PurePosixPath("case1_aerial_to_ground/gallery"),
    "case2_query": PurePosixPath("case2_ground_to_aerial/query"),
    "case2_gallery": PurePosixPath("case2_ground_to_aerial/gallery"),
}
#: Split name -> attribute CSV relative to the dataset root.
ATTRIBUTE_FILES: dict[str, PurePosixPath] = {
    "train": PurePosixPath("attributes/train.csv"),
    "case1_query": PurePosixPath("attributes/case1_aerial_to_ground/query.csv"),
    "case1_gallery": PurePosixPath("attributes/case1_aerial_to_ground/gallery.csv"),
    "case2_query": PurePosixPath("attributes/case2_ground_to_aerial/query.csv"),
    "case2_gallery": PurePosixPath("attributes/case2_ground_to_aerial/gallery.csv"),
}
#: Test protocol: case name -> (query split, gallery split). Case 1 (A2G) comes first in submissions.
PROTOCOL_CASES: dict[str, tuple[str, str]] = {
    "a2g": ("case1_query", "case1_gallery"),
    "g2a": ("case2_query", "case2_gallery"),
}
ALL_SPLITS: tuple[str, ...] = tuple(SPLIT_DIRS)
TEST_SPLITS: tuple[str, ...] = ALL_SPLITS[1:]
#: Optional file (written by ``agvp-hpo data synth``) mapping masked test folder ids to true identities:
#: columns ``split,folder_id,tracklet,true_id``.
TRUE_IDS_FILE = PurePosixPath("true_ids.csv")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
