"""A shared, content-keyed store of decoded and resized frames (DESIGN principle 8).

Every trial of a study reads the same JPEGs every epoch; decoding and resizing them dominates the data
loader. The cache decodes every frame of a dataset index once per (index fingerprint, height, width,
interpolation) into one uint8 array ``frames.npy`` of shape (N, height, width, 3) on local disk plus a small
``index.json`` (tracklet key -> first row, count). Frames are resized exactly as :class:`ClipTransform`
resizes them (same PIL call), and the transform skips the resize of a frame already at the target size, so a
clip from the cache is bit-identical to one decoded from the JPEGs; augmentation stays per sample.

Layout under the cache root (``runtime.cache_dir``, else $AGVP_CACHE, else ~/.cache/agvp-hpo)::

    frames/<key>/frames.npy, frames/<key>/index.json   # the entry, read through a read-only memory map
    frames/<key>.lock                                  # fcntl lock held while one process builds it

An entry is built in a hidden staging folder and renamed into place (:func:`staged_folder`), so a reader
sees a complete entry or none; concurrent builders take the lock, the first builds, the others wait and then
open what it built. An interrupted build leaves only the hidden staging folder, which the next build removes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainers.atomic import fsync_directory, staged_folder
from trainers.data.config import TransformConfig
from trainers.data.index import DatasetIndex, Tracklet
from trainers.data.transforms import ClipTransform
from trainers.errors import DataError

#: Part of every key: bump it when the decoding or resizing of cached frames changes.
FRAME_CACHE_VERSION = 1
FRAMES_FILE = "frames.npy"
INDEX_FILE = "index.json"
_SUBDIR = "frames"
_open_entries: dict[Path, FrameCache] = {}
logger = logging.getLogger(__name__)


def resolve_cache_root(cache_dir: Path | str | None) -> Path:
    """The cache root: ``cache_dir`` (``runtime.cache_dir``), else $AGVP_CACHE, else ~/.cache/agvp-hpo - the
    same root as the CLIP identity memory."""
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("AGVP_CACHE", Path.home() / ".cache" / "agvp-hpo"))


def frame_cache_key(index: DatasetIndex, height: int, width: int, interpolation: str) -> str:
    """Key of an entry: everything the cached pixels depend on. The index fingerprint hashes what the index
    says, not the pixels, so the dataset folders (resolved) are part of the key too: two datasets of the
    same shape at different places never share an entry. Rewriting JPEGs in place needs ``data cache
    clear``."""
    roots = [str(index.root.resolve()), *(str(source.root.resolve()) for source in index.sources)]
    parts = {
        "code": FRAME_CACHE_VERSION,
        "index": index.fingerprint(),
        "roots": roots,
        "size": [height, width],
        "interpolation": interpolation,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def cached_tracklets(index: DatasetIndex) -> tuple[Tracklet, ...]:
    """What an entry holds: every tracklet of the index, extra sources included."""
    return (*index.tracklets, *index.extra_tracklets)


@dataclass
class FrameCache:
    """An opened entry. The memory map is opened lazily in each process (pickling sends only the path, so a
    data loader worker maps the file itself instead of receiving a copy of it)."""

    folder: Path
    height: int
    width: int
    interpolation: str
    rows: dict[str, tuple[int, int]]
    _frames: np.ndarray | None = None
    _tensor: torch.Tensor | None = None

    @classmethod
    def open(cls, folder: Path | str) -> FrameCache:
        """Open a built entry; a missing or malformed one raises :class:`DataError` naming the file."""
        folder = Path(folder)
        index_path = folder / INDEX_FILE
        try:
            meta = json.loads(index_path.read_text(encoding="utf-8"))
            rows = {str(k): (int(v[0]), int(v[1])) for k, v in meta["tracklets"].items()}
            entry = cls(folder, int(meta["height"]), int(meta["width"]), str(meta["interpolation"]), rows)
            total = int(meta["frames"])
        except FileNotFoundError:
            raise DataError("frame cache entry has no index (build it first)", path=index_path) from None
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            raise DataError("frame cache index is unreadable (clear the cache)", path=index_path) from None
        frames = entry.frames
        if frames.shape != (total, entry.height, entry.width, 3) or frames.dtype != np.uint8:
            raise DataError(
                f"frame cache array has shape {frames.shape} {frames.dtype}, but the index says "
                f"({total}, {entry.height}, {entry.width}, 3) uint8 (clear the cache)",
                path=folder / FRAMES_FILE,
            )
        return entry

    @property
    def frames(self) -> np.ndarray:
        if self._frames is None:
            path = self.folder / FRAMES_FILE
            try:
                self._frames = np.load(path, mmap_mode="r")
            except (OSError, ValueError):
                raise DataError("frame cache array is unreadable (clear the cache)", path=path) from None
        return self._frames

    @property
    def tensor(self) -> torch.Tensor:
        """The frames as a (frames, height, width, 3) uint8 tensor over the same memory map, for gathers that
        run without the GIL (``torch.index_select``). Read-only memory: never write to it."""
        if self._tensor is None:
            with warnings.catch_warnings():  # torch warns that the map is read-only; nothing writes to it
                warnings.simplefilter("ignore", UserWarning)
                self._tensor = torch.from_numpy(self.frames)
        return self._tensor

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_frames"] = None
        state["_tensor"] = None
        return state

    def matches(self, transform: TransformConfig) -> bool:
        return (self.height, self.width, self.interpolation) == (
            transform.height,
            transform.width,
            transform.interpolation,
        )

    def lookup(self, tracklet: Tracklet) -> np.ndarray | None:
        """The (count, height, width, 3) read-only frames of ``tracklet``, or None when the entry does not
        hold it (another dataset's tracklet, or the same key with another frame count)."""
        first = self.first_row(tracklet)
        return None if first is None else self.frames[first : first + len(tracklet.frames)]

    def first_row(self, tracklet: Tracklet) -> int | None:
        """The row of ``tracklet``'s first frame, or None when the entry lacks it (as in :meth:`lookup`)."""
        row = self.rows.get(tracklet.key)
        return row[0] if row is not None and row[1] == len(tracklet.frames) else None

    @property
    def nbytes(self) -> int:
        return (self.folder / FRAMES_FILE).stat().st_size


def _decode_tracklet(
    tracklet: Tracklet, root: Path, resize: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    from trainers.data.video_dataset import load_frame  # video_dataset imports this module

    return np.stack([resize(load_frame(tracklet.frame_path(i, root))) for i in range(len(tracklet.frames))])


def entry_bytes(tracklets: Sequence[Tracklet], transform: TransformConfig) -> int:
    """Bytes of the frames array an entry of ``tracklets`` at ``transform``'s frame size holds."""
    return sum(len(t.frames) for t in tracklets) * transform.height * transform.width * 3


def build_entry(
    folder: Path,
    root: Path,
    tracklets: Sequence[Tracklet],
    transform: TransformConfig,
    *,
    threads: int = 1,
    on_progress: Callable[[int, int], None] | None = None,
) -> None:
    """Decode and resize every frame of ``tracklets`` into a new entry at ``folder`` (staged, then renamed).
    Callers hold the entry's lock (:func:`ensure_frame_cache`). The array is written with ordinary writes,
    in order, as the decoding threads finish each tracklet (at most ``2 x threads`` tracklets in memory):
    a disk or quota that fills up mid-build is an ``OSError``, reported as a :class:`DataError`, where
    stores into a memory map would have killed the process with SIGBUS."""
    resize = ClipTransform(transform, train=False).resize
    rows: dict[str, tuple[int, int]] = {}
    total = 0
    for tracklet in tracklets:
        rows[tracklet.key] = (total, len(tracklet.frames))
        total += len(tracklet.frames)
    needed = entry_bytes(tracklets, transform)
    folder.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder.parent).free
    if needed > free:
        raise DataError(
            f"frame cache needs {needed / 2**30:.1f} GiB for {total} frames but the disk has "
            f"{free / 2**30:.1f} GiB free (set runtime.cache_dir elsewhere, or data.frame_cache: false)",
            path=folder.parent,
        )
    shape = (total, transform.height, transform.width, 3)
    with staged_folder(folder, "build") as staging:
        staging.mkdir()
        try:
            with (staging / FRAMES_FILE).open("wb") as out:
                header = {"descr": np.dtype(np.uint8).str, "fortran_order": False, "shape": shape}
                np.lib.format.write_array_header_1_0(out, header)
                workers = max(1, threads)
                with ThreadPoolExecutor(max_workers=workers) as pool:  # PIL decodes without the GIL
                    pending: deque[Future[np.ndarray]] = deque()
                    queued = iter(tracklets)
                    for done in range(1, len(tracklets) + 1):
                        while len(pending) < 2 * workers and (tracklet := next(queued, None)) is not None:
                            pending.append(pool.submit(_decode_tracklet, tracklet, root, resize))
                        out.write(memoryview(pending.popleft().result()).cast("B"))  # in order
                        if on_progress is not None:
                            on_progress(done, len(tracklets))
                out.flush()
                os.fsync(out.fileno())
        except OSError as error:  # a full disk or quota while writing (an unreadable frame is a DataError)
            raise DataError(
                f"frame cache build failed: {error.strerror or error} (set runtime.cache_dir elsewhere, or "
                "data.frame_cache: false)",
                path=folder.parent,
            ) from None
        meta = {
            "version": FRAME_CACHE_VERSION,
            "height": transform.height,
            "width": transform.width,
            "interpolation": transform.interpolation,
            "frames": total,
            "tracklets": {key: list(row) for key, row in rows.items()},
        }
        (staging / INDEX_FILE).write_text(json.dumps(meta), encoding="utf-8")
        with (staging / INDEX_FILE).open("rb+") as handle:
            os.fsync(handle.fileno())
    fsync_directory(folder.parent)


def _entry_folder(index: DatasetIndex, transform: TransformConfig, cache_dir: Path | str | None) -> Path:
    key = frame_cache_key(index, transform.height, transform.width, transform.interpolation)
    return resolve_cache_root(cache_dir) / _SUBDIR / key


def ensure_frame_cache(
    index: DatasetIndex,
    transform: TransformConfig,
    cache_dir: Path | str | None = None,
    *,
    threads: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> FrameCache:
    """Open the entry of (``index``, frame size, interpolation), building it first when absent. Many
    processes may call this at once: the entry is built at most once, the others wait for it."""
    folder = _entry_folder(index, transform, cache_dir)
    return _open_or_build(folder, index, transform, threads=threads, on_progress=on_progress)


def _open_or_build(
    folder: Path,
    index: DatasetIndex,
    transform: TransformConfig,
    *,
    threads: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> FrameCache:
    if folder in _open_entries and folder.is_dir():
        return _open_entries[folder]
    if not (folder / INDEX_FILE).is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        lock_path = folder.parent / f"{folder.name}.lock"
        with lock_path.open("a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # released when the file closes
            if not (folder / INDEX_FILE).is_file():
                workers = threads if threads is not None else min(8, os.cpu_count() or 1)
                build_entry(
                    folder,
                    index.root,
                    cached_tracklets(index),
                    transform,
                    threads=workers,
                    on_progress=on_progress,
                )
    entry = FrameCache.open(folder)
    _open_entries[folder] = entry
    return entry


#: ``data.frame_cache: auto`` builds a missing entry only when it needs at most this share of the free disk
#: space at the cache root (an entry that exists is always used).
AUTO_DISK_SHARE = 0.25
_declined: set[str] = set()  # auto entries declined in this process (warned once each)


def auto_frame_cache(
    index: DatasetIndex,
    transform: TransformConfig,
    cache_dir: Path | str | None = None,
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> FrameCache | None:
    """``data.frame_cache: auto``: the entry of (``index``, frame size, interpolation) when it exists or
    takes at most :data:`AUTO_DISK_SHARE` of the free space at the cache root (then built as by
    :func:`ensure_frame_cache`), else None - the frames are decoded from the JPEGs, which gives the same
    clips - with one warning per entry and process saying how to turn it on."""
    folder = _entry_folder(index, transform, cache_dir)  # the key hashes the index: computed once
    root = resolve_cache_root(cache_dir)
    if not (folder / INDEX_FILE).is_file():
        needed = entry_bytes(cached_tracklets(index), transform)
        existing = next(p for p in (root, *root.parents) if p.exists())
        free = shutil.disk_usage(existing).free
        if needed > AUTO_DISK_SHARE * free:
            if folder.name not in _declined:
                _declined.add(folder.name)
                logger.warning(
                    "%s: data.frame_cache is auto and the %dx%d frame cache would need %.1f GiB, more than "
                    "%d%% of the %.1f GiB free there: decoding the JPEGs instead (set runtime.cache_dir to a "
                    "larger local disk, build it with `agvp-hpo data cache build`, or set data.frame_cache)",
                    root,
                    transform.height,
                    transform.width,
                    needed / 2**30,
                    round(AUTO_DISK_SHARE * 100),
                    free / 2**30,
                )
            return None
    return _open_or_build(folder, index, transform, on_progress=on_progress)


@dataclass(frozen=True)
class EntryInfo:
    key: str
    folder: Path
    height: int
    width: int
    interpolation: str
    tracklets: int
    frames: int
    bytes: int


def list_entries(cache_dir: Path | str | None = None) -> list[EntryInfo]:
    """Every complete entry under the cache root (staging folders of running or interrupted builds are
    hidden and not listed)."""
    base = resolve_cache_root(cache_dir) / _SUBDIR
    if not base.is_dir():
        return []
    infos = []
    for folder in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
        entry = FrameCache.open(folder)
        infos.append(
            EntryInfo(
                key=folder.name,
                folder=folder,
                height=entry.height,
                width=entry.width,
                interpolation=entry.interpolation,
                tracklets=len(entry.rows),
                frames=int(entry.frames.shape[0]),
                bytes=entry.nbytes,
            )
        )
    return infos


def clear_entries(cache_dir: Path | str | None = None, keys: Iterable[str] = ()) -> list[str]:
    """Remove the entries named by ``keys`` (all entries, staging leftovers and locks when empty); returns
    the removed keys. An unknown key raises :class:`DataError`."""
    base = resolve_cache_root(cache_dir) / _SUBDIR
    wanted = list(keys)
    for key in wanted:
        if not (base / key).is_dir():
            raise DataError(f"frame cache has no entry {key!r}", path=base)
    if not base.is_dir():
        return []
    removed = []
    for path in sorted(base.iterdir()):
        name = path.name.lstrip(".").split(".")[0]
        if wanted and name not in wanted:
            continue
        if path.is_dir():
            shutil.rmtree(path)
            if not path.name.startswith("."):
                removed.append(path.name)
        elif not wanted:
            path.unlink(missing_ok=True)
    _open_entries.clear()
    return removed
