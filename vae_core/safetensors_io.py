"""The file layer of checkpoints: tensors plus JSON metadata in one safetensors file.

The safetensors library parses and validates the file (header JSON, dtypes, shapes against byte
offsets, no gaps, overlaps or trailing bytes); its errors become one-line `CheckpointError`s that
name the file. We add only what it does not check: a PyTorch pickle or zip is named as such (and,
like everything else, never unpickled), a size limit, the dtypes a VAE uses, and our own metadata.
Readers see the header (metadata, each tensor's dtype and shape) before any tensor is loaded, so a
file can be judged against its config for free. Writing is atomic: a crash or a kill mid-save leaves
the previous file as it was.

File layout (readable by the plain `safetensors` library):
    header metadata "format"         = FORMAT_NAME
    header metadata "format_version" = str(FORMAT_VERSION)
    header metadata "vae_studio"     = json.dumps(metadata)
NaN and +/-inf in the metadata are stored as JSON's common NaN / Infinity / -Infinity extensions,
which Python's json module reads back as floats (a strict JSON parser elsewhere would reject them).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import safe_open

from .atomic_files import write_atomically
from .errors import CheckpointError

FORMAT_NAME = "vae-studio-checkpoint"
FORMAT_VERSION = 1
MAX_CHECKPOINT_BYTES = 2 * 1024**3  # read at call time, so tests and callers may change it
MAX_METADATA_CHARS = 16 * 1024**2  # our JSON is parsed by Python: bound what it may cost

# safetensors dtype code -> torch dtype. Only what a VAE needs; anything else (float8, complex,
# unsigned wide ints) is refused rather than half-supported.
DTYPES: dict[str, torch.dtype] = {
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F64": torch.float64,
    "I64": torch.int64,
    "I32": torch.int32,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}

_PICKLE_PROTOCOL_BYTES = {2, 3, 4, 5}  # pickles from protocol 2 on start with PROTO (0x80) + version
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default format is a zip archive around a pickle
_MAX_QUOTED_CHARS = 60  # hostile files may carry megabyte-long names; messages stay one short line

# What the safetensors library says (after "Error while deserializing header: ") -> what it means.
_LIBRARY_PROBLEMS = (
    ("header too small", "it is too short to be a safetensors file"),
    ("header too large", "it is not a safetensors file (it does not start with a safetensors header)"),
    ("invalid header length", "the file is truncated (it ends inside its header)"),
    ("incomplete metadata", "the file is truncated or has extra bytes (its tensor data does not match its header)"),
    ("invalid offset", "its tensor data is out of order, overlaps or runs past the end of the file ({detail})"),
    ("invalid shape, data type, or offset", "a tensor's shape, dtype and data size do not agree ({detail})"),
    ("invalid utf-8", "its header is not UTF-8 text"),
    ("invalid json", "its header is not valid safetensors JSON ({detail})"),
)


# ----------------------------------------------------------------------------------------------
# Writing


def checkpoint_to_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> bytes:
    """The checkpoint file's exact bytes, in memory (for a download button)."""
    data = safetensors.torch.save(_prepare_tensors(tensors), metadata=_header_metadata(metadata))
    if len(data) > MAX_CHECKPOINT_BYTES:  # better now than after a long run: it could not be read back
        raise CheckpointError(
            f"the checkpoint would be {format_size(len(data))}, more than the {format_size(MAX_CHECKPOINT_BYTES)} limit"
        )
    return data


def write_checkpoint(
    path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any], *, overwrite: bool = True
) -> None:
    """Write a checkpoint atomically: `path` is either the old file or the complete new one, never a mix.

    With overwrite=False an existing `path` is left untouched and CheckpointError is raised.
    Raises CheckpointError when the disk refuses (missing folder, no permission, disk full) and
    TypeError / ValueError for arguments no file could hold (a caller's bug, not the user's).
    """
    target = Path(path)
    # Serialising first means a bad argument fails before the disk is touched. It holds the file in
    # memory once more; VAE checkpoints are small, and MAX_CHECKPOINT_BYTES bounds the worst case.
    data = checkpoint_to_bytes(tensors, metadata)
    try:
        write_atomically(target, data, overwrite=overwrite)
    except FileExistsError:
        raise CheckpointError(f"could not write {target.name}: a file of that name exists") from None
    except OSError as error:
        raise CheckpointError(f"could not write {target.name}: {_os_reason(error)}") from error


def _prepare_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if not isinstance(tensors, dict):
        raise TypeError(f"tensors must be a dict of name -> torch.Tensor, not {type(tensors).__name__}")
    prepared = {}
    for name, tensor in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise ValueError(f"tensor name {name!r} cannot be stored (names are strings other than __metadata__)")
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"tensor {name!r} is a {type(tensor).__name__}, not a torch.Tensor")
        if tensor.dtype not in DTYPES.values():
            raise ValueError(f"tensor {name!r} has dtype {tensor.dtype}, which checkpoints do not store")
        prepared[name] = tensor.detach().to("cpu").contiguous()
    return prepared


def _header_metadata(metadata: dict[str, Any]) -> dict[str, str]:
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict, not {type(metadata).__name__}")
    text = json.dumps(metadata, allow_nan=True)
    if len(text) > MAX_METADATA_CHARS:  # as for the size: a file we could not read back is refused now
        raise CheckpointError(
            f"the checkpoint metadata would be {format_size(len(text))}, "
            f"more than the {format_size(MAX_METADATA_CHARS)} limit"
        )
    return {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION), "vae_studio": text}


# ----------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class StoredTensor:
    """A tensor as the file's header describes it: known before any of its bytes are read."""

    dtype: torch.dtype
    shape: tuple[int, ...]


class OpenCheckpoint:
    """An open, validated checkpoint: its metadata and tensor descriptions now, the tensors on demand."""

    def __init__(self, opened, name: str, metadata: dict[str, Any], tensors: dict[str, StoredTensor]):
        self._opened = opened
        self.name = name
        self.metadata = metadata
        self.tensors = tensors

    def load(self) -> dict[str, torch.Tensor]:
        """Every tensor, on the CPU. Raises CheckpointError (never another error) if that fails."""
        with _library_errors_reported(self.name):
            return self._opened.get_tensors()


@contextlib.contextmanager
def open_checkpoint(
    source: str | Path | bytes, *, name: str | None = None, max_bytes: int | None = None
) -> Iterator[OpenCheckpoint]:
    """Open a checkpoint file, or an upload's raw bytes, and check its header.

    `name` is what error messages call the file (default: the path's file name, or "uploaded file").
    Raises CheckpointError, and only CheckpointError, for anything wrong with the file.
    """
    limit = MAX_CHECKPOINT_BYTES if max_bytes is None else max_bytes
    if isinstance(source, (bytes, bytearray, memoryview)):
        label = name or "uploaded file"
        _check_size(len(source), label, limit)
        # safe_open reads files, so an upload becomes a private temporary file for as long as it is open.
        with tempfile.NamedTemporaryFile(suffix=".safetensors") as spooled:
            spooled.write(source)
            spooled.flush()
            with _opened(Path(spooled.name), label, limit) as checkpoint:
                yield checkpoint
        return
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be a path or bytes, not {type(source).__name__}")
    path = Path(source)
    label = name or path.name or str(path)
    with _library_errors_reported(label, path):
        info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):  # opening a FIFO or a device could block for ever
        raise _refused(label, "it is not a regular file")
    _check_size(info.st_size, label, limit)
    with _opened(path, label, limit) as checkpoint:
        yield checkpoint


def read_checkpoint(
    source: str | Path | bytes, *, name: str | None = None, max_bytes: int | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors (on the CPU) and metadata of a checkpoint file or of an upload's raw bytes."""
    with open_checkpoint(source, name=name, max_bytes=max_bytes) as checkpoint:
        return checkpoint.load(), checkpoint.metadata


def _refused(label: str, problem: str) -> CheckpointError:
    return CheckpointError(f"{label} is not a VAE Studio checkpoint: {problem}")


def _check_size(size: int, label: str, limit: int) -> None:
    if size == 0:
        raise _refused(label, "it is empty")
    if size > limit:
        raise _refused(label, f"it is {format_size(size)}, more than the {format_size(limit)} limit")


@contextlib.contextmanager
def _opened(path: Path, label: str, limit: int) -> Iterator[OpenCheckpoint]:
    with _library_errors_reported(label, path):
        # pread, not mmap: a file truncated in place while mapped would kill the process with SIGBUS.
        opened = safe_open(path, framework="pt", device="cpu", backend="pread" if os.name == "posix" else "mmap")
    with opened:
        with _library_errors_reported(label, path):
            tensors = {
                tensor_name: _stored_tensor(opened.get_slice(tensor_name), tensor_name, label)
                for tensor_name in opened.keys()  # noqa: SIM118 (safe_open is not iterable)
            }
            header_metadata = opened.metadata()
        # Judged on the open file itself, which may have been replaced since it was measured.
        tensor_bytes = sum(_byte_size(tensor) for tensor in tensors.values())
        if tensor_bytes > limit:
            raise _refused(
                label, f"its tensors take {format_size(tensor_bytes)}, more than the {format_size(limit)} limit"
            )
        yield OpenCheckpoint(opened, label, _our_metadata(header_metadata, label), tensors)


def _stored_tensor(view, tensor_name: str, label: str) -> StoredTensor:
    code = view.get_dtype()
    if code not in DTYPES:
        raise _refused(
            label,
            f"tensor {_quote(tensor_name)} has the unsupported dtype {_quote(code)} (supported: {', '.join(DTYPES)})",
        )
    return StoredTensor(DTYPES[code], tuple(view.get_shape()))


def _byte_size(tensor: StoredTensor) -> int:
    return math.prod(tensor.shape) * tensor.dtype.itemsize


@contextlib.contextmanager
def _library_errors_reported(label: str, path: Path | None = None) -> Iterator[None]:
    """Whatever the safetensors library (or torch under it) raises becomes one clear CheckpointError."""
    try:
        yield
    except CheckpointError:
        raise
    except OSError as error:
        reason = error.strerror or _one_line(error).replace(f": {path}", "")  # no server path in messages
        raise CheckpointError(f"could not read {label}: {reason}") from None
    except MemoryError:
        raise CheckpointError(f"not enough memory to load {label}") from None
    except Exception as error:
        raise _refused(label, (path and _foreign_format(path)) or _explained(error)) from None


def _foreign_format(path: Path) -> str | None:
    """Name the common wrong files (a PyTorch .pt first of all) that safetensors has just refused.

    Asked only once the library refused the file: a real header of 640 bytes starts with 80 02,
    which is also how a protocol 2 pickle starts.
    """
    with contextlib.suppress(OSError), open(path, "rb") as handle:
        prefix = handle.read(4)
        if prefix[:1] == b"\x80" and prefix[1:2] and prefix[1] in _PICKLE_PROTOCOL_BYTES:
            return "it looks like a pickle file (PyTorch .pt), which is never loaded for safety"
        if prefix == _ZIP_MAGIC:
            return (
                "it looks like a zip archive such as a PyTorch .pt file (which holds a pickle), "
                "which is never loaded for safety"
            )
    return None


def _explained(error: Exception) -> str:
    detail = _one_line(error).removeprefix("Error while deserializing header: ")
    for phrase, meaning in _LIBRARY_PROBLEMS:
        if detail.lower().startswith(phrase):
            return meaning.format(detail=detail)
    return f"safetensors could not read it ({detail})"


def _our_metadata(header: dict[str, str] | None, label: str) -> dict[str, Any]:
    header = header or {}
    if header.get("format") != FORMAT_NAME:
        raise _refused(label, "it was written by another program (no VAE Studio metadata)")
    version = header.get("format_version")
    # isascii: str.isdigit() also accepts digits such as "²" that int() refuses
    if not (isinstance(version, str) and version.isascii() and version.isdigit() and int(version) >= 1):
        raise _refused(label, f"its format version {_quote(version)} is not a positive whole number")
    if int(version) > FORMAT_VERSION:
        raise _refused(
            label,
            f"it was written by a newer VAE Studio (format version {int(version)}; "
            f"this version reads up to {FORMAT_VERSION})",
        )
    text = header.get("vae_studio")
    if text is None:
        raise _refused(label, "its VAE Studio metadata is missing")
    if len(text) > MAX_METADATA_CHARS:
        raise _refused(
            label,
            f"its VAE Studio metadata is {format_size(len(text))}, more than the "
            f"{format_size(MAX_METADATA_CHARS)} limit",
        )
    try:
        value = json.loads(text, object_pairs_hook=_object_without_duplicate_keys)
    except (ValueError, RecursionError) as error:  # RecursionError: hostile nesting like [[[[...
        raise _refused(label, f"its VAE Studio metadata is not valid JSON ({_one_line(error)})") from None
    if not isinstance(value, dict):
        raise _refused(label, "its VAE Studio metadata is not a JSON object")
    return value


def _object_without_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two entries under one name could be read differently by another JSON parser.
    result = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"the key {_quote(key)} appears twice")
        result[key] = value
    return result


# ----------------------------------------------------------------------------------------------
# Message helpers


def format_size(size: int) -> str:
    """A size in bytes as people read it: "512 bytes", "1.5 kB", "183.2 MB"."""
    if size < 1024:
        return f"{size} bytes"
    scaled = float(size)
    for unit in ("kB", "MB", "GB", "TB", "PB"):  # noqa: B007 (the last unit is the one shown)
        scaled /= 1024
        if scaled < 1024:
            break
    return f"{scaled:.1f} {unit}"


def _quote(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_QUOTED_CHARS else text[: _MAX_QUOTED_CHARS - 3] + "..."


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _os_reason(error: OSError) -> str:
    return error.strerror or _one_line(error)
