"""NumPy files: .npz with an array `x` (the images) and an optional `y` (labels), or a .npy of images.

Never unpickled. Each array's shape and dtype are read from its .npy header, and its size from the
zip's directory, before a byte of its data is read."""

from __future__ import annotations

import math
import zipfile
import zlib
from typing import BinaryIO

import numpy as np

import vae_core.data.limits as limits

from ..errors import DataError
from .dataset import ImageDataset, Options, encode_labels, finish, square_side

NPY_MAGIC = b"\x93NUMPY"


def load_numpy(handle: BinaryIO, name: str, options: Options) -> ImageDataset:
    x, y = _read_arrays(handle, name)
    pixels = _to_nchw(x, name)
    labels, class_names = None, None
    if y is not None:
        if y.ndim != 1 or len(y) != len(pixels):
            raise DataError(
                f"{name}: y has shape {y.shape} but x holds {len(pixels):,} images; y needs exactly one label per image"
            )
        labels, class_names = encode_labels(y, name)
    source = f"{len(pixels):,} images from {name}" + (f" in {len(class_names)} classes" if class_names else "")
    return finish(name, pixels, labels, class_names, source=source, options=options)


def _read_arrays(handle: BinaryIO, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """x and optional y, read with allow_pickle=False so no Python object is ever unpickled."""
    if handle.read(len(NPY_MAGIC)) == NPY_MAGIC:  # a plain .npy: just the images
        handle.seek(0)
        _check_header(handle, name, "x")
    handle.seek(0)
    try:
        loaded = np.load(handle, allow_pickle=False)
    except ValueError as error:
        if "pickle" in str(error):  # numpy says so for anything that is neither .npy nor .npz
            raise DataError(
                f"{name}: is not a NumPy .npz archive (if it is a Python pickle, it contains Python "
                f"objects, which are not loaded for safety)"
            ) from None
        raise DataError(f"{name}: is not a valid NumPy file: {error}") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise DataError(f"{name}: is not a valid NumPy file: {error}") from None
    if isinstance(loaded, np.ndarray):
        return loaded, None
    with loaded:
        if "x" not in loaded.files:
            held = ", ".join(loaded.files) or "nothing"
            raise DataError(f"{name}: has no array named 'x' (the images); it holds: {held}")
        x = _read_member(loaded, "x", name)
        y = _read_member(loaded, "y", name) if "y" in loaded.files else None
    return x, y


def _read_member(archive: np.lib.npyio.NpzFile, key: str, name: str) -> np.ndarray:
    members = [info for info in archive.zip.infolist() if info.filename in (key, f"{key}.npy")]
    size = sum(info.file_size for info in members)
    if size > limits.MAX_UNCOMPRESSED_BYTES:
        raise DataError(
            f"{name}: array {key} unpacks to {size:,} bytes, more than the limit of "
            f"{limits.MAX_UNCOMPRESSED_BYTES:,} bytes"
        )
    try:
        for info in members:
            with archive.zip.open(info) as member:
                _check_header(member, name, key)
        return archive[key]
    except ValueError as error:
        raise DataError(f"{name}: array {key} is not readable: {error}") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError) as error:
        raise DataError(f"{name}: array {key} is not readable: {error}") from None


def _check_header(stream: BinaryIO, name: str, key: str) -> None:
    """Refuse, from the .npy header alone, an array of Python objects or one too large to hold."""
    try:
        version = np.lib.format.read_magic(stream)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(stream)
    except (ValueError, EOFError, SyntaxError) as error:
        raise DataError(f"{name}: array {key} is not readable: {error}") from None
    if dtype.hasobject:
        raise DataError(
            f"{name}: array {key} contains Python objects, which are not loaded for safety; "
            f"save numbers instead (e.g. x.astype('uint8'))"
        )
    values = math.prod(shape)
    if values * dtype.itemsize > limits.MAX_UNCOMPRESSED_BYTES:
        raise DataError(
            f"{name}: array {key} has shape {shape} of {dtype}: {values * dtype.itemsize:,} bytes, "
            f"more than the limit of {limits.MAX_UNCOMPRESSED_BYTES:,} bytes"
        )
    if values > limits.MAX_DATASET_VALUES:
        raise DataError(
            f"{name}: array {key} has shape {shape}: {values:,} values, more than the limit of "
            f"{limits.MAX_DATASET_VALUES:,} ({limits.MAX_DATASET_VALUES * 4 / 2**30:.1f} GiB as "
            f"float32); use fewer or smaller images"
        )


def _to_nchw(x: np.ndarray, name: str) -> np.ndarray:
    """(N, H, W), (N, H, W, C), (N, C, H, W) or (N, D) with square D as N x C x H x W, C in {1, 3}."""
    if x.ndim == 2:
        side = square_side(x.shape[1])
        if side is None:
            raise DataError(
                f"{name}: x has shape {x.shape}; a flat (N, D) array needs D to be a square number "
                f"of pixels, such as 784 = 28 x 28"
            )
        return x.reshape(x.shape[0], 1, side, side)
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        if x.shape[1] in (1, 3) and x.shape[3] not in (1, 3):
            return x
        if x.shape[3] in (1, 3):
            return x.transpose(0, 3, 1, 2)
        raise DataError(
            f"{name}: x has shape {x.shape}; images need 1 (grayscale) or 3 (RGB) channels, "
            f"as (N, C, H, W) or (N, H, W, C)"
        )
    raise DataError(
        f"{name}: x has {x.ndim} dimension(s), shape {x.shape}; expected (N, H, W), (N, H, W, C), "
        f"(N, C, H, W) or (N, D)"
    )
