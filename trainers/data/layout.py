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

# --- Extra training sources (``data.extra_sources``) -------------------------------------------------------
#: Layout names of extra sources; ``agvp`` (the layout above) is the primary dataset's.
EXTRA_LAYOUTS: tuple[str, ...] = ("g2a-vreid", "generic")
ALL_LAYOUTS: tuple[str, ...] = ("agvp", *EXTRA_LAYOUTS)

#: G2A-VReID (Zhang et al., ECCV 2024) as its authors' loader reads it (FHR-L/VSLA-CLIP,
#: datasets/data_manager.py, class G2A): MARS-style. ``info/<split>_name.txt`` lists frame file names, one a
#: line; ``info/tracks_<split>_info.mat`` holds one row per tracklet ``(first line, last line, identity,
#: camera)``, 1-based and inclusive; ``info/query_IDX.mat`` lists the 1-based rows of the test table that are
#: queries (the other rows are the gallery). A frame lives in ``bbox_<split>/<name[:4]>/<name>``.
G2A_SPLITS: tuple[str, ...] = ("train", "query", "gallery")
G2A_NAME_FILES: dict[str, PurePosixPath] = {
    "train": PurePosixPath("info/train_name.txt"),
    "test": PurePosixPath("info/test_name.txt"),
}
G2A_TRACK_FILES: dict[str, tuple[PurePosixPath, str]] = {
    "train": (PurePosixPath("info/tracks_train_info.mat"), "track_train_info"),
    "test": (PurePosixPath("info/tracks_test_info.mat"), "track_test_info"),
}
G2A_QUERY_FILE: tuple[PurePosixPath, str] = (PurePosixPath("info/query_IDX.mat"), "query_IDX")
G2A_FRAME_DIRS: dict[str, PurePosixPath] = {
    "train": PurePosixPath("bbox_train"),
    "test": PurePosixPath("bbox_test"),
}

#: The generic layout (ours, documented in the README): ``<split>/<identity>/<tracklet>/<frame>`` plus this
#: CSV with one row per tracklet giving its camera and platform.
GENERIC_TRACKLETS_FILE = PurePosixPath("tracklets.csv")
GENERIC_COLUMNS: tuple[str, ...] = ("split", "identity", "tracklet", "camera", "platform")
#: Platform names the generic CSV accepts; "ground" is a ground camera of unknown kind (read as CCTV).
GENERIC_PLATFORMS: tuple[str, ...] = ("aerial", "cctv", "wearable", "ground")
