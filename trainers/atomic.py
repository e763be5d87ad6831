"""The one way this project writes a file that something else may read at any moment: atomically.

The data goes to a temporary file in the destination's folder (a hidden ``.name.<pid>.tmp``), which is
flushed and fsynced, renamed over the destination, and the folder is fsynced so the rename survives a power
loss. A reader sees the old file or the complete new one, never a torn one; a crash leaves at most the
hidden temporary file. Checkpoints, the CLIP-memory cache, submissions, the results store and the study
state all go through :func:`atomic_write` (it lives in ``trainers`` because the trainers must not import
the HPO layer, which uses it too).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def fsync_directory(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort where a folder cannot be opened)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def atomic_write(path: Path | str, write: Callable[[Path], None], *, mode: int | None = None) -> Path:
    """Create or replace ``path`` atomically; ``write(temporary)`` fills the temporary file. ``mode``: its
    permission bits (default: as a plain ``open`` would create it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temporary)
        with temporary.open("rb+") as handle:
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    fsync_directory(path.parent)
    return path


def atomic_write_bytes(path: Path | str, data: bytes) -> Path:
    return atomic_write(path, lambda temporary: temporary.write_bytes(data))


def atomic_write_text(path: Path | str, text: str) -> Path:
    return atomic_write(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


@contextmanager
def staged_folder(out: Path, tag: str) -> Iterator[Path]:
    """Build a folder at a hidden staging path next to ``out`` and move it to ``out`` only when the block
    ends without an error (replacing what was there); an interrupted build leaves ``out`` untouched."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{tag}"
    if staging.exists():
        shutil.rmtree(staging)
    try:
        yield staging
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
