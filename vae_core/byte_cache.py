"""A least-recently-used cache bounded by bytes, not by a count of entries.

One checkpoint of a long run weighs as much as a thousand short ones. Each cache's budget is a limit of
config.Limits."""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from typing import Generic, TypeVar

import numpy as np

V = TypeVar("V")


def nbytes_of(value: object) -> int:
    """Bytes held by the arrays and tensors in `value`: its own `nbytes` when it has one (a NumPy array,
    a torch tensor, a dataset), else the sum over a mapping's values, a list's or tuple's items or a
    dataclass's fields. Anything else (numbers, text) weighs 0; an object met twice is counted once,
    and so is an array behind several NumPy views of it."""
    seen: set[int] = set()

    def weigh(item: object) -> int:
        if id(item) in seen:
            return 0
        seen.add(id(item))
        if isinstance(item, np.ndarray) and isinstance(item.base, np.ndarray):
            return weigh(item.base)  # a view holds no bytes of its own: its base's are counted, once
        nbytes = getattr(item, "nbytes", None)
        if isinstance(nbytes, int):
            return nbytes
        if isinstance(item, Mapping):
            return sum(weigh(part) for part in item.values())
        if isinstance(item, list | tuple | set | frozenset):
            return sum(weigh(part) for part in item)
        if dataclasses.is_dataclass(item) and not isinstance(item, type):
            return sum(weigh(getattr(item, field.name)) for field in dataclasses.fields(item))
        return 0

    return weigh(value)


@dataclasses.dataclass(frozen=True)
class _Entry(Generic[V]):
    version: Hashable
    value: V
    nbytes: int


class ByteCache(Generic[V]):
    """Values under keys, the least recently used evicted first, weighing together at most `budget` bytes.

    - A value is weighed once, when it is kept (`weigh`, default `nbytes_of`). Keeping one evicts the
      least recently used others until the total is within the budget; a value larger than the whole
      budget is returned to its caller but not kept.
    - A key holds one version of its value (a file's modification time, say): asking for another
      version misses, and the value then kept replaces the old one instead of sitting beside it.
    - `budget` is a number of bytes or a function giving it, read each time a value is kept (so an
      operator's setting, config.limits(), is read where it is used).
    - With `reweigh`, for values that grow once kept (a projection that finishes), every value is
      weighed again each time one is kept, under the cache's lock: `weigh` must then be cheap.
    - `on_evict(value)` is told of each value the cache drops to make room or replaces.
    - Thread-safe; a value that several threads ask for at once is loaded once (`get_or_load`)."""

    def __init__(
        self,
        budget: int | Callable[[], int],
        *,
        weigh: Callable[[V], int] = nbytes_of,
        on_evict: Callable[[V], None] | None = None,
        reweigh: bool = False,
    ):
        self._budget = budget if callable(budget) else (lambda: budget)
        self._weigh = weigh
        self._on_evict = on_evict
        self._reweigh = reweigh
        self._entries: OrderedDict[Hashable, _Entry[V]] = OrderedDict()
        self._nbytes = 0
        self._lock = threading.Lock()  # guards the entries; never held while loading or weighing
        self._loading: dict[tuple[Hashable, Hashable], threading.Lock] = {}

    def get(self, key: Hashable, version: Hashable = None) -> V | None:
        """The value kept under `key` at `version` (now the most recently used), else None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.version != version:
                return None
            self._entries.move_to_end(key)
            return entry.value

    def put(self, key: Hashable, value: V, version: Hashable = None) -> V:
        """Keep `value` under `key` (replacing what the key held), evicting the least recently used
        others until the total fits the budget; returns `value`, kept or not (larger than the budget)."""
        nbytes, budget = self._weigh(value), self._budget()
        dropped = []
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._nbytes -= old.nbytes
                if old.value is not value:
                    dropped.append(old.value)
            if self._reweigh:
                for kept, entry in self._entries.items():
                    self._entries[kept] = dataclasses.replace(entry, nbytes=self._weigh(entry.value))
                self._nbytes = sum(entry.nbytes for entry in self._entries.values())
            if nbytes <= budget:
                self._entries[key] = _Entry(version, value, nbytes)
                self._nbytes += nbytes
                while self._nbytes > budget:
                    _, evicted = self._entries.popitem(last=False)
                    self._nbytes -= evicted.nbytes
                    dropped.append(evicted.value)
        self._tell_evicted(dropped)
        return value

    def get_or_load(self, key: Hashable, load: Callable[[], V], version: Hashable = None) -> V:
        """The value under `key` at `version`, loaded by `load()` and kept when missing. Callers asking
        for the same key and version at once wait for the first one's load instead of loading again."""
        cached = self.get(key, version)
        if cached is not None:
            return cached
        with self._lock:
            key_lock = self._loading.setdefault((key, version), threading.Lock())
        with key_lock:
            cached = self.get(key, version)
            if cached is not None:
                return cached
            try:
                value = load()
            finally:
                with self._lock:
                    self._loading.pop((key, version), None)
            return self.put(key, value, version)

    def discard(self, key: Hashable) -> None:
        """Forget the value under `key`, if any (told to on_evict)."""
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is not None:
                self._nbytes -= entry.nbytes
        self._tell_evicted([] if entry is None else [entry.value])

    def clear(self) -> None:
        with self._lock:
            dropped = [entry.value for entry in self._entries.values()]
            self._entries.clear()
            self._nbytes = 0
        self._tell_evicted(dropped)

    @property
    def nbytes(self) -> int:
        """What the kept values weigh together, in bytes, as weighed when each was kept."""
        with self._lock:
            return self._nbytes

    def keys(self) -> list[Hashable]:
        """The keys held, the least recently used first."""
        with self._lock:
            return list(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _tell_evicted(self, values: list) -> None:
        if self._on_evict is not None:
            for value in values:
                self._on_evict(value)
