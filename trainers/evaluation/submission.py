"""The AG-VPReID challenge submission file.

Format (REFERENCE_REID.md, section 1): a CSV with the header ``row_id,query_tracklet,gallery_tracklets``
and one row per query; the last column lists gallery tracklet folder names separated by single spaces, best
first. Case 1 (aerial to ground) rows come first, then case 2 (ground to aerial): the writer keeps the order
of the cases it is given and the order of the queries within each case. ``row_id`` counts from 1 and runs on
across cases (the first case 2 row follows the last case 1 row), as in the organisers' sample file.

The leaderboard scored mAP@20 while the sample file lists 10 names, so ``top_k`` is a parameter.

The file is written atomically (:func:`trainers.atomic.atomic_write`): a reader (or an upload script) never
sees half a file, and a failure part-way leaves any earlier file untouched and no temporary file behind.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainers.atomic import atomic_write
from trainers.evaluation.distance import as_numpy

__all__ = ["SUBMISSION_HEADER", "SubmissionCase", "rank_gallery", "write_submission"]

SUBMISSION_HEADER: tuple[str, str, str] = ("row_id", "query_tracklet", "gallery_tracklets")

#: Rows of the distance matrix argsorted at a time in ``rank_gallery`` (bounds the int64 index temporary).
_RANK_CHUNK_ELEMENTS = 1 << 22


def _check_names(names: Sequence[str], what: str) -> tuple[str, ...]:
    """Names must be non-empty and free of whitespace and commas, or the CSV columns would be ambiguous."""
    result = tuple(names)
    for i, name in enumerate(result):
        if not isinstance(name, str) or not name or any(c.isspace() or c == "," for c in name):
            raise ValueError(
                f"{what}[{i}] is {name!r}, but tracklet names must be non-empty strings without whitespace "
                "or commas"
            )
    return result


@dataclass(frozen=True)
class SubmissionCase:
    """One test case of the submission: its queries, its gallery and the distances between them.

    Attributes:
        name: label of the case, e.g. ``"case1_aerial_to_ground"`` (used in error messages only).
        query_names: query tracklet folder names, in the order of ``distmat`` rows and of the output rows.
        gallery_names: gallery tracklet folder names, in the order of ``distmat`` columns.
        distmat: ``(len(query_names), len(gallery_names))`` finite distances, lower is better.
    """

    name: str
    query_names: tuple[str, ...]
    gallery_names: tuple[str, ...]
    distmat: np.ndarray

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name is {self.name!r}, but must be a non-empty string")
        # Frozen: normalise the fields through object.__setattr__ (lists become tuples, tensors arrays).
        query_names = _check_names(self.query_names, f"{self.name}.query_names")
        gallery_names = _check_names(self.gallery_names, f"{self.name}.gallery_names")
        if not gallery_names:
            raise ValueError(f"{self.name}.gallery_names is empty, but must hold at least one gallery item")
        object.__setattr__(self, "query_names", query_names)
        object.__setattr__(self, "gallery_names", gallery_names)
        dist = as_numpy(self.distmat, name=f"{self.name}.distmat")
        expected = (len(self.query_names), len(self.gallery_names))
        if dist.shape != expected:
            raise ValueError(
                f"{self.name}.distmat has shape {dist.shape}, but must be (len(query_names), "
                f"len(gallery_names)) = {expected}"
            )
        if not (np.issubdtype(dist.dtype, np.floating) or np.issubdtype(dist.dtype, np.integer)):
            raise ValueError(f"{self.name}.distmat has dtype {dist.dtype}, but must hold real numbers")
        if not np.isfinite(dist).all():
            raise ValueError(f"{self.name}.distmat contains NaN or infinite values, but must be finite")
        object.__setattr__(self, "distmat", dist)


def _check_top_k(top_k: int) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ValueError(f"top_k is {top_k!r}, but must be an integer >= 1")


def rank_gallery(distmat: Any, gallery_names: Sequence[str], top_k: int) -> list[list[str]]:
    """The ``top_k`` closest gallery names of every query row, best first.

    Ties are broken by gallery order (a stable sort), so the same distances always give the same file.
    Returns fewer than ``top_k`` names per row when the gallery is smaller.
    """
    _check_top_k(top_k)
    dist = as_numpy(distmat, name="distmat")
    if dist.ndim != 2 or dist.shape[1] != len(gallery_names):
        raise ValueError(
            f"distmat has shape {dist.shape}, but must be 2-D with one column per gallery name "
            f"({len(gallery_names)})"
        )
    if not np.isfinite(dist).all():
        raise ValueError("distmat contains NaN or infinite values, but must be finite")
    names = np.asarray(list(gallery_names), dtype=object)
    keep = min(int(top_k), dist.shape[1])
    step = max(1, _RANK_CHUNK_ELEMENTS // max(dist.shape[1], 1))
    ranked: list[list[str]] = []
    for start in range(0, dist.shape[0], step):
        order = np.argsort(dist[start : start + step], axis=1, kind="stable")[:, :keep]
        ranked.extend(names[order].tolist())
    return ranked


def write_submission(
    path: str | os.PathLike[str], cases: Sequence[SubmissionCase], *, top_k: int = 10
) -> Path:
    """Write the submission CSV for ``cases`` (in the given order: case 1 A2G first) to ``path`` atomically.

    ``row_id`` starts at 1 and continues across cases. Returns the path written. On any error the
    destination is left as it was (absent, or the previous file) and the temporary file is removed.

    Raises:
        ValueError: ``top_k < 1`` or no cases.
        TypeError: an element of ``cases`` is not a :class:`SubmissionCase`.
    """
    _check_top_k(top_k)
    if len(cases) == 0:
        raise ValueError("cases is empty, but a submission needs at least one test case")
    destination = Path(path)
    for position, case in enumerate(cases):
        if not isinstance(case, SubmissionCase):
            raise TypeError(f"cases[{position}] is a {type(case).__name__}, but must be a SubmissionCase")

    def write(temporary: Path) -> None:
        with temporary.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(SUBMISSION_HEADER)
            row_id = 1
            # Cases are ranked while writing, one at a time, so only one case's index matrix is in memory.
            for case in cases:
                ranked = rank_gallery(case.distmat, case.gallery_names, top_k)
                for query_name, gallery in zip(case.query_names, ranked, strict=True):
                    writer.writerow((row_id, query_name, " ".join(gallery)))
                    row_id += 1

    atomic_write(destination, write, mode=0o644)  # a submission is meant to be read by others
    return destination
