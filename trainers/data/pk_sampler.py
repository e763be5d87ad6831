"""PK batch sampling: each batch holds P identities x K tracklets (the batch-hard triplet loss needs it).

Per epoch (as in the strong ReID baselines): every identity's tracklets are shuffled and cut into groups of
K; an identity with fewer than K tracklets is resampled with replacement to K; then batches are formed by
drawing P identities that still have groups left, until fewer than P remain. An epoch therefore sees
(almost) every tracklet once.

Randomness is a pure function of (seed, epoch): :meth:`PKSampler.set_epoch` is the whole sampler state,
which is what makes exact resume possible.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class PKSampler(Sampler[list[int]]):
    """Batch sampler over dataset indices; ``labels[i]`` is the identity of item i."""

    def __init__(self, labels: Sequence[int], *, p: int, k: int, seed: int = 0) -> None:
        if p < 2:
            raise ValueError(f"p (identities per batch) is {p}, but must be >= 2")
        if k < 1:
            raise ValueError(f"k (tracklets per identity) is {k}, but must be >= 1")
        by_id: dict[int, list[int]] = defaultdict(list)
        for index, label in enumerate(labels):
            by_id[int(label)].append(index)
        if len(by_id) < p:
            raise ValueError(f"p is {p}, but the data has only {len(by_id)} identities")
        self._by_id = {label: np.asarray(indices) for label, indices in sorted(by_id.items())}
        self.p, self.k, self.seed = p, k, seed
        self.epoch = 0
        self._plan: tuple[int, list[list[int]]] | None = None  # (epoch, batches): len() and iter() share it

    @property
    def num_identities(self) -> int:
        return len(self._by_id)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        if self._plan is None or self._plan[0] != self.epoch:
            self._plan = (self.epoch, self._draw_batches())
        return self._plan[1]

    def _draw_batches(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        groups: dict[int, list[np.ndarray]] = {}
        for label, indices in self._by_id.items():
            if len(indices) < self.k:
                picked = rng.choice(indices, size=self.k, replace=True)
            else:
                picked = rng.permutation(indices)
            whole = len(picked) // self.k
            groups[label] = [picked[i * self.k : (i + 1) * self.k] for i in range(whole)]
        batches: list[list[int]] = []
        available = [label for label in groups if groups[label]]
        while len(available) >= self.p:
            chosen = rng.choice(np.asarray(available), size=self.p, replace=False)
            batch: list[int] = []
            for label in chosen:
                batch.extend(int(i) for i in groups[int(label)].pop())
            batches.append(batch)
            available = [label for label in available if groups[label]]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter([list(batch) for batch in self._batches()])

    def __len__(self) -> int:
        return len(self._batches())
