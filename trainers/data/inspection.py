"""Summaries of a dataset folder for ``agvp-hpo data inspect``: counts per split, platform, altitude and
camera; frames per tracklet; attribute coverage; each extra training source's counts and identity range;
and every problem found (the scan does not stop at the first one)."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from trainers.data.attributes import ATTRIBUTE_NAMES, UNKNOWN_CODE
from trainers.data.index import DatasetIndex, ExtraSource, Problem, Tracklet


@dataclass
class SplitSummary:
    identities: int
    tracklets: int
    frames: int
    platforms: dict[str, int]
    altitudes: dict[str, int]
    cameras: dict[str, int]
    frames_per_tracklet: dict[str, float]
    #: attribute -> fraction of this split's identities whose code is known (not "unknown")
    attribute_known: dict[str, float] = field(default_factory=dict)
    attributes_coerced: int = 0
    identities_without_attributes: int = 0


@dataclass
class Counts:
    identities: int
    tracklets: int
    frames: int


@dataclass
class SourceSummary:
    """One extra training source: where it is, which ids it got, counts per split, platform and camera."""

    label: str
    root: str
    layout: str
    splits: list[str]
    first_pid: int
    last_pid: int
    total: Counts
    per_split: dict[str, Counts]
    platforms: dict[str, Counts]
    #: AG-VPReID camera (after mapping) -> tracklets
    cameras: dict[str, int]
    #: source camera label -> AG-VPReID camera id it was mapped to
    camera_map: dict[str, int]


@dataclass
class InspectionReport:
    root: str
    fingerprint: str
    test_ids: str
    splits: dict[str, SplitSummary]
    problems: list[Problem]
    sources: list[SourceSummary] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["problems"] = [asdict(p) for p in self.problems]
        data["problem_counts"] = dict(Counter(p.kind for p in self.problems))
        return data


def _frames_stats(lengths: list[int]) -> dict[str, float]:
    array = np.asarray(lengths)
    return {
        "min": int(array.min()),
        "median": float(np.median(array)),
        "mean": round(float(array.mean()), 2),
        "max": int(array.max()),
    }


def _counts(tracklets: list[Tracklet] | tuple[Tracklet, ...]) -> Counts:
    return Counts(
        identities=len({t.pid for t in tracklets}),
        tracklets=len(tracklets),
        frames=sum(len(t.frames) for t in tracklets),
    )


def summarise_source(source: ExtraSource) -> SourceSummary:
    tracklets = source.tracklets
    return SourceSummary(
        label=source.label,
        root=str(source.root),
        layout=source.layout,
        splits=list(source.splits),
        first_pid=source.first_pid,
        last_pid=source.last_pid,
        total=_counts(tracklets),
        per_split={s: _counts([t for t in tracklets if t.split == s]) for s in source.splits},
        platforms={
            p: _counts([t for t in tracklets if t.platform.value == p])
            for p in sorted({t.platform.value for t in tracklets})
        },
        cameras=dict(sorted(Counter(f"C{t.camera}" for t in tracklets).items())),
        camera_map=dict(source.cameras),
    )


def summarise(index: DatasetIndex, problems: list[Problem]) -> InspectionReport:
    splits: dict[str, SplitSummary] = {}
    for split in index.splits_present:
        tracklets = index.split(split)
        pids = {t.pid for t in tracklets}
        summary = SplitSummary(
            identities=len(pids),
            tracklets=len(tracklets),
            frames=sum(len(t.frames) for t in tracklets),
            platforms=dict(sorted(Counter(t.platform.value for t in tracklets).items())),
            altitudes=dict(
                sorted(
                    Counter(
                        f"{t.altitude_m} m" if t.altitude_m else "unknown" for t in tracklets if t.is_aerial
                    ).items()
                )
            ),
            cameras=dict(sorted(Counter(f"C{t.camera}" for t in tracklets).items())),
            frames_per_tracklet=_frames_stats([len(t.frames) for t in tracklets]),
        )
        table = index.attributes.get(split)
        if table is not None:
            summary.attributes_coerced = table.coerced_total
            summary.identities_without_attributes = sum(1 for pid in pids if pid not in table.rows)
            for name in ATTRIBUTE_NAMES:
                known = sum(1 for pid in pids if table.get(pid)[name] != UNKNOWN_CODE[name])
                summary.attribute_known[name] = round(known / len(pids), 3) if pids else 0.0
        else:
            summary.identities_without_attributes = len(pids)
        splits[split] = summary
    return InspectionReport(
        root=str(index.root),
        fingerprint=index.fingerprint(),
        test_ids=index.test_ids,
        splits=splits,
        problems=problems,
        sources=[summarise_source(source) for source in index.sources],
    )
