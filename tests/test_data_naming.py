from __future__ import annotations

import pytest

from trainers.data.naming import Platform, format_frame_name, parse_frame_name, platform_of_camera
from trainers.errors import DataError


def test_parses_the_reference_example() -> None:
    info = parse_frame_name("P81T2310171A2C2E152K7F7528.jpg")
    assert info.camera == 2
    assert info.platform is Platform.WEARABLE
    assert info.altitude_m is None  # altitude only matters for aerial frames
    assert info.frame_number == 7528


@pytest.mark.parametrize(("code", "metres"), [(2, 80), (3, 120), (7, None)])
def test_aerial_altitude(code: int, metres: int | None) -> None:
    info = parse_frame_name(f"train/12/tracklet_3/P5T2310181A{code}C4E100K3F12.jpg")
    assert info.platform is Platform.AERIAL
    assert info.altitude_m == metres


@pytest.mark.parametrize(
    ("camera", "platform"),
    [(0, "cctv"), (1, "cctv"), (2, "wearable"), (3, "wearable"), (4, "aerial"), (5, "aerial")],
)
def test_platform_per_camera(camera: int, platform: str) -> None:
    assert platform_of_camera(camera).value == platform


def test_camera_found_by_pattern_not_position() -> None:
    # a two-digit person number and longer annotation refs must not shift the camera
    assert parse_frame_name("P123T2310171A3C5E15234K17F1.png").camera == 5


def test_missing_frame_number_is_allowed() -> None:
    assert parse_frame_name("P1T2310171A2C0E1K1.jpg").frame_number is None


def test_no_camera_code_names_the_file() -> None:
    with pytest.raises(DataError, match=r"x/y/frame_001\.jpg: frame name has no camera code"):
        parse_frame_name("x/y/frame_001.jpg")


def test_unknown_camera_is_an_error() -> None:
    with pytest.raises(DataError, match="C9 is not one of"):
        parse_frame_name("P1T2310171A2C9E1K1F3.jpg")


def test_format_round_trips() -> None:
    name = format_frame_name(person=3, date="2310171", altitude_code=3, camera=4, e_ref=12, k_ref=1, frame=77)
    info = parse_frame_name(name)
    assert (info.camera, info.altitude_m, info.frame_number) == (4, 120, 77)
