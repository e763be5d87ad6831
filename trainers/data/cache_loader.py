"""The training loader on the frame cache: batches gathered in the training process, without loader workers.

From the frame cache (:mod:`trainers.data.frame_cache`) a batch is one gather of memory-map rows: ~3 ms for
256 frames at 256x128 on one core. Handing such a batch over from a loader worker process costs several
times that: torch needs a fresh shared-memory segment per batch, and its page faults and zeroing took ~19 ms
of kernel time for the same 25 MB (measured beside ``benchmarks/loader_throughput.py``). So when every
training tracklet is in the cache, :func:`trainers.data.pipeline.train_loader` returns a
:class:`CacheLoader` instead: one background thread builds the batches (:meth:`TrackletDataset.batch`, the
same clips as every other path) up to ``prefetch`` ahead, while training runs - the gather is a torch op and
releases the GIL. Buffers are reused (:class:`BufferPool`): a buffer is filled again only once nothing holds
the batch that used it, so a batch the caller keeps is never overwritten. With ``pin_memory`` each batch
gets page-locked memory from torch's caching host allocator, which also knows when an asynchronous copy to
the device has finished with a block (a pool of our own would not).
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from trainers.data.video_dataset import TrackletDataset

#: References to a pooled array while nothing else holds it: the pool's list and getrefcount's argument.
_FREE_REFS = 2


class BufferPool:
    """Contiguous uint8 batch buffers, reused once free. An array is free when only the pool refers to it:
    ``torch.from_numpy`` tensors (and every view of them) hold one reference to the array through their
    storage until the last of them is gone. At most ``keep`` arrays are pooled; when all of them are in use
    a fresh one is allocated and not kept."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._arrays: list[np.ndarray] = []

    def __call__(self, shape: tuple[int, ...]) -> torch.Tensor:
        for position in range(len(self._arrays)):
            pooled = self._arrays[position].shape == shape
            if pooled and sys.getrefcount(self._arrays[position]) == _FREE_REFS:
                return torch.from_numpy(self._arrays[position])
        array = np.empty(shape, dtype=np.uint8)
        if len(self._arrays) < self.keep:
            self._arrays.append(array)
        return torch.from_numpy(array)


def pinned_buffer(shape: tuple[int, ...]) -> torch.Tensor:
    """A page-locked batch buffer (torch's caching host allocator reuses freed blocks)."""
    return torch.empty(shape, dtype=torch.uint8, pin_memory=True)


class CacheLoader:
    """Iterates the batches of ``batches`` (lists of dataset indices, e.g. :class:`EpochBatches`; each
    ``iter`` takes the current epoch's) as :meth:`TrackletDataset.batch` builds them, ``prefetch`` ahead in
    a background thread (0: built on demand in the caller's thread). An error while building is raised
    from the iteration; leaving the loop early stops the thread."""

    def __init__(
        self,
        dataset: TrackletDataset,
        batches: Any,
        *,
        prefetch: int = 2,
        pin_memory: bool = False,
    ) -> None:
        if dataset.frame_cache is None:
            raise ValueError("CacheLoader needs a dataset with a frame cache")
        self.dataset = dataset
        self.batches = batches
        self.prefetch = prefetch
        self.pin_memory = pin_memory
        # the caller holds the current batch while the thread fills the next `prefetch`, and one more
        # may be on its way to the device
        self._buffer = pinned_buffer if pin_memory else BufferPool(keep=prefetch + 3)

    def __len__(self) -> int:
        return len(self.batches)

    def _build(self, indices: Sequence[int | tuple[int, int]]) -> dict[str, Any]:
        return self.dataset.batch(indices, buffer=self._buffer)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        order = list(self.batches)
        if self.prefetch < 1:
            return (self._build(indices) for indices in order)
        return self._prefetched(order)

    def _prefetched(self, order: list[Any]) -> Iterator[dict[str, Any]]:
        ready: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def put(item: tuple[str, Any]) -> bool:
            while not stop.is_set():
                try:
                    ready.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            try:
                for indices in order:
                    if not put(("batch", self._build(indices))):
                        return
                put(("end", None))
            except BaseException as error:  # raised again in the consumer's thread
                put(("error", error))

        thread = threading.Thread(target=produce, name="agvp-cache-loader", daemon=True)
        thread.start()
        try:
            while True:
                kind, value = ready.get()
                if kind == "end":
                    return
                if kind == "error":
                    raise value
                yield value
        finally:
            stop.set()
            thread.join()
