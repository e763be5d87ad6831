"""Identity-disjoint validation split carved from the training identities, and the retrieval views on it.

Hyper-parameters are selected on this split, never on the test folders (whose ids are masked in the public
release). The split is a pure function of (dataset index, seed, fraction): the same inputs give the same
split on any machine, and :meth:`ValidationSplit.save` stores it next to each run so a result can always be
traced back to the identities it was measured on.

Only identities seen from both an aerial and a ground camera can serve both directions, so validation ids
are drawn from those. Views:

- ``a2g``: query = aerial tracklets of the validation ids, gallery = their ground tracklets;
- ``g2a``: query = ground tracklets, gallery = aerial tracklets.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from trainers.data.index import DatasetIndex, Tracklet
from trainers.data.layout import PROTOCOL_CASES
from trainers.errors import DataError

DEFAULT_VAL_FRACTION = 0.1


@dataclass(frozen=True)
class ValidationSplit:
    """Which training identities train and which validate. Immutable; JSON round-trips exactly."""

    seed: int
    fraction: float
    index_fingerprint: str
    train_pids: tuple[int, ...]
    val_pids: tuple[int, ...]

    def save(self, path: Path | str) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path | str) -> ValidationSplit:
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls(
                seed=int(raw["seed"]),
                fraction=float(raw["fraction"]),
                index_fingerprint=str(raw["index_fingerprint"]),
                train_pids=tuple(int(p) for p in raw["train_pids"]),
                val_pids=tuple(int(p) for p in raw["val_pids"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise DataError(f"not a validation split file ({error})", path=path) from None


@dataclass(frozen=True)
class RetrievalView:
    """A query set searched against a gallery set (one direction of the protocol)."""

    name: str
    query: tuple[Tracklet, ...]
    gallery: tuple[Tracklet, ...]


def make_validation_split(
    index: DatasetIndex, *, seed: int = 0, fraction: float = DEFAULT_VAL_FRACTION
) -> ValidationSplit:
    """Draw ``round(fraction * n_train_ids)`` validation identities (at least 1) among those with both
    aerial and ground tracklets. Raises ``ValueError`` for a fraction outside (0, 1) and
    :class:`DataError` when too few identities qualify."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction is {fraction}, but must be in (0, 1)")
    platforms: dict[int, set[bool]] = defaultdict(set)
    for tracklet in index.split("train"):
        platforms[tracklet.pid].add(tracklet.is_aerial)
    all_pids = sorted(platforms)
    if len(all_pids) < 2:
        raise DataError("train split needs >= 2 identities to carve a validation split", path=index.root)
    eligible = [pid for pid in all_pids if platforms[pid] == {True, False}]
    wanted = max(1, round(fraction * len(all_pids)))
    if len(eligible) < wanted or wanted >= len(all_pids):
        raise DataError(
            f"validation needs {wanted} identities seen from both aerial and ground cameras, "
            f"only {len(eligible)} of {len(all_pids)} qualify",
            path=index.root,
        )
    rng = np.random.default_rng(seed)
    chosen = sorted(int(pid) for pid in rng.choice(np.asarray(eligible), size=wanted, replace=False))
    chosen_set = set(chosen)
    return ValidationSplit(
        seed=seed,
        fraction=fraction,
        index_fingerprint=index.fingerprint(),
        train_pids=tuple(pid for pid in all_pids if pid not in chosen_set),
        val_pids=tuple(chosen),
    )


def check_split_matches(index: DatasetIndex, split: ValidationSplit) -> None:
    """Refuse a saved split made for a different dataset (its fingerprint differs)."""
    if split.index_fingerprint != index.fingerprint():
        raise DataError(
            f"validation split was made for dataset {split.index_fingerprint}, "
            f"this one is {index.fingerprint()}",
            path=index.root,
        )


def training_tracklets(index: DatasetIndex, split: ValidationSplit) -> tuple[Tracklet, ...]:
    """What trains: the AG-VPReID train tracklets of ``split.train_pids``, then every tracklet of the extra
    sources (their renumbered ids never collide with AG-VPReID's and never validate)."""
    train = set(split.train_pids)
    return tuple(t for t in index.split("train") if t.pid in train) + index.extra_tracklets


def identity_subset(
    tracklets: Sequence[Tracklet], fraction: float, *, seed: int, min_ids: int = 1
) -> tuple[Tracklet, ...]:
    """The tracklets of ``fraction`` of the identities (ceil, at least ``min_ids``): the first ones of a
    seeded permutation of the sorted ids, so subsets are nested (a larger fraction keeps every identity of a
    smaller one) and the same for every configuration trained with the same seed."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction is {fraction}, but must be in (0, 1]")
    if fraction == 1.0:
        return tuple(tracklets)
    pids = sorted({t.pid for t in tracklets})
    order = np.random.default_rng(seed).permutation(len(pids))
    count = min(len(pids), max(min_ids, math.ceil(fraction * len(pids))))
    keep = {pids[i] for i in order[:count]}
    return tuple(t for t in tracklets if t.pid in keep)


def validation_views(index: DatasetIndex, split: ValidationSplit) -> dict[str, RetrievalView]:
    """The A2G and G2A views of the validation identities."""
    val = set(split.val_pids)
    tracklets = [t for t in index.split("train") if t.pid in val]
    aerial = tuple(t for t in tracklets if t.is_aerial)
    ground = tuple(t for t in tracklets if not t.is_aerial)
    return {
        "a2g": RetrievalView("a2g", query=aerial, gallery=ground),
        "g2a": RetrievalView("g2a", query=ground, gallery=aerial),
    }


def protocol_views(index: DatasetIndex) -> dict[str, RetrievalView]:
    """The challenge protocol: case 1 (A2G) and case 2 (G2A), for the splits present."""
    views = {}
    for name, (query, gallery) in PROTOCOL_CASES.items():
        if query in index.splits_present and gallery in index.splits_present:
            views[name] = RetrievalView(name, query=index.split(query), gallery=index.split(gallery))
    return views


def label_map(tracklets: Sequence[Tracklet]) -> dict[int, int]:
    """Folder ids -> contiguous class labels 0..N-1 (sorted by id), for classifier heads."""
    return {pid: label for label, pid in enumerate(sorted({t.pid for t in tracklets}))}
