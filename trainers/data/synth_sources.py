"""Small synthetic datasets in the layouts of the extra training sources (``g2a-vreid``, ``generic``), so
their readers are tested end to end. People are drawn and rendered as in :mod:`trainers.data.synth`
(same :class:`SynthConfig`; attribute and test-id options do not apply: these layouts carry neither).

Every identity has ground and aerial tracklets. ``g2a-vreid``: train identities in ``bbox_train``; test
identities' ground tracklets are the queries, their aerial ones plus the distractors' the gallery, and one
junk tracklet (identity -1, skipped by readers) is listed too; camera 1 ground, 2 UAV. ``generic``: splits
``train`` and ``test`` (test and distractor identities), identity folders ``p<id>``, frames
``frame_<n>.jpg`` (numbers unpadded, to exercise natural ordering), cameras ``cam_a`` (cctv), ``body_1``
(wearable) and ``uav_1`` (aerial). Everything is a pure function of the seed; the folder appears atomically.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from trainers.atomic import staged_folder
from trainers.data.layout import (
    G2A_FRAME_DIRS,
    G2A_NAME_FILES,
    G2A_QUERY_FILE,
    G2A_TRACK_FILES,
    GENERIC_COLUMNS,
    GENERIC_TRACKLETS_FILE,
)
from trainers.data.matfile import write_mat
from trainers.data.synth import (
    SynthConfig,
    SynthSummary,
    _frames_of_tracklet,
    _TrackletPlan,
    check_output_folder,
    draw_appearance,
)

#: Rendering camera (AG-VPReID id, for the colour cast) per platform of a synthetic extra source.
_RENDER_CAMERA = {"cctv": 0, "wearable": 2, "aerial": 4}
_GENERIC_CAMERAS = {"cctv": "cam_a", "wearable": "body_1", "aerial": "uav_1"}
#: Serial numbers of these tracklets start here, so their per-tracklet draws differ from an AG-VPReID
#: synthetic dataset made with the same seed.
_SERIAL_BASE = 1_000_000


_Plans = dict[int, list[tuple[str, _TrackletPlan]]]


def _plans(config: SynthConfig) -> _Plans:
    """Identity -> (platform, plan) of each of its tracklets; distractors (the last ids) are aerial only."""
    rng = np.random.default_rng([config.seed, 20])
    total = config.train_ids + config.test_ids + config.distractor_ids
    plans: _Plans = {}
    serial = _SERIAL_BASE
    for pid in range(1, total + 1):
        plans[pid] = []
        distractor = pid > config.train_ids + config.test_ids
        for aerial in (True,) if distractor else (True, False):
            low, high = config.tracklets_per_platform
            for _ in range(int(rng.integers(low, high + 1))):
                serial += 1
                platform = "aerial" if aerial else ("cctv", "wearable")[int(rng.integers(2))]
                plans[pid].append(
                    (
                        platform,
                        _TrackletPlan(
                            true_id=pid,
                            aerial=aerial,
                            camera=_RENDER_CAMERA[platform],
                            altitude_code=2,
                            name=f"t{serial - _SERIAL_BASE}",
                            frames=int(rng.integers(config.frames[0], config.frames[1] + 1)),
                            first_frame=1,
                            date="",
                            person_number=pid,
                            serial=serial,
                        ),
                    )
                )
    return plans


def _write_g2a(
    staging: Path, config: SynthConfig, plans: _Plans, summary: SynthSummary, progress: Callable[[], None]
) -> None:
    looks = {pid: draw_appearance(np.random.default_rng([config.seed, 21, pid])) for pid in plans}
    names: dict[str, list[str]] = {"train": [], "test": []}
    rows: dict[str, list[list[int]]] = {"train": [], "test": []}
    queries: list[int] = []
    counts: dict[str, set[int]] = {"train": set(), "query": set(), "gallery": set()}
    tracklets: dict[str, int] = {"train": 0, "query": 0, "gallery": 0}
    for pid, items in plans.items():
        group = "train" if pid <= config.train_ids else "test"
        for number, (_, plan) in enumerate(items, start=1):
            camera_id = 2 if plan.aerial else 1
            frames = _frames_of_tracklet(plan, looks[pid], config, config.seed)
            folder = staging / G2A_FRAME_DIRS[group] / f"{pid:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            first = len(names[group]) + 1
            for t, frame in enumerate(frames, start=1):
                name = f"{pid:04d}C{camera_id}T{number:04d}F{t:03d}.jpg"
                Image.fromarray(frame).save(folder / name, quality=config.jpeg_quality)
                names[group].append(name)
            rows[group].append([first, len(names[group]), pid, camera_id])
            split = "train" if group == "train" else "gallery" if plan.aerial else "query"
            if split == "query":
                queries.append(len(rows["test"]))
            counts[split].add(pid)
            tracklets[split] += 1
            summary.frames += len(frames)
            progress()
    # a junk tracklet (identity -1) in the test table, as MARS-style releases have; readers skip it
    junk = staging / G2A_FRAME_DIRS["test"] / "00-1"
    junk.mkdir(parents=True, exist_ok=True)
    first = len(names["test"]) + 1
    for t in range(1, 3):
        name = f"00-1C2T0001F{t:03d}.jpg"
        Image.new("RGB", (16, 32), (90, 90, 90)).save(junk / name)
        names["test"].append(name)
    rows["test"].append([first, len(names["test"]), -1, 2])
    for group in ("train", "test"):
        (staging / G2A_NAME_FILES[group]).parent.mkdir(parents=True, exist_ok=True)
        (staging / G2A_NAME_FILES[group]).write_text("\n".join(names[group]) + "\n", encoding="utf-8")
        path, key = G2A_TRACK_FILES[group]
        write_mat(staging / path, {key: np.asarray(rows[group], dtype=np.float64).reshape(-1, 4)})
    write_mat(staging / G2A_QUERY_FILE[0], {G2A_QUERY_FILE[1]: np.asarray(queries, dtype=np.float64)})
    summary.tracklets = tracklets
    summary.identities = {split: len(pids) for split, pids in counts.items()}


def _write_generic(
    staging: Path, config: SynthConfig, plans: _Plans, summary: SynthSummary, progress: Callable[[], None]
) -> None:
    looks = {pid: draw_appearance(np.random.default_rng([config.seed, 22, pid])) for pid in plans}
    staging.mkdir(parents=True, exist_ok=True)
    csv_rows: list[tuple[str, str, str, str, str]] = []
    counts: dict[str, set[int]] = {"train": set(), "test": set()}
    tracklets: dict[str, int] = {"train": 0, "test": 0}
    for pid, items in plans.items():
        split = "train" if pid <= config.train_ids else "test"
        for platform, plan in items:
            folder = staging / split / f"p{pid:03d}" / plan.name
            folder.mkdir(parents=True, exist_ok=True)
            frames = _frames_of_tracklet(plan, looks[pid], config, config.seed)
            for t, frame in enumerate(frames, start=1):
                Image.fromarray(frame).save(folder / f"frame_{t}.jpg", quality=config.jpeg_quality)
            csv_rows.append((split, f"p{pid:03d}", plan.name, _GENERIC_CAMERAS[platform], platform))
            counts[split].add(pid)
            tracklets[split] += 1
            summary.frames += len(frames)
            progress()
    with (staging / GENERIC_TRACKLETS_FILE).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(GENERIC_COLUMNS)
        writer.writerows(csv_rows)
    summary.tracklets = tracklets
    summary.identities = {split: len(pids) for split, pids in counts.items()}


_WRITERS: dict[str, Callable[[Path, SynthConfig, _Plans, SynthSummary, Callable[[], None]], None]] = {
    "g2a-vreid": _write_g2a,
    "generic": _write_generic,
}


def generate_source(
    out: Path | str,
    layout: str,
    config: SynthConfig | None = None,
    *,
    overwrite: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> SynthSummary:
    """Write a synthetic dataset in ``layout`` (``g2a-vreid`` or ``generic``) to ``out``; returns counts.

    Refuses a non-empty ``out`` unless ``overwrite``; an interrupted run leaves ``out`` untouched.
    """
    if layout not in _WRITERS:
        raise ValueError(f"layout is {layout!r}, but must be one of {', '.join(_WRITERS)}")
    started = time.perf_counter()
    config = config or SynthConfig()
    out = check_output_folder(out, overwrite=overwrite)
    plans = _plans(config)
    total = sum(len(items) for items in plans.values())
    done = 0

    def progress() -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            on_progress(done, total)

    summary = SynthSummary(root=out)
    with staged_folder(out, str(config.seed)) as staging:
        _WRITERS[layout](staging, config, plans, summary, progress)
    summary.seconds = time.perf_counter() - started
    return summary
