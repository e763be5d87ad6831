"""A synthetic AG-VPReID dataset, written in exactly the real on-disk layout.

Purpose: run the whole pipeline (training, HPO, evaluation) on a laptop without the real data. The data must
be *learnable but not trivial*:

- An identity is a consistent appearance drawn from its attributes: body shape (height, volume), skin tone,
  hair colour and style, upper clothing (type, two colours, plain/striped/checked), lower clothing (trousers,
  shorts, skirt), shoes, head accessories, glasses, bags. Colours come from a small shared palette, so many
  identities share any single cue; only the combination identifies a person.
- Ground views (CCTV, wearable) are large; aerial views are small (two altitudes: 120 m smaller than 80 m),
  foreshortened (seen from above: body squashed, head and shoulders dominate) and blurred.
- Every camera has its own colour cast; every tracklet its own illumination, background and walking phase;
  every frame jitters in position and scale, changes brightness, and some tracklets are partly occluded.

Splits follow the challenge: train identities, test identities seen in case 1 (aerial query -> ground
gallery) and case 2 (ground query -> aerial gallery plus distractor identities). Test folder ids are masked
per split like the public release (or true with ``id_mode="true"``); ``true_ids.csv`` optionally records the
real identities so the test protocol can be scored locally. Everything is a pure function of the seed.

The output folder appears atomically: frames are written into a temporary sibling folder that is renamed
into place only when complete.
"""

from __future__ import annotations

import csv
import string
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from pydantic import BaseModel, ConfigDict, Field, model_validator

from trainers.atomic import staged_folder
from trainers.data.attributes import ATTRIBUTE_NAMES, UNKNOWN_CODE, write_attribute_csv
from trainers.data.layout import ATTRIBUTE_FILES, SPLIT_DIRS, TRUE_IDS_FILE
from trainers.data.naming import format_frame_name
from trainers.errors import DataError

RGB = tuple[int, int, int]

# A deliberately small palette: single colours are shared by many identities.
PALETTE: dict[str, RGB] = {
    "black": (25, 25, 28),
    "white": (225, 225, 220),
    "grey": (128, 128, 132),
    "navy": (30, 40, 90),
    "blue": (50, 95, 180),
    "red": (180, 35, 40),
    "maroon": (110, 30, 45),
    "green": (40, 120, 60),
    "olive": (110, 110, 50),
    "yellow": (220, 190, 50),
    "orange": (225, 120, 40),
    "pink": (220, 130, 170),
    "purple": (110, 60, 140),
    "brown": (110, 75, 45),
    "beige": (200, 180, 140),
}
_COLOURS = tuple(PALETTE.values())
SKIN_TONES: dict[int, RGB] = {0: (235, 200, 175), 1: (110, 75, 55), 2: (225, 190, 150), 3: (170, 120, 90)}
HAIR_COLOURS: dict[int, RGB] = {
    0: (20, 18, 18),
    1: (95, 60, 35),
    2: (220, 220, 215),
    3: (170, 70, 35),
    4: (130, 130, 130),
}
GROUND_CAMERAS = (0, 1, 2, 3)
AERIAL_CAMERAS = (4, 5)
_DATES = ("231017", "231018", "231024", "231102")
# Per-camera white balance: a camera-specific tint the model can learn to discount.
_CAMERA_TINT: dict[int, tuple[float, float, float]] = {
    0: (1.05, 1.0, 0.92),
    1: (0.92, 1.0, 1.08),
    2: (1.08, 1.02, 0.95),
    3: (0.97, 0.97, 1.05),
    4: (1.0, 1.04, 0.94),
    5: (0.94, 1.0, 1.02),
}


class SynthConfig(BaseModel):
    """Size and difficulty of a synthetic dataset. Defaults = the demo size (generates in seconds)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0
    train_ids: int = Field(64, ge=4)
    test_ids: int = Field(32, ge=2)
    distractor_ids: int = Field(16, ge=0)
    #: Tracklets per identity and platform, inclusive range.
    tracklets_per_platform: tuple[int, int] = (1, 3)
    #: Frames per tracklet, inclusive range (some shorter than T=8 exercise padding).
    frames: tuple[int, int] = (6, 20)
    #: Ground frame size (height, width) before per-tracklet scale variation.
    ground_size: tuple[int, int] = (128, 64)
    #: Aerial frame heights at 80 m and 120 m.
    aerial_height_80m: int = Field(44, ge=8)
    aerial_height_120m: int = Field(30, ge=8)
    #: Probability that a tracklet is partly occluded.
    occlusion_p: float = Field(0.3, ge=0.0, le=1.0)
    #: Probability that an attribute is annotated "unknown" instead of its value.
    unknown_attribute_p: float = Field(0.08, ge=0.0, le=1.0)
    #: Probability that an attribute is written with an out-of-range code, as in the real files.
    corrupt_attribute_p: float = Field(0.01, ge=0.0, le=1.0)
    id_mode: Literal["masked", "true"] = "masked"
    write_true_ids: bool = True
    jpeg_quality: int = Field(90, ge=10, le=100)

    @model_validator(mode="after")
    def _ranges(self) -> SynthConfig:
        for name in ("tracklets_per_platform", "frames"):
            low, high = getattr(self, name)
            if not 1 <= low <= high:
                raise ValueError(f"{name} is ({low}, {high}), but must satisfy 1 <= min <= max")
        return self


@dataclass(frozen=True)
class Appearance:
    """Everything needed to draw one identity, plus the attribute codes it implies."""

    attributes: dict[str, int]
    height_factor: float
    width_factor: float
    skin: RGB
    hair: RGB | None
    hair_length: float  # 0 bald .. 1 long
    ponytail: bool
    upper: RGB
    upper_second: RGB
    pattern: Literal["plain", "stripes", "checks"]
    long_sleeves: bool
    lower: RGB
    lower_kind: Literal["trousers", "shorts", "skirt"]
    shoes: RGB
    hat: RGB | None
    glasses: RGB | None
    beard: bool
    bag: Literal["none", "backpack", "handbag", "rolling"]
    bag_colour: RGB


def _pick(rng: np.random.Generator, options: list[int], weights: list[float] | None = None) -> int:
    p = None if weights is None else np.asarray(weights, dtype=float) / np.sum(weights)
    return int(rng.choice(options, p=p))


def draw_appearance(rng: np.random.Generator) -> Appearance:
    """Draw attributes first, then a look consistent with them."""
    gender = _pick(rng, [0, 1])
    age = _pick(rng, list(range(8)), [0.04, 0.06, 0.2, 0.25, 0.18, 0.12, 0.1, 0.05])
    height = 0 if age == 0 else _pick(rng, [1, 2, 3], [0.3, 0.45, 0.25] if gender else [0.2, 0.45, 0.35])
    body_volume = _pick(rng, [0, 1, 2], [0.3, 0.5, 0.2])
    ethnicity = _pick(rng, [0, 1, 2, 3])
    hair_color = _pick(
        rng, [0, 1, 2, 3, 4], [0.45, 0.3, 0.05, 0.08, 0.12] if age < 6 else [0.1, 0.1, 0.4, 0.0, 0.4]
    )
    hairstyle = _pick(
        rng, [0, 1, 2, 3, 4], [0.02, 0.15, 0.28, 0.35, 0.2] if gender else [0.1, 0.6, 0.22, 0.06, 0.02]
    )
    adult_male = gender == 0 and age >= 3
    beard = 0 if adult_male and rng.random() < 0.3 else 1
    moustache = 0 if beard == 0 or (adult_male and rng.random() < 0.15) else 1
    glasses = _pick(rng, [0, 1, 2], [0.15, 0.1, 0.75])
    head_accessories = _pick(rng, [0, 1, 2, 4], [0.2, 0.08, 0.07, 0.65])
    upper_type = _pick(rng, list(range(12)))
    lower_type = _pick(rng, list(range(9)), [3, 2, 1.5 if gender else 0.2, 1, 1, 1, 1, 1, 0.5])
    footwear = _pick(rng, [0, 1, 2, 3, 4], [0.45, 0.25, 0.1 if gender else 0.0, 0.12, 0.08])
    accessories = _pick(
        rng, list(range(8)), [0.12, 0.18, 0.14 if gender else 0.03, 0.05, 0.03, 0.07, 0.05, 0.35]
    )
    attributes = {
        "gender": gender,
        "age": age,
        "height": height,
        "body_volume": body_volume,
        "ethnicity": ethnicity,
        "hair_color": hair_color,
        "hairstyle": hairstyle,
        "beard": beard,
        "moustache": moustache,
        "glasses": glasses,
        "head_accessories": head_accessories,
        "upper_body_clothing": upper_type,
        "lower_body_clothing": lower_type,
        "footwear": footwear,
        "accessories": accessories,
    }
    upper, second = (_COLOURS[i] for i in rng.choice(len(_COLOURS), size=2, replace=False))
    lower_kind: Literal["trousers", "shorts", "skirt"] = (
        "skirt" if lower_type == 2 else "shorts" if lower_type in (3, 4) else "trousers"
    )
    bag_kind: Literal["none", "backpack", "handbag", "rolling"] = {
        0: "handbag",
        1: "backpack",
        2: "handbag",
        3: "rolling",
        5: "backpack",
        6: "handbag",
    }.get(accessories, "none")  # type: ignore[assignment]
    return Appearance(
        attributes=attributes,
        height_factor=(0.62, 0.86, 0.93, 1.0)[height] * rng.uniform(0.97, 1.03),
        width_factor=(0.82, 1.0, 1.28)[body_volume] * rng.uniform(0.95, 1.05),
        skin=SKIN_TONES[ethnicity],
        hair=None if hairstyle == 0 else HAIR_COLOURS[hair_color],
        hair_length=(0.0, 0.25, 0.5, 0.9, 0.4)[hairstyle],
        ponytail=hairstyle == 4,
        upper=upper,
        upper_second=second,
        pattern=("plain", "stripes", "checks")[_pick(rng, [0, 1, 2], [0.55, 0.3, 0.15])],  # type: ignore[arg-type]
        long_sleeves=upper_type % 2 == 1,
        lower=_COLOURS[int(rng.integers(len(_COLOURS)))],
        lower_kind=lower_kind,
        shoes=_COLOURS[int(rng.integers(len(_COLOURS)))],
        hat=_COLOURS[int(rng.integers(len(_COLOURS)))] if head_accessories == 0 else None,
        glasses=(40, 40, 40) if glasses == 1 else (150, 150, 160) if glasses == 0 else None,
        beard=beard == 0,
        bag=bag_kind,
        bag_colour=_COLOURS[int(rng.integers(len(_COLOURS)))],
    )


def _bounds(box: list[float]) -> list[int]:
    """Integer pixel bounds with x1 >= x0 and y1 >= y0 (tiny figures can produce inverted float boxes)."""
    x0, y0, x1, y1 = (round(v) for v in box)
    return [x0, y0, max(x0, x1), max(y0, y1)]


def _rect(draw: ImageDraw.ImageDraw, box: list[float], fill: RGB) -> None:
    draw.rectangle(_bounds(box), fill=fill)


def render_person(look: Appearance, height: int, width: int, phase: int, background: RGB) -> Image.Image:
    """Draw a full-body front view of ``look`` on a (height x width) canvas; ``phase`` (0/1) is the gait."""
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    figure = height * 0.94 * look.height_factor
    top = height - 2 - figure
    centre = width / 2
    head_r = figure * 0.075
    torso_w = width * 0.34 * look.width_factor
    neck_y = top + 2 * head_r
    hip_y = top + figure * 0.52
    foot_y = top + figure
    stride = figure * 0.06 * (1 if phase else -1)

    # legs and lower clothing
    leg_w = torso_w * 0.42
    for side, swing in ((-1, stride), (1, -stride)):
        x = centre + side * torso_w * 0.24 + swing * 0.4
        cover_end = hip_y + (foot_y - hip_y) * (0.45 if look.lower_kind != "trousers" else 0.95)
        _rect(draw, [x - leg_w / 2, hip_y, x + leg_w / 2, foot_y], fill=look.skin)
        _rect(draw, [x - leg_w / 2, hip_y, x + leg_w / 2, cover_end], fill=look.lower)
        _rect(draw, [x - leg_w / 2 - 1, foot_y - figure * 0.035, x + leg_w / 2 + 1, foot_y], fill=look.shoes)
    if look.lower_kind == "skirt":
        skirt = [
            (centre - torso_w * 0.5, hip_y),
            (centre + torso_w * 0.5, hip_y),
            (centre + torso_w * 0.75, hip_y + (foot_y - hip_y) * 0.5),
            (centre - torso_w * 0.75, hip_y + (foot_y - hip_y) * 0.5),
        ]
        draw.polygon(skirt, fill=look.lower)

    # rolling bag beside the legs, backpack behind the torso (visible at the sides)
    if look.bag == "rolling":
        _rect(
            draw,
            [centre + torso_w * 0.7, hip_y + figure * 0.12, centre + torso_w * 1.2, foot_y],
            fill=look.bag_colour,
        )
    if look.bag == "backpack":
        _rect(
            draw,
            [centre - torso_w * 0.62, neck_y + figure * 0.04, centre + torso_w * 0.62, hip_y - figure * 0.05],
            fill=look.bag_colour,
        )

    # torso with pattern
    box = [centre - torso_w / 2, neck_y, centre + torso_w / 2, hip_y]
    _rect(draw, box, fill=look.upper)
    if look.pattern == "stripes":
        step = max(2.0, (hip_y - neck_y) / 6)
        y = neck_y + step / 2
        while y < hip_y:
            _rect(draw, [box[0], y, box[2], min(hip_y, y + step / 2)], fill=look.upper_second)
            y += step
    elif look.pattern == "checks":
        step = max(2.0, torso_w / 3)
        for i, x in enumerate(np.arange(box[0], box[2], step)):
            for j, y in enumerate(np.arange(neck_y, hip_y, step)):
                if (i + j) % 2:
                    _rect(draw, [x, y, min(box[2], x + step), min(hip_y, y + step)], fill=look.upper_second)

    # arms (sleeves in the upper colour, forearms skin unless long sleeves), swinging against the legs
    arm_w = torso_w * 0.22
    for side, swing in ((-1, -stride), (1, stride)):
        x = centre + side * (torso_w / 2 + arm_w / 2)
        elbow = neck_y + (hip_y - neck_y) * 0.55
        hand = hip_y + figure * 0.05 + swing * 0.3
        _rect(draw, [x - arm_w / 2, neck_y, x + arm_w / 2, hand], fill=look.skin)
        _rect(
            draw,
            [x - arm_w / 2, neck_y, x + arm_w / 2, hand if look.long_sleeves else elbow],
            fill=look.upper,
        )
    if look.bag == "handbag":
        _rect(
            draw,
            [centre + torso_w * 0.55, hip_y - figure * 0.02, centre + torso_w * 0.95, hip_y + figure * 0.1],
            fill=look.bag_colour,
        )

    # head, hair, beard, glasses, hat
    head = [centre - head_r, top, centre + head_r, top + 2 * head_r]
    if look.hair is not None and look.hair_length > 0.6:
        _rect(
            draw,
            [
                centre - head_r * 1.15,
                top + head_r * 0.4,
                centre + head_r * 1.15,
                neck_y + figure * look.hair_length * 0.18,
            ],
            fill=look.hair,
        )
    draw.ellipse(_bounds(head), fill=look.skin)
    if look.hair is not None:
        draw.chord(
            _bounds([head[0] - 1, top - 1, head[2] + 1, top + 2 * head_r * (0.8 + look.hair_length * 0.3)]),
            180,
            360,
            fill=look.hair,
        )
        if look.ponytail:
            draw.ellipse(
                _bounds(
                    [centre + head_r * 0.6, top + head_r * 0.6, centre + head_r * 1.5, top + head_r * 2.2]
                ),
                fill=look.hair,
            )
    if look.beard:
        draw.chord(
            _bounds([head[0] + 1, top + head_r * 0.9, head[2] - 1, top + 2 * head_r]),
            0,
            180,
            fill=(60, 45, 35),
        )
    if look.glasses is not None:
        _rect(
            draw,
            [centre - head_r * 0.8, top + head_r * 0.8, centre + head_r * 0.8, top + head_r * 1.1],
            fill=look.glasses,
        )
    if look.hat is not None:
        _rect(
            draw,
            [centre - head_r * 1.2, top - head_r * 0.25, centre + head_r * 1.2, top + head_r * 0.55],
            fill=look.hat,
        )
    return image


@dataclass
class _TrackletPlan:
    true_id: int
    aerial: bool
    camera: int
    altitude_code: int
    name: str
    frames: int
    first_frame: int
    date: str
    person_number: int
    serial: int


@dataclass
class SynthSummary:
    """What was written: counts per split, frames, and the path of the dataset."""

    root: Path
    tracklets: dict[str, int] = field(default_factory=dict)
    identities: dict[str, int] = field(default_factory=dict)
    frames: int = 0
    seconds: float = 0.0


def _background(rng: np.random.Generator, aerial: bool) -> RGB:
    base = np.array((95, 105, 90) if aerial else (150, 150, 145), dtype=float)
    return tuple(int(v) for v in np.clip(base + rng.normal(0, 25, 3), 30, 230))  # type: ignore[return-value]


def _texture(rng: np.random.Generator, height: int, width: int, colour: RGB) -> np.ndarray:
    """A smooth random ground/wall texture around ``colour`` (noise at low resolution, upsampled)."""
    shape = (max(2, height // 8), max(2, width // 8))
    coarse = rng.normal(0, 18, (*shape, 1)) + rng.normal(0, 4, (*shape, 3))  # mostly luminance
    up = np.asarray(Image.fromarray(np.clip(coarse + 128, 0, 255).astype(np.uint8)).resize((width, height)))
    return np.clip(up.astype(np.float32) - 128 + np.asarray(colour, dtype=np.float32), 0, 255)


def _frames_of_tracklet(
    plan: _TrackletPlan, look: Appearance, config: SynthConfig, seed: int
) -> list[np.ndarray]:
    """Render every frame of one tracklet (pure function of its plan and the seed)."""
    rng = np.random.default_rng([seed, 2, plan.serial])
    background = _background(rng, plan.aerial)
    if plan.aerial:
        out_h = config.aerial_height_80m if plan.altitude_code == 2 else config.aerial_height_120m
        out_h = max(8, round(out_h * rng.uniform(0.85, 1.15)))
        out_w = max(6, round(out_h * rng.uniform(0.5, 0.62)))
        render_h, render_w = 96, 48
    else:
        scale = rng.uniform(0.8, 1.2)
        out_h, out_w = round(config.ground_size[0] * scale), round(config.ground_size[1] * scale)
        render_h, render_w = out_h, out_w
    margin = max(2, render_h // 16)
    poses = [
        np.asarray(
            render_person(look, render_h + 2 * margin, render_w + 2 * margin, phase, background), np.float32
        )
        for phase in (0, 1)
    ]
    texture = _texture(rng, render_h + 2 * margin, render_w + 2 * margin, background)
    masks = [
        np.any(np.abs(pose - np.asarray(background, np.float32)) > 1, axis=2, keepdims=True) for pose in poses
    ]
    poses = [np.where(mask, pose, texture) for pose, mask in zip(poses, masks, strict=True)]
    tint = np.asarray(_CAMERA_TINT[plan.camera], np.float32)
    brightness = rng.uniform(0.65, 1.3)
    foreshorten = rng.uniform(0.55, 0.75) if plan.aerial else 1.0
    blur = rng.uniform(0.5, 1.1) if plan.aerial else rng.uniform(0.0, 0.4)
    occluder = None
    if rng.random() < config.occlusion_p:
        vertical = rng.random() < 0.5
        colour = np.asarray(_COLOURS[int(rng.integers(len(_COLOURS)))], np.float32)
        extent = rng.uniform(0.15, 0.35)
        start = rng.uniform(0.0, 1.0 - extent)
        drift = rng.uniform(-0.02, 0.02)
        occluder = (vertical, colour, extent, start, drift)
    phase_offset = int(rng.integers(2))
    frames: list[np.ndarray] = []
    for t in range(plan.frames):
        pose = poses[(t // 2 + phase_offset) % 2]
        dy, dx = (int(v) for v in rng.integers(-margin // 2, margin // 2 + 1, size=2))
        crop = pose[margin + dy : margin + dy + render_h, margin + dx : margin + dx + render_w]
        image = Image.fromarray(crop.astype(np.uint8))
        if plan.aerial:
            # seen from above: the body squashes vertically; then pad back to a person-box aspect
            squashed = image.resize(
                (render_w, max(4, round(render_h * foreshorten))), Image.Resampling.BILINEAR
            )
            canvas = Image.fromarray(texture[:render_h, :render_w].astype(np.uint8))
            canvas.paste(squashed, (0, render_h - squashed.height))
            image = canvas
        jitter = rng.uniform(0.94, 1.06)
        size = (max(4, round(out_w * jitter)), max(4, round(out_h * jitter)))
        if blur > 0.05:
            image = image.filter(ImageFilter.GaussianBlur(blur * render_h / out_h if plan.aerial else blur))
        array = np.asarray(image.resize(size, Image.Resampling.BILINEAR), np.float32)
        array = array * tint * brightness * rng.uniform(0.92, 1.08)
        if occluder is not None:
            vertical, colour, extent, start, drift = occluder
            begin = start + drift * t
            length = array.shape[1] if vertical else array.shape[0]
            lo, hi = int(max(0.0, begin) * length), int(min(1.0, begin + extent) * length)
            if vertical:
                array[:, lo:hi] = colour
            else:
                array[lo:hi, :] = colour
        array += rng.normal(0, 5.0, array.shape)
        frames.append(np.clip(array, 0, 255).astype(np.uint8))
    return frames


def _annotate(look: Appearance, rng: np.random.Generator, config: SynthConfig) -> dict[str, int]:
    """Attribute codes as an annotator wrote them: some unknown, a few out of range (as in the real files)."""
    written = {}
    for name in ATTRIBUTE_NAMES:
        value = look.attributes[name]
        draw = rng.random()
        if draw < config.corrupt_attribute_p:
            value = UNKNOWN_CODE[name] + 1
        elif draw < config.corrupt_attribute_p + config.unknown_attribute_p:
            value = UNKNOWN_CODE[name]
        written[name] = value
    return written


def _ground_code(rng: np.random.Generator, used: set[str]) -> str:
    alphabet = np.array(list(string.ascii_letters + string.digits))
    while True:
        code = "".join(rng.choice(alphabet, size=6))
        if code not in used:
            used.add(code)
            return code


def check_output_folder(out: Path | str, *, overwrite: bool) -> Path:
    """``out`` as a Path, if a generator may write there: a missing or empty folder, or any folder with
    ``overwrite``; else :class:`DataError` naming it."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError("output path exists and is not a folder", path=out)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DataError("output folder is not empty (use --overwrite to replace it)", path=out)
    return out


def generate_dataset(
    out: Path | str,
    config: SynthConfig | None = None,
    *,
    overwrite: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> SynthSummary:
    """Write a synthetic dataset to ``out``; returns counts. ``on_progress(done, total)`` per tracklet.

    Refuses a non-empty ``out`` unless ``overwrite``; an interrupted run leaves ``out`` untouched.
    """
    started = time.perf_counter()
    config = config or SynthConfig()
    out = check_output_folder(out, overwrite=overwrite)
    rng = np.random.default_rng([config.seed, 0])

    n_train, n_test, n_distractor = config.train_ids, config.test_ids, config.distractor_ids
    identities = list(range(1, n_train + n_test + n_distractor + 1))
    looks = {pid: draw_appearance(np.random.default_rng([config.seed, 1, pid])) for pid in identities}
    train_ids = identities[:n_train]
    test_ids = identities[n_train : n_train + n_test]
    distractors = identities[n_train + n_test :]

    # plan tracklets: every identity gets aerial and ground tracklets (distractors: aerial only)
    serial = 0
    used_codes: set[str] = set()
    plans: dict[int, list[_TrackletPlan]] = {}
    for pid in identities:
        plans[pid] = []
        date = _DATES[int(rng.integers(len(_DATES)))]
        person_number = int(rng.integers(1, 200))
        platforms = (True,) if pid in distractors else (True, False)
        for aerial in platforms:
            low, high = config.tracklets_per_platform
            for _ in range(int(rng.integers(low, high + 1))):
                serial += 1
                camera = int(rng.choice(AERIAL_CAMERAS if aerial else GROUND_CAMERAS))
                plans[pid].append(
                    _TrackletPlan(
                        true_id=pid,
                        aerial=aerial,
                        camera=camera,
                        altitude_code=int(rng.choice([2, 3])) if aerial else 2,
                        name=f"tracklet_{serial}" if aerial else _ground_code(rng, used_codes),
                        frames=int(rng.integers(config.frames[0], config.frames[1] + 1)),
                        first_frame=int(rng.integers(100, 9000)),
                        date=date,
                        person_number=person_number,
                        serial=serial,
                    )
                )

    # which tracklets go to which split (test tracklets appear in two splits, as in the release)
    split_members: dict[str, list[_TrackletPlan]] = {split: [] for split in SPLIT_DIRS}
    for pid in train_ids:
        split_members["train"].extend(plans[pid])
    for pid in test_ids:
        aerial = [p for p in plans[pid] if p.aerial]
        ground = [p for p in plans[pid] if not p.aerial]
        split_members["case1_query"].extend(aerial)
        split_members["case1_gallery"].extend(ground)
        split_members["case2_query"].extend(ground)
        split_members["case2_gallery"].extend(aerial)
    for pid in distractors:
        split_members["case2_gallery"].extend(plans[pid])

    # folder ids: identities in train; per-split random permutations in masked test splits
    folder_of: dict[str, dict[int, int]] = {"train": {pid: pid for pid in train_ids}}
    for split in list(SPLIT_DIRS)[1:]:
        members = sorted({p.true_id for p in split_members[split]})
        if config.id_mode == "true":
            folder_of[split] = {pid: pid for pid in members}
        else:
            masked = rng.permutation(len(members)) + 1
            folder_of[split] = {pid: int(m) for pid, m in zip(members, masked, strict=True)}

    total = sum(len(members) for members in split_members.values())
    summary = SynthSummary(root=out)
    with staged_folder(out, str(config.seed)) as staging:
        rendered: dict[int, list[np.ndarray]] = {}
        done = 0
        true_rows: list[tuple[str, int, str, int]] = []
        for split, members in split_members.items():
            for plan in members:
                if plan.serial not in rendered:
                    rendered[plan.serial] = _frames_of_tracklet(
                        plan, looks[plan.true_id], config, config.seed
                    )
                folder_id = folder_of[split][plan.true_id]
                folder = staging / SPLIT_DIRS[split] / str(folder_id) / plan.name
                folder.mkdir(parents=True, exist_ok=True)
                for t, frame in enumerate(rendered[plan.serial]):
                    name = format_frame_name(
                        person=plan.person_number,
                        date=plan.date + "1",
                        altitude_code=plan.altitude_code,
                        camera=plan.camera,
                        e_ref=100 + plan.serial % 900,
                        k_ref=plan.serial % 10,
                        frame=plan.first_frame + 3 * t,
                    )
                    Image.fromarray(frame).save(folder / name, quality=config.jpeg_quality)
                summary.frames += len(rendered[plan.serial])
                if split != "train":
                    true_rows.append((split, folder_id, plan.name, plan.true_id))
                done += 1
                if on_progress is not None:
                    on_progress(done, total)
            summary.tracklets[split] = len(members)
            summary.identities[split] = len({p.true_id for p in members})
            # attribute rows are per folder id, annotated once per identity (consistent across splits)
            annotations = {
                folder_of[split][pid]: _annotate(
                    looks[pid], np.random.default_rng([config.seed, 3, pid]), config
                )
                for pid in {p.true_id for p in members}
            }
            write_attribute_csv(staging / ATTRIBUTE_FILES[split], annotations)
        if config.write_true_ids:
            with (staging / TRUE_IDS_FILE).open("w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(["split", "folder_id", "tracklet", "true_id"])
                writer.writerows(true_rows)
    summary.seconds = time.perf_counter() - started
    return summary
