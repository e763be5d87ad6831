"""Metadata encoded in AG-VPReID frame file names.

A frame name looks like ``P81T2310171A2C2E152K7F7528.jpg``: ``P81`` per-day person number (not the label),
``T231017..`` date, ``A2``/``A3`` altitude code, ``C2`` camera, ``E..``/``K..`` annotation references,
``F7528`` frame number. Each field is found by its own regular expression (never by splitting on fixed
positions), so a name with extra or missing annotation fields still yields what it has.

Cameras: C0/C1 CCTV, C2/C3 wearable, C4/C5 UAV. Altitude only means something for aerial frames.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from trainers.errors import DataError

_CAMERA_RE = re.compile(r"C(\d+)E")
_ALTITUDE_RE = re.compile(r"A(\d+)C\d+E")
_FRAME_RE = re.compile(r"F(\d+)$")

#: Altitude code in frame names -> metres above ground.
ALTITUDE_METRES: dict[int, int] = {2: 80, 3: 120}
#: Camera id -> platform. Cameras not listed are an error (the dataset defines C0..C5).
AERIAL_CAMERAS = frozenset({4, 5})
CCTV_CAMERAS = frozenset({0, 1})
WEARABLE_CAMERAS = frozenset({2, 3})


class Platform(str, Enum):
    """Where a camera sits. ``is_aerial`` is what the A2G / G2A protocol splits on."""

    AERIAL = "aerial"
    CCTV = "cctv"
    WEARABLE = "wearable"

    @property
    def is_aerial(self) -> bool:
        return self is Platform.AERIAL


def platform_of_camera(camera: int) -> Platform:
    """Map a camera id to its platform; unknown cameras raise ``ValueError``."""
    if camera in AERIAL_CAMERAS:
        return Platform.AERIAL
    if camera in CCTV_CAMERAS:
        return Platform.CCTV
    if camera in WEARABLE_CAMERAS:
        return Platform.WEARABLE
    raise ValueError(f"camera C{camera} is not one of the AG-VPReID cameras C0..C5")


@dataclass(frozen=True)
class FrameInfo:
    """What one frame name tells: camera, platform, altitude (aerial only) and frame number (if present)."""

    camera: int
    platform: Platform
    altitude_m: int | None
    frame_number: int | None


def parse_frame_name(name: str) -> FrameInfo:
    """Parse a frame file name (with or without folders and extension).

    Raises :class:`DataError` naming the file when no camera code (``C<k>E``) can be found or the camera is
    not a known one. A missing frame number is allowed (callers fall back to name order); an altitude code
    outside {A2, A3} on an aerial frame yields ``altitude_m=None``.
    """
    stem = name.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    camera_match = _CAMERA_RE.search(stem)
    if camera_match is None:
        raise DataError("frame name has no camera code 'C<k>E'", path=name)
    camera = int(camera_match.group(1))
    try:
        platform = platform_of_camera(camera)
    except ValueError as error:
        raise DataError(str(error), path=name) from None
    altitude_m: int | None = None
    if platform.is_aerial:
        altitude_match = _ALTITUDE_RE.search(stem)
        if altitude_match is not None:
            altitude_m = ALTITUDE_METRES.get(int(altitude_match.group(1)))
    frame_match = _FRAME_RE.search(stem)
    frame_number = int(frame_match.group(1)) if frame_match else None
    return FrameInfo(camera=camera, platform=platform, altitude_m=altitude_m, frame_number=frame_number)


def format_frame_name(
    *, person: int, date: str, altitude_code: int, camera: int, e_ref: int, k_ref: int, frame: int
) -> str:
    """Build a frame file name in the dataset's convention (used by the synthetic generator)."""
    return f"P{person}T{date}A{altitude_code}C{camera}E{e_ref}K{k_ref}F{frame}.jpg"
