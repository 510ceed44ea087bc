"""Datasets kept in memory between loads, within a budget in bytes rather than a count of entries:
one Fashion-MNIST weighs as much as a thousand digit sets."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Hashable

from . import limits
from .dataset import ImageDataset


class DatasetCache:
    """Least recently used datasets, their tensors adding up to at most `limits.CACHE_BYTES`.

    Keys are (identity, stamp): a new stamp (the file was edited) replaces the entry of the same
    identity instead of sitting beside it. A dataset larger than the whole budget is returned, not kept.
    Thread-safe; two threads asking for the same new dataset at once may both load it, and one copy is kept."""

    def __init__(self) -> None:
        self._entries: OrderedDict[tuple[Hashable, Hashable], ImageDataset] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_load(self, identity: Hashable, stamp: Hashable, load: Callable[[], ImageDataset]) -> ImageDataset:
        key = (identity, stamp)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        dataset = load()
        with self._lock:
            if key in self._entries:  # another thread loaded it meanwhile: hand out one object
                return self._entries[key]
            for stale in [old for old in self._entries if old[0] == identity]:
                del self._entries[stale]
            if dataset.nbytes <= limits.CACHE_BYTES:
                self._entries[key] = dataset
                while self._total_bytes() > limits.CACHE_BYTES:
                    self._entries.popitem(last=False)
        return dataset

    @property
    def nbytes(self) -> int:
        """Bytes held by the cached datasets' tensors."""
        with self._lock:
            return self._total_bytes()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _total_bytes(self) -> int:
        return sum(dataset.nbytes for dataset in self._entries.values())

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
