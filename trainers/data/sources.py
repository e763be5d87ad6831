"""Extra training sources (``data.extra_sources``): a reader per layout, camera mapping, identity renumbering.

The 2025 challenge's runner-up trained on AG-VPReID plus the G2A-VReID train and test sets, renumbering the
added identities to continue after the largest AG-VPReID id (challenge report, appendix A.2). Here:

- each source is read by the reader of its layout - ``g2a-vreid`` (the MARS-style release, as the authors'
  loader reads it: see :mod:`trainers.data.layout`) or ``generic`` (``<split>/<identity>/<tracklet>/<frame>``
  plus ``tracklets.csv`` giving each tracklet's camera and platform);
- every camera is mapped onto an AG-VPReID camera id 0..5 (config ``cameras``, else the layout's default),
  so the camera embedding gets a valid id and the platform (aerial / cctv / wearable) follows from it;
- identities are renumbered consecutively, in sorted order of the source's own identities, from the
  largest AG-VPReID training id + 1, then from the previous source's largest + 1, and recorded
  (:meth:`ExtraSource.record`, saved next to a run by :func:`save_sources`);
- the sources' tracklets live in :attr:`DatasetIndex.sources`, never in the primary splits: validation
  identities are drawn from AG-VPReID alone, and every extra tracklet trains
  (:func:`trainers.data.split.training_tracklets`).

:func:`scan_extra_sources` collects problems (``agvp-hpo data inspect``); :func:`read_extra_sources`
raises :class:`DataError` on the first one, naming the file or the config field.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trainers.data.config import ExtraSourceConfig
from trainers.data.index import DatasetIndex, ExtraSource, Problem, Tracklet, _image_readable, _list_images
from trainers.data.layout import (
    G2A_FRAME_DIRS,
    G2A_NAME_FILES,
    G2A_QUERY_FILE,
    G2A_SPLITS,
    G2A_TRACK_FILES,
    GENERIC_COLUMNS,
    GENERIC_PLATFORMS,
    GENERIC_TRACKLETS_FILE,
)
from trainers.data.matfile import read_mat
from trainers.data.naming import Platform, platform_of_camera
from trainers.errors import DataError

#: Layout -> camera label -> AG-VPReID camera, for cameras the config does not list. G2A-VReID has two
#: cameras (its loader: ``num_camera = 2``), one ground and one UAV; which id is which is NOT confirmed by
#: any public source we found - ``1`` ground and ``2`` UAV is an assumption (override with ``cameras``; check
#: ``agvp-hpo data inspect``, which shows the platforms it produces).
DEFAULT_CAMERAS: dict[str, dict[str, int]] = {"g2a-vreid": {"1": 0, "2": 4}, "generic": {}}
#: Generic layout: platform column -> AG-VPReID camera for cameras the config does not list.
PLATFORM_CAMERAS: dict[str, int] = {"aerial": 4, "cctv": 0, "ground": 0, "wearable": 2}
#: Which AG-VPReID platforms a generic platform name admits.
_PLATFORMS_OF: dict[str, frozenset[Platform]] = {
    "aerial": frozenset({Platform.AERIAL}),
    "cctv": frozenset({Platform.CCTV}),
    "wearable": frozenset({Platform.WEARABLE}),
    "ground": frozenset({Platform.CCTV, Platform.WEARABLE}),
}
_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders digit runs by value: ``f9`` before ``f10``, ``train/3`` before ``train/12``."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in _DIGITS.split(text) if part)


@dataclass(frozen=True)
class _Found:
    """A tracklet as a reader finds it, before identities are renumbered."""

    split: str
    identity: str
    name: str
    frames: tuple[str, ...]
    camera: int


@dataclass
class _Scan:
    """What a reader needs and collects: the source's settings, the problems found, the cameras used."""

    config: ExtraSourceConfig
    field_name: str
    stop_at_first: bool
    problems: list[Problem] = field(default_factory=list)
    cameras_used: dict[str, int] = field(default_factory=dict)
    _reported: set[str] = field(default_factory=set)

    @property
    def root(self) -> Path:
        return self.config.root

    def problem(self, kind: str, path: Path | str, message: str) -> None:
        if self.stop_at_first:
            raise DataError(message, path=path)
        self.problems.append(Problem(kind=kind, path=str(path), message=message))

    def camera(self, label: str, platform: str | None, where: Path | str) -> int | None:
        """AG-VPReID camera of source camera ``label`` (and generic ``platform``); None after a problem."""
        mapping = {**DEFAULT_CAMERAS[self.config.layout], **self.config.cameras}
        camera = mapping.get(label)
        if camera is None and platform is not None:
            camera = PLATFORM_CAMERAS[platform]
        if camera is None:
            if label not in self._reported:
                self._reported.add(label)
                self.problem(
                    "unmapped-camera",
                    where,
                    f"camera {label!r} has no AG-VPReID camera: add it to {self.field_name}.cameras",
                )
            return None
        if platform is not None and platform_of_camera(camera) not in _PLATFORMS_OF[platform]:
            if f"{label}|{platform}" not in self._reported:
                self._reported.add(f"{label}|{platform}")
                self.problem(
                    "camera-platform",
                    where,
                    f"camera {label!r} is {platform} but {self.field_name}.cameras maps it to C{camera} "
                    f"({platform_of_camera(camera).value})",
                )
            return None
        self.cameras_used[label] = camera
        return camera


def _frames_present(root: Path, cache: dict[Path, set[str]], frame: str) -> bool:
    """Whether ``root/frame`` exists, listing each folder once (G2A-VReID names frames in text files)."""
    folder = (root / frame).parent
    if folder not in cache:
        cache[folder] = set(os.listdir(folder)) if folder.is_dir() else set()
    return Path(frame).name in cache[folder]


def _integer_table(scan: _Scan, path: Path, key: str, columns: int | None) -> np.ndarray | None:
    """Matrix ``key`` of a MAT file as integers (``columns`` columns, or flattened when None)."""
    try:
        arrays = read_mat(path)
    except DataError as error:
        scan.problem("bad-index", path, error.message)
        return None
    if key not in arrays:
        scan.problem(
            "bad-index", path, f"has no numeric matrix {key!r} (found: {', '.join(arrays) or 'none'})"
        )
        return None
    table = np.asarray(arrays[key])
    if not np.all(np.isfinite(table)) or not np.array_equal(table, np.round(table)):
        scan.problem("bad-index", path, f"matrix {key!r} holds non-integer values")
        return None
    table = table.astype(np.int64)
    if columns is None:
        return table.reshape(-1)
    if table.ndim != 2 or table.shape[1] != columns:
        scan.problem("bad-index", path, f"matrix {key!r} is {table.shape}, but must have {columns} columns")
        return None
    return table


def _read_g2a(scan: _Scan, splits: Sequence[str]) -> list[_Found]:
    """G2A-VReID: rows ``(first, last, identity, camera)`` of the track tables over the name lists.

    As in the authors' loader, identity -1 (junk) is skipped, a tracklet's frames must share the identity
    prefix ``name[:4]`` and the camera character ``name[5]``, and train and test identities are separate
    spaces (``train/<id>``, ``test/<id>``); query and gallery share the test space."""
    root = scan.root
    found: list[_Found] = []
    listing: dict[Path, set[str]] = {}
    members = {"train": {"train"}, "test": {"query", "gallery"}}  # the splits each table holds
    groups = [group for group, held in members.items() if held & set(splits)]
    for group in groups:
        names_path = root / G2A_NAME_FILES[group]
        track_path = root / G2A_TRACK_FILES[group][0]
        missing = [p for p in (names_path, track_path) if not p.is_file()]
        if group == "test" and not (root / G2A_QUERY_FILE[0]).is_file():
            missing.append(root / G2A_QUERY_FILE[0])
        for path in missing:
            scan.problem("missing-file", path, f"{scan.field_name} (g2a-vreid): file does not exist")
        if missing:
            continue
        names = [line.strip() for line in names_path.read_text(encoding="utf-8").splitlines()]
        table = _integer_table(scan, track_path, G2A_TRACK_FILES[group][1], 4)
        if table is None:
            continue
        queries: set[int] = set()
        if group == "test":
            query_path = root / G2A_QUERY_FILE[0]
            rows = _integer_table(scan, query_path, G2A_QUERY_FILE[1], None)
            if rows is None:
                continue
            if rows.size and not (rows.min() >= 1 and rows.max() <= len(table)):
                scan.problem("bad-index", query_path, f"query rows must be 1..{len(table)} (1-based)")
                continue
            queries = {int(r) - 1 for r in rows}
        for row, (first, last, pid, camera_id) in enumerate(table.tolist()):
            split = "train" if group == "train" else "query" if row in queries else "gallery"
            if split not in splits or pid == -1:
                continue
            where = f"{track_path} row {row + 1}"
            if not 1 <= first <= last <= len(names):
                scan.problem(
                    "bad-track-row",
                    track_path,
                    f"row {row + 1}: frames {first}..{last} are not within the "
                    f"{len(names)} lines of {names_path.name}",
                )
                continue
            frame_names = names[first - 1 : last]
            if len({n[:4] for n in frame_names}) > 1 or len({n[5:6] for n in frame_names}) > 1:
                scan.problem(
                    "mixed-tracklet", track_path, f"row {row + 1}: frames of several identities or cameras"
                )
                continue
            camera = scan.camera(str(camera_id), None, where)
            if camera is None:
                continue
            frames = tuple(f"{G2A_FRAME_DIRS[group]}/{n[:4]}/{n}" for n in frame_names)
            absent = [f for f in frames if not _frames_present(root, listing, f)]
            if absent:
                scan.problem("missing-frame", root / absent[0], f"frame of {where} does not exist")
                continue
            found.append(_Found(split, f"{group}/{pid}", f"{first}-{last}", frames, camera))
    return found


def _read_generic_csv(scan: _Scan) -> dict[tuple[str, str, str], tuple[str, str, int]] | None:
    """``tracklets.csv``: (split, identity, tracklet) -> (camera, platform, line); None when unusable."""
    path = scan.root / GENERIC_TRACKLETS_FILE
    if not path.is_file():
        scan.problem("missing-file", path, f"{scan.field_name} (generic): file does not exist")
        return None
    rows: dict[tuple[str, str, str], tuple[str, str, int]] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        absent = [c for c in GENERIC_COLUMNS if c not in (reader.fieldnames or [])]
        if absent:
            scan.problem(
                "bad-csv", path, f"needs columns {', '.join(GENERIC_COLUMNS)} (missing {', '.join(absent)})"
            )
            return None
        for row in reader:
            values = {c: (row.get(c) or "").strip() for c in GENERIC_COLUMNS}
            line = reader.line_num
            if not all(values.values()):
                empty = [c for c, v in values.items() if not v]
                scan.problem("bad-csv", path, f"line {line}: empty {', '.join(empty)}")
                continue
            platform = values["platform"].lower()
            if platform not in GENERIC_PLATFORMS:
                scan.problem(
                    "bad-csv",
                    path,
                    f"line {line}: platform {values['platform']!r} is not one of "
                    f"{', '.join(GENERIC_PLATFORMS)}",
                )
                continue
            key = (values["split"], values["identity"], values["tracklet"])
            if key in rows:
                scan.problem("bad-csv", path, f"line {line}: tracklet {'/'.join(key)} is listed twice")
                continue
            rows[key] = (values["camera"], platform, line)
    return rows


def _subfolders(folder: Path) -> list[str]:
    with os.scandir(folder) as entries:
        return sorted((e.name for e in entries if e.is_dir() and not e.name.startswith(".")), key=natural_key)


def _read_generic(scan: _Scan, splits: Sequence[str]) -> list[_Found]:
    """Generic layout: every tracklet folder needs a CSV row and every row of a read split a folder; the
    same identity folder name in two splits is the same person."""
    root = scan.root
    rows = _read_generic_csv(scan)
    if rows is None:  # without the CSV no tracklet has a camera: one problem, not one per tracklet
        return []
    csv_path = root / GENERIC_TRACKLETS_FILE
    found: list[_Found] = []
    for split in splits:
        split_dir = root / split
        for identity in _subfolders(split_dir):
            for name in _subfolders(split_dir / identity):
                folder = split_dir / identity / name
                images = sorted(_list_images(folder), key=natural_key)
                row = rows.pop((split, identity, name), None)
                if not images:
                    scan.problem("empty-tracklet", folder, "tracklet has no frames")
                    continue
                if row is None:
                    scan.problem("unlisted-tracklet", folder, f"tracklet has no row in {csv_path}")
                    continue
                camera = scan.camera(row[0], row[1], f"{csv_path} line {row[2]}")
                if camera is None:
                    continue
                frames = tuple(f"{split}/{identity}/{name}/{image}" for image in images)
                found.append(_Found(split, identity, name, frames, camera))
    for (split, identity, name), (_, _, line) in rows.items():
        if split in splits:
            scan.problem(
                "missing-tracklet", csv_path, f"line {line}: folder {split}/{identity}/{name} does not exist"
            )
    return found


def _available_splits(config: ExtraSourceConfig) -> tuple[str, ...]:
    if config.layout == "g2a-vreid":
        return G2A_SPLITS
    return tuple(_subfolders(config.root))


_READERS: dict[str, Callable[[_Scan, Sequence[str]], list[_Found]]] = {
    "g2a-vreid": _read_g2a,
    "generic": _read_generic,
}


def scan_source(
    config: ExtraSourceConfig,
    *,
    position: int,
    first_pid: int,
    check_images: bool = False,
    stop_at_first: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[ExtraSource, list[Problem]]:
    """Read extra source number ``position`` (0-based, its place in ``data.extra_sources``); its identities
    become ``first_pid``, ``first_pid + 1``, ... in sorted order. Returns the source and every problem."""
    field_name = f"data.extra_sources.{position}"
    root = config.root
    if not root.is_dir():
        raise DataError(f"{field_name}.root: folder does not exist (layout {config.layout})", path=root)
    scan = _Scan(config=config, field_name=field_name, stop_at_first=stop_at_first)
    available = _available_splits(config)
    splits = config.splits if config.splits is not None else available
    absent = [s for s in splits if s not in available]
    if absent:
        raise DataError(
            f"{field_name}.splits names {', '.join(absent)}, "
            f"but the source has {', '.join(available) or 'none'}",
            path=root,
        )
    found = _READERS[config.layout](scan, splits)
    identities = sorted({t.identity for t in found}, key=natural_key)
    new_ids = {identity: first_pid + rank for rank, identity in enumerate(identities)}
    label = f"extra{position}"
    tracklets: list[Tracklet] = []
    for item in found:
        pid = new_ids[item.identity]
        tracklet = Tracklet(
            split=item.split,
            pid=pid,
            name=item.name,
            frames=item.frames,
            camera=item.camera,
            platform=platform_of_camera(item.camera),
            altitude_m=None,
            true_pid=pid,
            source=label,
            root=root,
        )
        if check_images:
            bad = [
                i for i in range(len(tracklet.frames)) if not _image_readable(tracklet.frame_path(i, root))
            ]
            for i in bad:
                scan.problem("unreadable-image", tracklet.frame_path(i, root), "image cannot be decoded")
            if bad:
                continue
        tracklets.append(tracklet)
        if on_progress is not None:
            on_progress(1)
    source = ExtraSource(
        label=label,
        root=root,
        layout=config.layout,
        splits=tuple(splits),
        first_pid=first_pid,
        identities=new_ids,
        cameras=dict(sorted(scan.cameras_used.items(), key=lambda item: natural_key(item[0]))),
        tracklets=tuple(tracklets),
    )
    return source, scan.problems


def first_extra_pid(index: DatasetIndex) -> int:
    """Where renumbered identities start: the largest AG-VPReID training id + 1 (1 without a train split)."""
    return max((t.pid for t in index.split("train")), default=0) + 1


def scan_extra_sources(
    index: DatasetIndex,
    configs: Sequence[ExtraSourceConfig],
    *,
    check_images: bool = False,
    stop_at_first: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[DatasetIndex, list[Problem]]:
    """``index`` with ``configs`` read into :attr:`DatasetIndex.sources`, and every problem found."""
    problems: list[Problem] = []
    sources: list[ExtraSource] = []
    next_pid = first_extra_pid(index)
    for position, config in enumerate(configs):
        source, found = scan_source(
            config,
            position=position,
            first_pid=next_pid,
            check_images=check_images,
            stop_at_first=stop_at_first,
            on_progress=on_progress,
        )
        if not source.tracklets:
            message = f"data.extra_sources.{position}: source has no tracklets (layout {config.layout})"
            if stop_at_first:
                raise DataError(message, path=config.root)
            found.append(Problem(kind="empty-source", path=str(config.root), message=message))
        sources.append(source)
        problems += found
        next_pid = source.last_pid + 1
    return dataclasses.replace(index, sources=tuple(sources)), problems


def read_extra_sources(index: DatasetIndex, configs: Sequence[ExtraSourceConfig]) -> DatasetIndex:
    """``index`` with the extra sources read; the first problem raises :class:`DataError`."""
    if not configs:
        return index
    merged, _ = scan_extra_sources(index, configs, stop_at_first=True)
    return merged


def sources_record(index: DatasetIndex) -> dict[str, object]:
    """How the training identities were assembled: the AG-VPReID id range and each source's renumbering."""
    return {
        "index_fingerprint": index.fingerprint(),
        "agvp_max_train_pid": first_extra_pid(index) - 1,
        "sources": [source.record() for source in index.sources],
    }


def save_sources(index: DatasetIndex, path: Path | str) -> None:
    """Write :func:`sources_record` as JSON (next to a run's ``split.json``)."""
    Path(path).write_text(json.dumps(sources_record(index), indent=1) + "\n", encoding="utf-8")
