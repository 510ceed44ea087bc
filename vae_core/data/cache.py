"""Datasets kept in memory between loads, within a budget in bytes rather than a count of entries:
one Fashion-MNIST weighs as much as a thousand digit sets."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

from . import limits
from .dataset import ImageDataset


class DatasetCache:
    """Least recently used datasets, their tensors adding up to at most `limits.CACHE_BYTES`.

    Keys are (identity, stamp): a new stamp (the file was edited) replaces the entry of the same
    identity instead of sitting beside it. A dataset larger than the whole budget is returned, not kept.
    Thread-safe, and a dataset is loaded once when several threads (browser sessions) ask for it at once."""

    def __init__(self) -> None:
        self._entries: OrderedDict[tuple[Hashable, Hashable], ImageDataset] = OrderedDict()
        self._loading: dict[tuple[Hashable, Hashable], threading.Lock] = {}
        self._lock = threading.Lock()  # guards both dicts; never held while loading

    def get_or_load(self, identity: Hashable, stamp: Hashable, load: Callable[[], ImageDataset]) -> ImageDataset:
        key = (identity, stamp)
        with self._lock:
            cached = self._lookup(key)
            if cached is not None:
                return cached
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:  # a second caller waits here for the first one's result
            with self._lock:
                cached = self._lookup(key)
                if cached is not None:
                    return cached
            try:
                dataset = load()
            finally:
                with self._lock:
                    self._loading.pop(key, None)
            with self._lock:
                self._keep(key, dataset)
        return dataset

    @property
    def nbytes(self) -> int:
        """Bytes held by the cached datasets' tensors."""
        with self._lock:
            return self._total_bytes()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _lookup(self, key) -> ImageDataset | None:
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        return None

    def _keep(self, key, dataset: ImageDataset) -> None:
        for stale in [old for old in self._entries if old[0] == key[0]]:
            del self._entries[stale]
        if dataset.nbytes <= limits.CACHE_BYTES:
            self._entries[key] = dataset
            while self._total_bytes() > limits.CACHE_BYTES:
                self._entries.popitem(last=False)

    def _total_bytes(self) -> int:
        return sum(dataset.nbytes for dataset in self._entries.values())
