"""The one way to read a file this process did not just write: regular files only, bounded in size.

JSON is bounded in nesting too, and every failure is one `UnreadableFile` naming the file and what was
wrong. A record of ours (a JSON object) is read by `read_record`, which its reader hands the checks of
its fields to.

Why each guard: a FIFO (or a symbolic link to one) blocks a plain `open` forever, so the file is
opened non-blocking and `fstat`-ed before a byte is read; a device or a folder named like a record
is refused the same way; a file of gigabytes is refused by its size; `[[[[...]]]]` nested 200,000
deep makes `json.loads` raise RecursionError, so nesting is counted first, in one pass.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from .errors import VAEStudioError

MAX_JSON_DEPTH = 32
Parsed = TypeVar("Parsed")


class UnreadableFile(VAEStudioError):
    """A file that cannot be read as what it should be; str() is one line naming it. One of our own
    errors, so every page and command that reports those reports this one in its place."""


class FieldError(Exception):
    """A field of a record or of a checkpoint's metadata is missing, of the wrong type or out of range
    (the message names it); read_record turns it into an UnreadableFile naming the file."""


def file_version(path: str | Path) -> tuple[int, int, int]:
    """(inode, modification time in ns, size) of the file `path` names, links followed: what a cache of
    its contents is keyed by. UnreadableFile, not OSError, when there is none (a dangling link, a loop)."""
    try:
        info = os.stat(path)
    except OSError as error:
        raise UnreadableFile(f"{Path(path).name}: cannot be read ({error.strerror or error})") from None
    return info.st_ino, info.st_mtime_ns, info.st_size


@contextlib.contextmanager
def opened_regular_file(path: str | Path, max_bytes: int) -> Iterator[tuple[int, int]]:
    """(descriptor, size) of `path` while it is open, when it is a regular file (a symbolic link to one
    is followed) of at most `max_bytes`; UnreadableFile otherwise. Never blocks on a FIFO or a device."""
    path = Path(path)
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise UnreadableFile(f"{path.name}: cannot be opened ({error.strerror or error})") from None
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableFile(f"{path.name}: not a regular file")
        if info.st_size > max_bytes:
            raise UnreadableFile(f"{path.name}: {info.st_size:,} bytes, more than the limit of {max_bytes:,}")
        yield descriptor, info.st_size
    except OSError as error:
        raise UnreadableFile(f"{path.name}: cannot be read ({error.strerror or error})") from None
    finally:
        os.close(descriptor)


def read_regular_file(path: str | Path, max_bytes: int) -> bytes:
    """The bytes of `path` when it is a regular file (a symbolic link to one is followed) of at most
    `max_bytes`; UnreadableFile otherwise. Never blocks on a FIFO or a device."""
    with opened_regular_file(path, max_bytes) as (descriptor, _):
        chunks, left = [], max_bytes + 1
        while left > 0:
            chunk = os.read(descriptor, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
    if len(data) > max_bytes:  # it grew while being read
        raise UnreadableFile(f"{Path(path).name}: more than the limit of {max_bytes:,} bytes")
    return data


_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(rb"[\[\]{}]")


def json_depth(data: bytes) -> int:
    """How deep `data`'s arrays and objects nest (brackets inside strings do not count), without
    recursion: strings are cut out, then the brackets left are counted in one pass."""
    depth = deepest = 0
    for bracket in _BRACKET.findall(_STRING.sub(b"", data)):
        if bracket in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def read_json_file(path: str | Path, max_bytes: int) -> Any:
    """The JSON value of `path`, read by `read_regular_file`, nested at most MAX_JSON_DEPTH deep; numbers
    that are no finite float (NaN, Infinity) are refused. UnreadableFile on anything else."""
    data = read_regular_file(path, max_bytes)
    name = Path(path).name
    if json_depth(data) > MAX_JSON_DEPTH:
        raise UnreadableFile(f"{name}: JSON nested more than {MAX_JSON_DEPTH} deep")
    try:
        return json.loads(data, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise UnreadableFile(f"{name}: not valid JSON") from None


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def read_record(
    path: str | Path, max_bytes: int, record_format: str | None, parse: Callable[[dict, str], Parsed]
) -> Parsed:
    """What `parse(record, file name)` makes of the JSON object in `path`, read by `read_json_file`;
    the object must name `record_format` as its "format" (None: any object will do). UnreadableFile
    names the file and what is wrong with it, a FieldError raised by `parse` included."""
    record = read_json_file(path, max_bytes)
    name = Path(path).name
    if not isinstance(record, dict) or (record_format is not None and record.get("format") != record_format):
        raise UnreadableFile(
            f"{name}: it is not a {record_format} record" if record_format else f"{name}: not an object"
        )
    try:
        return parse(record, name)
    except FieldError as error:
        raise UnreadableFile(f"{name}: {error}") from None
