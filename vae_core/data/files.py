"""Opening the user's own data safely: a regular file or a folder only, never a pipe or a device.

A folder is walked only so far. Error texts name the file the user gave and no other."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from typing import BinaryIO

import vae_core.data.limits as limits

from ..errors import DataError

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


def check_kind(path: str, name: str) -> bool:
    """True for a folder, False for a regular file; DataError for anything else (pipe, device, socket)."""
    info = os.stat(path)  # follows links: a link to /dev/zero is judged as /dev/zero
    if stat.S_ISDIR(info.st_mode):
        return True
    if not stat.S_ISREG(info.st_mode):
        raise DataError(not_regular_message(info.st_mode, name))
    return False


def open_regular(path: str, name: str, max_bytes: int | None = None) -> BinaryIO:
    """`path` opened for reading in binary, refused unless it is a regular file of at most `max_bytes`
    (MAX_UNCOMPRESSED_BYTES by default). Opened without blocking and judged by the open file itself,
    so a pipe cannot hang us and a file swapped after an earlier check is still caught."""
    max_bytes = limits.MAX_UNCOMPRESSED_BYTES if max_bytes is None else max_bytes
    descriptor = os.open(path, _OPEN_FLAGS)
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise DataError(not_regular_message(info.st_mode, name))
        if info.st_size > max_bytes:
            raise DataError(f"{name}: is {info.st_size:,} bytes, more than the limit of {max_bytes:,} bytes")
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def not_regular_message(mode: int, name: str) -> str:
    kind = (
        "a named pipe"
        if stat.S_ISFIFO(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "not a regular file"
    )
    return f"{name}: is {kind}, so it is not read; data must be a regular file or a folder"


def describe_os_error(error: OSError) -> str:
    """The reason alone: str(error) would quote the full path, which may name the server's folders."""
    return error.strerror or type(error).__name__


def walk_folder(folder: str) -> Iterator[tuple[str, str]]:
    """(path relative to `folder` with "/" separators, full path) of every file, sorted, hidden ones
    (dot files, __MACOSX) left out; DataError once more than MAX_FOLDER_FILES have been seen."""
    seen = 0
    for directory, subdirs, names in os.walk(folder):
        subdirs[:] = sorted(sub for sub in subdirs if not is_hidden(sub))
        for file_name in sorted(names):
            seen += 1
            if seen > limits.MAX_FOLDER_FILES:
                raise DataError(
                    f"{os.path.basename(folder)}: holds more than {limits.MAX_FOLDER_FILES:,} files, "
                    f"the limit for a folder"
                )
            if is_hidden(file_name):
                continue
            full_path = os.path.join(directory, file_name)
            yield os.path.relpath(full_path, folder).replace(os.sep, "/"), full_path


def is_hidden(name: str) -> bool:
    """Dot files (.DS_Store, ._x.png from macOS) and __MACOSX are clutter, not data."""
    return name.startswith(".") or name == "__MACOSX"


def path_stamp(path: str, is_folder: bool) -> tuple:
    """Sizes and modification times of a file, or of every file under a folder: an edited file is new data."""
    if not is_folder:
        info = os.stat(path)
        return info.st_size, info.st_mtime_ns
    digest = hashlib.sha256()
    for relative, full_path in walk_folder(path):
        try:
            info = os.stat(full_path)
        except OSError:
            continue
        digest.update(f"{relative}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return ("folder", digest.hexdigest())
