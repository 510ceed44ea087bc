"""Images in a .zip or a folder: one subfolder per class, or flat (unlabeled).

A zip is read in memory and never extracted; sizes come from its directory before anything is
decompressed, and each image's width and height from its header before its pixels are decoded.
Files left out are reported by count and reason, never by name: a folder may hold other people's files.
"""

from __future__ import annotations

import functools
import io
import os
import re
import stat
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np

import vae_core.data.limits as limits

from ..errors import DataError
from .dataset import ImageDataset, Options, check_dataset_size, encode_labels, finish, output_size
from .files import is_hidden, open_regular, walk_folder

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"})
# The only decoders PIL may use: it picks one by content, not extension, and some (EPS) run external programs.
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")
GRAYSCALE_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})


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
    """Files left out of a dataset, counted by reason, as one warning line per reason."""

    REASONS = {  # reason -> (singular, plural)
        "unsafe": (
            "file with an unsafe path (absolute or containing '..')",
            "files with unsafe paths (absolute or containing '..')",
        ),
        "symlink": ("symbolic link", "symbolic links"),
        "not_image": ("file that is not an image", "files that are not images"),
        "too_large": ("file larger than {limit}", "files larger than {limit}"),
        "too_many_pixels": ("image with more than {pixels} pixels", "images with more than {pixels} pixels"),
        "unreadable": ("corrupt or unreadable image", "corrupt or unreadable images"),
    }

    def __init__(self) -> None:
        self.counts = dict.fromkeys(self.REASONS, 0)

    def add(self, reason: str) -> None:
        self.counts[reason] += 1

    def messages(self) -> tuple[str, ...]:
        lines = []
        for reason, count in self.counts.items():
            if count:
                noun = self.REASONS[reason][count != 1].format(
                    limit=f"{limits.MAX_MEMBER_BYTES:,} bytes", pixels=f"{limits.MAX_IMAGE_PIXELS:,}"
                )
                lines.append(f"skipped {count:,} {noun}")
        return tuple(lines)


def load_folder(folder: Path, options: Options) -> ImageDataset:
    skips = _SkipReport()
    files = []
    for relative, full_path in walk_folder(str(folder)):
        if PurePosixPath(relative).suffix.lower() not in IMAGE_EXTENSIONS:
            skips.add("not_image")
            continue
        try:
            info = os.stat(full_path)
        except OSError:
            info = None
        if info is None or not stat.S_ISREG(info.st_mode):  # broken link, device, pipe: nothing to read
            skips.add("unreadable")
            continue
        files.append(_ImageFile(relative, info.st_size, functools.partial(_read_file, full_path)))
    _check_total_bytes(sum(file.size for file in files), folder.name)
    return _images_to_dataset(folder.name, files, skips, options)


def load_zip(handle: BinaryIO, name: str, options: Options) -> ImageDataset:
    try:
        archive = zipfile.ZipFile(handle)
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise DataError(f"{name}: is not a valid zip file: {error}") from None
    with archive:
        skips = _SkipReport()
        files = _zip_image_files(archive, name, skips)
        return _images_to_dataset(name, files, skips, options)


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
            skips.add("unsafe")
        elif stat.S_ISLNK(info.external_attr >> 16):
            skips.add("symlink")
        elif any(is_hidden(part) for part in parts):
            continue
        elif PurePosixPath(member_path).suffix.lower() not in IMAGE_EXTENSIONS:
            skips.add("not_image")
        else:
            files.append(_ImageFile("/".join(parts), info.file_size, functools.partial(_read_member, archive, info)))
    return files


def _read_file(path: str) -> bytes:
    # Opened afresh without blocking: the file may have been swapped for a pipe since it was listed.
    with open_regular(path, os.path.basename(path), limits.MAX_MEMBER_BYTES) as handle:
        return handle.read(limits.MAX_MEMBER_BYTES + 1)  # capped: the file may have grown since


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    # zipfile stops at the announced size, and the read is capped too, so a lying header cannot balloon memory.
    with archive.open(info) as member:
        return member.read(limits.MAX_MEMBER_BYTES + 1)


def _check_total_bytes(total: int, name: str) -> None:
    if total > limits.MAX_UNCOMPRESSED_BYTES:
        raise DataError(
            f"{name}: unpacks to {total:,} bytes, more than the limit of "
            f"{limits.MAX_UNCOMPRESSED_BYTES:,} bytes; it is too large to load or a zip bomb"
        )


def _images_to_dataset(name: str, files: list[_ImageFile], skips: _SkipReport, options: Options) -> ImageDataset:
    """Decode image files into one array, labels from their subfolders, and finish the dataset."""
    if len(files) > limits.MAX_IMAGE_COUNT:
        raise DataError(f"{name}: holds {len(files):,} images, more than the limit of {limits.MAX_IMAGE_COUNT:,}")
    # Pass 1 reads headers only, to choose one mode and size before any pixel is decoded.
    probed = []
    for file in files:
        try:
            blob = _read_image_bytes(file)
            size, is_color = _probe_image(blob)
        except _Unusable as unusable:
            skips.add(unusable.reason)
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
    source = f"{len(kept):,} images from {name}" + (f" in {len(class_names)} classes" if class_names else "")
    return finish(
        name,
        pixels.transpose(0, 3, 1, 2),
        labels,
        class_names,
        source=source,
        options=options,
        warnings=skips.messages() + tuple(notes) + layout_notes,
    )


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
        width, height = next(iter(sizes))
        (height, width), too_large = output_size(height, width, None)  # decoded straight to the smaller size
        size = (width, height)
        notes += [too_large] if too_large else []
    else:
        size = (limits.DEFAULT_RESIZE, limits.DEFAULT_RESIZE)
        notes.append(
            f"the images come in {len(sizes)} different sizes, so all were resized to "
            f"{limits.DEFAULT_RESIZE}x{limits.DEFAULT_RESIZE} (pass image_size to choose another size)"
        )
    if mode == "RGB" and not all(colors):
        notes.append("some images are in color, so the grayscale ones were converted to RGB")
    return mode, size, tuple(notes)


def _decode_images(probed: list[_ProbedImage], mode: str, size: tuple[int, int], skips: _SkipReport, name: str):
    """Decode straight into one uint8 N x H x W x C array; returns it and the images that decoded."""
    width, height = size
    channels = 3 if mode == "RGB" else 1
    check_dataset_size(len(probed), channels, height, width, name)
    pixels = np.empty((len(probed), height, width, channels), dtype=np.uint8)
    kept = []
    for image in probed:
        try:
            pixels[len(kept)] = _decode_image(image.blob, mode, size).reshape(height, width, channels)
        except _Unusable as unusable:  # header fine, pixel data broken
            skips.add(unusable.reason)
            continue
        kept.append(image)
    return pixels[: len(kept)], kept


def _read_image_bytes(file: _ImageFile) -> bytes:
    if file.size > limits.MAX_MEMBER_BYTES:
        raise _Unusable("too_large")
    try:
        blob = file.read()
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError, DataError):
        # CRC mismatch, encrypted member, unsupported compression, vanished or swapped file
        raise _Unusable("unreadable") from None
    if len(blob) > limits.MAX_MEMBER_BYTES:
        raise _Unusable("too_large")
    return blob


def _open_image(blob: bytes):
    """A lazily decoded PIL image whose pixel count, read from its header, is within MAX_IMAGE_PIXELS."""
    from PIL import Image

    try:
        image = Image.open(io.BytesIO(blob), formats=IMAGE_FORMATS)
    except Image.DecompressionBombError:
        raise _Unusable("too_many_pixels") from None
    except Exception:  # PIL raises many types on hostile bytes; every one means "not a usable image"
        raise _Unusable("unreadable") from None
    if image.width * image.height > limits.MAX_IMAGE_PIXELS:
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
        return (
            None,
            None,
            (
                "some images sit in subfolders and some do not, so the dataset was loaded without "
                "labels (put every image in a subfolder named after its class)",
            ),
        )
    codes, class_names = encode_labels(np.array([parts[0] for parts in class_folders]), name)
    return codes, class_names, ()
