"""Datasets kept in memory between loads, within a budget in bytes rather than a count of entries.

One Fashion-MNIST weighs as much as a thousand digit sets."""

from __future__ import annotations

from collections.abc import Callable, Hashable

from ..byte_cache import ByteCache
from ..config import limits
from .dataset import ImageDataset


class DatasetCache:
    """Least recently used datasets, their tensors adding up to at most config.Limits.dataset_cache_bytes
    (VAE_STUDIO_DATASET_CACHE_BYTES).

    Keyed by identity, with a stamp: a new stamp (the file was edited) replaces the entry of the same
    identity instead of sitting beside it. A dataset larger than the whole budget is returned, not kept.
    Thread-safe, and a dataset is loaded once when several threads (browser sessions) ask for it at once."""

    def __init__(self) -> None:
        self._datasets: ByteCache[ImageDataset] = ByteCache(lambda: limits().dataset_cache_bytes)

    def get_or_load(self, identity: Hashable, stamp: Hashable, load: Callable[[], ImageDataset]) -> ImageDataset:
        return self._datasets.get_or_load(identity, load, version=stamp)

    @property
    def nbytes(self) -> int:
        """Bytes held by the cached datasets' tensors."""
        return self._datasets.nbytes

    def __len__(self) -> int:
        return len(self._datasets)

    def clear(self) -> None:
        self._datasets.clear()
