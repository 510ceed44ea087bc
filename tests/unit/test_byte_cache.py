"""The byte-bounded LRU every cache of checkpoints, datasets and projections is built on."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from vae_core.byte_cache import ByteCache, nbytes_of
from vae_core.config import limits
from vae_core.errors import ConfigError


def block(kib: int) -> np.ndarray:
    return np.zeros(kib * 1024, dtype=np.uint8)


def test_values_are_weighed_by_their_arrays_and_tensors():
    @dataclass
    class Held:
        weights: dict
        rows: list
        name: str

    shared = np.zeros(10, dtype=np.float32)
    held = Held({"w": torch.zeros(3, 4), "nested": {"b": torch.zeros(5, dtype=torch.float64)}}, [shared, shared], "x")
    assert nbytes_of(held) == 3 * 4 * 4 + 5 * 8 + 10 * 4  # the array met twice counted once
    assert nbytes_of("text") == 0 and nbytes_of(12) == 0
    rows = np.zeros((4, 6), dtype=np.float32)
    assert nbytes_of([rows[:, 1], rows[:, 2].view()]) == 4 * 6 * 4  # views weigh what they view, once
    assert nbytes_of((rows, rows[:, 0], rows[:, 0].astype(np.int64))) == 4 * 6 * 4 + 4 * 8


def test_the_least_recently_used_are_evicted_until_the_rest_fit():
    evicted = []
    cache = ByteCache(10 * 1024, on_evict=lambda value: evicted.append(value.nbytes // 1024))
    cache.put("a", block(4))
    cache.put("b", block(3))
    cache.put("c", block(2))
    assert cache.nbytes == 9 * 1024 and cache.keys() == ["a", "b", "c"]
    assert cache.get("a") is not None  # now the most recently used
    assert cache.keys() == ["b", "c", "a"]
    cache.put("d", block(5))  # 14 KiB: b goes (11 KiB), then c (9 KiB)
    assert cache.keys() == ["a", "d"] and evicted == [3, 2] and cache.nbytes == 9 * 1024
    assert cache.get("b") is None and len(cache) == 2


def test_a_value_larger_than_the_whole_budget_is_returned_but_not_kept():
    cache = ByteCache(8 * 1024)
    cache.put("small", block(2))
    big = block(9)
    assert cache.put("big", big) is big
    assert "big" not in cache and cache.keys() == ["small"] and cache.nbytes == 2 * 1024
    assert cache.get_or_load("big", lambda: block(9)) is not cache.get_or_load("big", lambda: block(9))


def test_a_new_version_replaces_the_old_one_of_its_key():
    cache = ByteCache(1 << 20)
    first = cache.get_or_load("data.npz", lambda: block(1), version=1)
    assert cache.get_or_load("data.npz", lambda: block(1), version=1) is first
    second = cache.get_or_load("data.npz", lambda: block(2), version=2)
    assert second is not first and cache.get("data.npz", version=1) is None
    assert len(cache) == 1 and cache.nbytes == 2 * 1024


def test_the_budget_is_read_when_a_value_is_kept(monkeypatch):
    cache = ByteCache(lambda: limits().checkpoint_cache_bytes)
    monkeypatch.setenv("VAE_STUDIO_CHECKPOINT_CACHE_BYTES", str(3 * 1024))
    cache.put("a", block(2))
    cache.put("b", block(2))
    assert cache.keys() == ["b"]
    monkeypatch.setenv("VAE_STUDIO_CHECKPOINT_CACHE_BYTES", "a lot")
    with pytest.raises(ConfigError, match="VAE_STUDIO_CHECKPOINT_CACHE_BYTES must be a whole number"):
        cache.put("c", block(1))


def test_values_that_grow_once_kept_are_weighed_again_when_another_is_kept():
    sizes = {"a": 1, "b": 1}
    cache = ByteCache(10, weigh=lambda key: sizes[key], reweigh=True)
    cache.put("a", "a")
    cache.put("b", "b")
    sizes["a"] = 10  # "a" grew while kept: seen when a value is kept next (10 + 1 > 10)
    assert cache.nbytes == 2
    cache.put("b", "b")
    assert cache.keys() == ["b"] and cache.nbytes == 1
