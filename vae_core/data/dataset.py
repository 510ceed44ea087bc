"""ImageDataset, and `finish`: the one exit of every loader.

`finish` takes the raw pixels a loader read (N x C x H x W numbers: uint8 0..255, or numbers in 0..1
or 0..255), checks them, splits them, converts them to float32 in [0, 1], resizes and fingerprints
them, so every dataset reaches the trainer in one shape: float32 N x C x H x W tensors on the CPU.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

import vae_core.data.limits as limits

from ..errors import ConfigError, DataError

if TYPE_CHECKING:
    import torch

# torch is imported by the functions that convert pixels, not here: the dataset catalogue (names,
# descriptions, availability) is importable without it, so the app draws its Train form before torch loads.

# Pixels are converted and resized this many values at a time (64 MB of float32), so loading costs the
# raw array plus the result, never a second full-size float copy.
CHUNK_VALUES = 1 << 24


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

    @property
    def nbytes(self) -> int:
        """Memory held by the tensors."""
        tensors = (self.train_x, self.train_y, self.test_x, self.test_y)
        return sum(tensor.nbytes for tensor in tensors if tensor is not None)


@dataclass(frozen=True)
class Options:
    image_size: int | None
    test_fraction: float
    seed: int


def check_options(image_size, test_fraction, seed) -> Options:
    """The loading options, validated; ConfigError names the first bad one."""
    if image_size is not None:
        if (
            isinstance(image_size, bool)
            or not isinstance(image_size, (int, np.integer))
            or not 1 <= image_size <= limits.MAX_IMAGE_SIZE
        ):
            raise ConfigError(
                f"image_size must be a whole number between 1 and {limits.MAX_IMAGE_SIZE}, not {image_size!r}"
            )
        image_size = int(image_size)
    if not isinstance(test_fraction, (int, float, np.number)) or not 0.0 < float(test_fraction) < 1.0:
        raise ConfigError(f"test_fraction must be between 0 and 1, not {test_fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError(f"seed must be a whole number, not {seed!r}")
    return Options(image_size, float(test_fraction), int(seed))


def finish(
    name: str,
    pixels: np.ndarray,
    labels: np.ndarray | None,
    class_names: tuple[str, ...] | None,
    *,
    source: str,
    options: Options,
    warnings: tuple[str, ...] = (),
    test: tuple[np.ndarray, np.ndarray | None] | None = None,
) -> ImageDataset:
    """Check, split (unless `test` is an official split), convert, resize and fingerprint raw pixels."""
    divide = _needs_division(pixels, name)
    height, width = pixels.shape[-2:]
    size, size_note = output_size(height, width, options.image_size)
    if test is None:
        train_rows, test_rows = _split_rows(len(pixels), options, name)
        train, test_part = (pixels, labels, train_rows, divide), (pixels, labels, test_rows, divide)
    else:
        test_pixels, test_labels = test
        train = (pixels, labels, np.arange(len(pixels)), divide)
        test_part = (test_pixels, test_labels, np.arange(len(test_pixels)), _needs_division(test_pixels, name))
    train_x, train_y = _convert(*train, size, name)
    test_x, test_y = _convert(*test_part, size, name)
    if options.image_size is not None:
        source += f", resized to {options.image_size}x{options.image_size}"
    return ImageDataset(
        name=name,
        train_x=train_x,
        train_y=train_y,
        test_x=test_x,
        test_y=test_y,
        class_names=class_names if train_y is not None else None,
        fingerprint=_fingerprint(train_x, train_y, test_x, test_y),
        source=source,
        warnings=tuple(warnings) + ((size_note,) if size_note else ()),
    )


def output_size(height: int, width: int, image_size: int | None) -> tuple[tuple[int, int], str | None]:
    """(height, width) images are stored at, and a note when they were scaled down to the native limit."""
    if image_size is not None:
        return (image_size, image_size), None
    longest, limit = max(height, width), limits.MAX_NATIVE_SIDE
    if longest <= limit:
        return (height, width), None
    size = (max(1, round(height * limit / longest)), max(1, round(width * limit / longest)))
    note = (
        f"the images are {width}x{height} pixels, more than the limit of {limit} a side, so all were scaled "
        f"down to {size[1]}x{size[0]} (pass image_size to choose another size)"
    )
    return size, note


def check_dataset_size(count: int, channels: int, height: int, width: int, name: str) -> None:
    """Refuse a dataset whose float32 tensors would pass MAX_DATASET_VALUES, before allocating them."""
    values = count * channels * height * width
    if values > limits.MAX_DATASET_VALUES:
        raise DataError(
            f"{name}: {count:,} images of {channels}x{height}x{width} would need "
            f"{values * 4 / 2**30:.1f} GiB of memory, more than the limit of "
            f"{limits.MAX_DATASET_VALUES * 4 / 2**30:.1f} GiB; pass a smaller image_size"
        )


def encode_labels(labels: np.ndarray, name: str) -> tuple[np.ndarray, tuple[str, ...]]:
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
    if len(values) > limits.MAX_CLASSES:
        raise DataError(f"{name}: has {len(values):,} different labels, more than the limit of {limits.MAX_CLASSES}")
    return codes.reshape(-1).astype(np.int64), tuple(str(value) for value in values.tolist())


def square_side(count: int) -> int | None:
    """The side of a square image of `count` pixels, or None when `count` is not a square."""
    side = math.isqrt(count)
    return side if count > 0 and side * side == count else None


def _split_rows(count: int, options: Options, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split into train and test row numbers; the same seed gives the same split."""
    if count < 2:
        raise DataError(f"{name}: holds {count} image(s); at least 2 are needed to hold some out for testing")
    import torch

    test_count = min(count - 1, max(1, round(count * options.test_fraction)))
    order = torch.randperm(count, generator=torch.Generator().manual_seed(options.seed)).numpy()
    return order[test_count:], order[:test_count]


def _convert(
    pixels: np.ndarray, labels: np.ndarray | None, rows: np.ndarray, divide: bool, size: tuple[int, int], name: str
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The chosen rows as float32 in [0, 1] at `size`, converted chunk by chunk, and their labels."""
    import torch
    import torch.nn.functional as F

    channels = pixels.shape[1]
    check_dataset_size(len(rows), channels, *size, name)
    images = torch.empty((len(rows), channels, *size), dtype=torch.float32)
    rows_per_chunk = max(1, CHUNK_VALUES // math.prod(pixels.shape[1:]))
    for start in range(0, len(rows), rows_per_chunk):
        # Fancy indexing copies, so the in-place steps below never touch the caller's array.
        chunk = torch.from_numpy(pixels[rows[start : start + rows_per_chunk]].astype(np.float32, copy=False))
        if divide:
            chunk.div_(255.0)
        if tuple(chunk.shape[-2:]) != size:  # antialiased bilinear, like PIL's resize of own images
            chunk = F.interpolate(chunk, size=size, mode="bilinear", antialias=True, align_corners=False).clamp_(0, 1)
        images[start : start + rows_per_chunk] = chunk
    if labels is None:
        return images, None
    return images, torch.from_numpy(np.array(labels[rows], dtype=np.int64, copy=True))


def _needs_division(pixels: np.ndarray, name: str) -> bool:
    """Check raw pixels are finite numbers in 0..255; True when they are on the 0..255 scale."""
    if pixels.size == 0:
        raise DataError(f"{name}: holds no images (the array has shape {pixels.shape})")
    if pixels.dtype.kind not in "biuf":
        raise DataError(f"{name}: pixel values must be numbers, not {pixels.dtype}")
    low, high = pixels.min(), pixels.max()  # NaN propagates into both, so no full-size isfinite mask is needed
    if pixels.dtype.kind == "f" and not (np.isfinite(low) and np.isfinite(high)):
        raise DataError(f"{name}: contains NaN or infinite pixel values")
    if low < 0 or high > 255:
        raise DataError(f"{name}: pixel values must lie in 0..255 or 0..1, but they range from {low} to {high}")
    return pixels.dtype == np.uint8 or bool(high > 1)


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
