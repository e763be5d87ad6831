"""Reading an AG-VPReID dataset folder into a :class:`DatasetIndex` of tracklets.

Two entry points share one scanner:

- :func:`scan_dataset` walks everything and *collects* problems (empty tracklets, non-integer id folders,
  bad frame names, malformed CSVs, optionally unreadable images) - ``agvp-hpo data inspect`` uses it.
- :func:`read_dataset` raises :class:`DataError` on the first problem, naming the file - training and
  evaluation use it.

Test identities: in the public release the folder ids of the test splits are masked (folder X in a query
split and folder X in a gallery split are different people), so nothing can be scored locally. A release
with the original ids, or a synthetic dataset with a ``true_ids.csv`` mapping, can be scored. ``test_ids``
says which one a folder is: ``"masked"``, ``"true"`` (folder ids are identities) or ``"auto"`` (use
``true_ids.csv`` when present, otherwise masked).
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from trainers.data.attributes import AttributeTable, read_attribute_csv
from trainers.data.layout import (
    ALL_SPLITS,
    ATTRIBUTE_FILES,
    IMAGE_SUFFIXES,
    SPLIT_DIRS,
    TRUE_IDS_FILE,
)
from trainers.data.naming import Platform, parse_frame_name
from trainers.errors import DataError

TestIds = Literal["auto", "masked", "true"]


@dataclass(frozen=True)
class Tracklet:
    """One tracklet. ``frames`` are paths relative to the dataset root, in temporal order.

    A tracklet of an extra training source (``data.extra_sources``) names its source (``source``, e.g.
    ``extra1``) and the folder its frames are relative to (``root``); its ``pid`` is the renumbered identity
    and ``camera`` the AG-VPReID camera id it was mapped to. Tracklets of the primary dataset leave both at
    their defaults and are relative to the index root.
    """

    split: str
    pid: int
    name: str
    frames: tuple[str, ...]
    camera: int
    platform: Platform
    altitude_m: int | None
    #: Identity comparable across splits; ``None`` when the test ids are masked.
    true_pid: int | None
    source: str = ""
    root: Path | None = None

    @property
    def is_aerial(self) -> bool:
        return self.platform.is_aerial

    @property
    def key(self) -> str:
        """Unique within a dataset: ``split/pid/tracklet`` (extra sources: ``source:split/pid/tracklet``)."""
        prefix = f"{self.source}:" if self.source else ""
        return f"{prefix}{self.split}/{self.pid}/{self.name}"

    def frame_path(self, position: int, default_root: Path) -> Path:
        """Where frame ``position`` is on disk: under the tracklet's own root, else ``default_root``."""
        return (self.root if self.root is not None else default_root) / self.frames[position]

    def describe(self) -> str:
        """The line a fingerprint hashes: everything the index says about the tracklet, no absolute paths."""
        return (
            f"{self.key}|{len(self.frames)}|{self.frames[0]}|{self.frames[-1]}|{self.camera}|"
            f"{self.altitude_m}|{self.true_pid}"
        )


@dataclass(frozen=True)
class ExtraSource:
    """An extra training source as read: its tracklets (renumbered identities) and how ids were renumbered.

    ``identities`` maps the source's own identity (``train/0001``-style for G2A-VReID, whose train and test
    identity numbers are separate spaces; the identity folder name for the generic layout) to the new id:
    consecutive from ``first_pid`` in sorted order of the source's identities.
    """

    label: str
    root: Path
    layout: str
    splits: tuple[str, ...]
    first_pid: int
    identities: dict[str, int]
    cameras: dict[str, int]
    tracklets: tuple[Tracklet, ...]

    @property
    def last_pid(self) -> int:
        """The largest renumbered id (``first_pid - 1`` when the source has no identity)."""
        return self.first_pid + len(self.identities) - 1

    def record(self) -> dict[str, object]:
        """JSON-ready description: what was read and how its identities were renumbered."""
        return {
            "label": self.label,
            "root": str(self.root),
            "layout": self.layout,
            "splits": list(self.splits),
            "first_pid": self.first_pid,
            "last_pid": self.last_pid,
            "cameras": dict(self.cameras),
            "tracklets": len(self.tracklets),
            "identities": dict(self.identities),
        }


@dataclass(frozen=True)
class Problem:
    """Something wrong with a dataset folder; ``kind`` groups problems in reports."""

    kind: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class DatasetIndex:
    """Every tracklet of a dataset, with attributes per split and how test ids are known."""

    root: Path
    tracklets: tuple[Tracklet, ...]
    attributes: dict[str, AttributeTable] = field(default_factory=dict)
    test_ids: Literal["masked", "true", "mapping"] = "masked"
    #: Extra training sources (see :mod:`trainers.data.sources`); their tracklets are not in ``tracklets``
    #: (so splits, protocol views and validation are AG-VPReID only) but in :attr:`extra_tracklets`.
    sources: tuple[ExtraSource, ...] = ()

    def split(self, name: str) -> tuple[Tracklet, ...]:
        if name not in SPLIT_DIRS:
            raise ValueError(f"split {name!r} is not one of {', '.join(ALL_SPLITS)}")
        return tuple(t for t in self.tracklets if t.split == name)

    @property
    def splits_present(self) -> tuple[str, ...]:
        present = {t.split for t in self.tracklets}
        return tuple(s for s in ALL_SPLITS if s in present)

    @property
    def test_ids_known(self) -> bool:
        return self.test_ids != "masked"

    @property
    def extra_tracklets(self) -> tuple[Tracklet, ...]:
        """Every tracklet of the extra sources, in source order."""
        return tuple(t for source in self.sources for t in source.tracklets)

    def fingerprint(self) -> str:
        """Hash of everything the index says (not the pixel data, not where it lives): keys splits and caches
        by content. Extra sources add their layout and tracklets; without any the hash is the primary
        dataset's alone."""
        digest = hashlib.sha256()
        for t in sorted(self.tracklets, key=lambda t: t.key):
            digest.update(f"{t.describe()}\n".encode())
        for source in self.sources:
            digest.update(f"source|{source.label}|{source.layout}|{source.first_pid}\n".encode())
            for t in sorted(source.tracklets, key=lambda t: t.key):
                digest.update(f"{t.describe()}\n".encode())
        return digest.hexdigest()[:16]


def _list_images(folder: Path) -> list[str]:
    with os.scandir(folder) as entries:
        return [e.name for e in entries if e.is_file() and Path(e.name).suffix.lower() in IMAGE_SUFFIXES]


def _subfolders(folder: Path) -> list[str]:
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.is_dir())


def _read_true_ids(path: Path) -> dict[tuple[str, int, str], int]:
    mapping: dict[tuple[str, int, str], int] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        needed = {"split", "folder_id", "tracklet", "true_id"}
        if not needed <= set(reader.fieldnames or []):
            raise DataError(f"needs columns {', '.join(sorted(needed))}", path=path)
        for row in reader:
            try:
                mapping[(row["split"], int(row["folder_id"]), row["tracklet"])] = int(row["true_id"])
            except (TypeError, ValueError):
                raise DataError(f"line {reader.line_num}: non-integer id", path=path) from None
    return mapping


def _build_tracklet(
    root: Path, split: str, pid: int, name: str, images: list[str], true_pid: int | None
) -> Tracklet:
    """Parse frame names, order frames in time, and check the tracklet is single-camera."""
    folder = SPLIT_DIRS[split] / str(pid) / name
    infos = [parse_frame_name(str(folder / image)) for image in images]
    cameras = {info.camera for info in infos}
    if len(cameras) > 1:
        raise DataError(f"frames come from several cameras {sorted(cameras)}", path=root / folder)
    if all(info.frame_number is not None for info in infos):
        order = sorted(range(len(images)), key=lambda i: (infos[i].frame_number, images[i]))
    else:
        order = sorted(range(len(images)), key=lambda i: images[i])
    first = infos[order[0]]
    altitudes = [info.altitude_m for info in infos if info.altitude_m is not None]
    altitude = max(set(altitudes), key=altitudes.count) if altitudes else None
    return Tracklet(
        split=split,
        pid=pid,
        name=name,
        frames=tuple(str(folder / images[i]) for i in order),
        camera=first.camera,
        platform=first.platform,
        altitude_m=altitude,
        true_pid=true_pid,
    )


def scan_dataset(
    root: Path | str,
    *,
    splits: Sequence[str] = ALL_SPLITS,
    test_ids: TestIds = "auto",
    check_images: bool = False,
    on_progress: Callable[[int], None] | None = None,
    stop_at_first: bool = False,
) -> tuple[DatasetIndex, list[Problem]]:
    """Walk ``root`` and return the index of every readable tracklet plus every problem found.

    ``check_images`` decodes each frame (slow on the full dataset; ``inspect`` does it with a progress bar).
    ``on_progress`` is called with the number of tracklets processed since the last call.
    ``stop_at_first`` raises :class:`DataError` on the first problem instead of collecting.
    """
    root = Path(root)
    problems: list[Problem] = []

    def problem(kind: str, path: Path | str, message: str) -> None:
        if stop_at_first:
            raise DataError(message, path=path)
        problems.append(Problem(kind=kind, path=str(path), message=message))

    unknown = [s for s in splits if s not in SPLIT_DIRS]
    if unknown:
        raise ValueError(f"unknown split(s) {', '.join(unknown)}; valid: {', '.join(ALL_SPLITS)}")
    if not root.is_dir():
        raise DataError("dataset folder does not exist", path=root)
    if test_ids not in ("auto", "masked", "true"):
        raise ValueError(f"test_ids is {test_ids!r}, but must be one of auto, masked, true")

    mapping: dict[tuple[str, int, str], int] | None = None
    mode: Literal["masked", "true", "mapping"] = "masked"
    if test_ids == "true":
        mode = "true"
    elif test_ids == "auto" and (root / TRUE_IDS_FILE).is_file():
        try:
            mapping = _read_true_ids(root / TRUE_IDS_FILE)
            mode = "mapping"
        except DataError as error:
            problem("bad-true-ids", root / TRUE_IDS_FILE, error.message)

    tracklets: list[Tracklet] = []
    attributes: dict[str, AttributeTable] = {}
    for split in splits:
        split_dir = root / SPLIT_DIRS[split]
        if not split_dir.is_dir():
            problem("missing-split", split_dir, f"split folder for {split!r} does not exist")
            continue
        attribute_file = root / ATTRIBUTE_FILES[split]
        if attribute_file.is_file():
            try:
                attributes[split] = read_attribute_csv(attribute_file)
            except DataError as error:
                problem("bad-attributes", attribute_file, error.message)
        for pid_name in _subfolders(split_dir):
            pid_dir = split_dir / pid_name
            if not pid_name.isdigit():
                problem("bad-id-folder", pid_dir, "identity folder name is not an integer")
                continue
            pid = int(pid_name)
            names = _subfolders(pid_dir)
            if not names:
                problem("empty-identity", pid_dir, "identity folder has no tracklet folders")
            for name in names:
                images = _list_images(pid_dir / name)
                if not images:
                    problem("empty-tracklet", pid_dir / name, "tracklet has no frames")
                    continue
                if split == "train" or mode == "true":
                    true_pid: int | None = pid
                elif mapping is not None:
                    true_pid = mapping.get((split, pid, name))
                    if true_pid is None:
                        problem("unmapped-tracklet", pid_dir / name, f"not listed in {TRUE_IDS_FILE}")
                        continue
                else:
                    true_pid = None
                try:
                    tracklet = _build_tracklet(root, split, pid, name, images, true_pid)
                except DataError as error:
                    problem("bad-frame-name", error.path or pid_dir / name, error.message)
                    continue
                if check_images:
                    bad = [frame for frame in tracklet.frames if not _image_readable(root / frame)]
                    for frame in bad:
                        problem("unreadable-image", root / frame, "image cannot be decoded")
                    if bad:
                        continue
                tracklets.append(tracklet)
                if on_progress is not None:
                    on_progress(1)
    return DatasetIndex(root=root, tracklets=tuple(tracklets), attributes=attributes, test_ids=mode), problems


def _image_readable(path: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
    except (OSError, SyntaxError, ValueError):
        return False
    return True


def read_dataset(
    root: Path | str, *, splits: Iterable[str] = ALL_SPLITS, test_ids: TestIds = "auto"
) -> DatasetIndex:
    """Read a dataset folder; the first problem raises :class:`DataError` naming the file or folder."""
    index, _ = scan_dataset(root, splits=tuple(splits), test_ids=test_ids, stop_at_first=True)
    if not index.tracklets:
        raise DataError("dataset has no tracklets", path=root)
    return index
