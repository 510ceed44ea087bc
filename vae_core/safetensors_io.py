"""The file layer of checkpoints: tensors plus JSON metadata in one safetensors file.

Anyone can hand the app a file, so reading never unpickles anything (no torch.load, no pickle, no
numpy allow_pickle): the header is checked by hand before the safetensors library sees the file, and
every way a file can be wrong ends in a `CheckpointError` whose one-line message names the file and
the problem. Writing is atomic: a crash or a kill mid-save leaves the previous file as it was.

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
import struct
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import safetensors.torch
import torch
from safetensors import safe_open

from .errors import CheckpointError

FORMAT_NAME = "vae-studio-checkpoint"
FORMAT_VERSION = 1
MAX_CHECKPOINT_BYTES = 2 * 1024**3  # read at call time, so tests and callers may change it
MAX_HEADER_BYTES = 16 * 1024**2

OPTIMIZER_TENSOR_PREFIX = "optim.state."

# safetensors dtype code -> (torch dtype, bytes per element). Only what a VAE needs; anything else
# (float8, complex, unsigned wide ints) is refused rather than half-supported.
_DTYPES: dict[str, tuple[torch.dtype, int]] = {
    "F32": (torch.float32, 4),
    "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2),
    "F64": (torch.float64, 8),
    "I64": (torch.int64, 8),
    "I32": (torch.int32, 4),
    "U8": (torch.uint8, 1),
    "BOOL": (torch.bool, 1),
}
_WRITABLE_DTYPES = {torch_dtype for torch_dtype, _ in _DTYPES.values()}

_LENGTH_PREFIX_BYTES = 8  # safetensors: little-endian u64 header length, then the JSON header
_METADATA_KEY = "__metadata__"
_TENSOR_ENTRY_KEYS = {"dtype", "shape", "data_offsets"}
_PICKLE_PROTOCOL_BYTES = {2, 3, 4, 5}  # pickles from protocol 2 on start with PROTO (0x80) + version
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default format is a zip archive around a pickle
_MAX_QUOTED_CHARS = 60  # hostile files may carry megabyte-long names; messages stay one short line


# ----------------------------------------------------------------------------------------------
# Writing


def checkpoint_to_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> bytes:
    """The checkpoint file's exact bytes, in memory (for a download button)."""
    data = safetensors.torch.save(_prepare_tensors(tensors), metadata=_header_metadata(metadata))
    _check_readable_back(data)
    return data


def write_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """Write a checkpoint atomically: `path` is either the old file or the complete new one, never a mix.

    Raises CheckpointError when the disk refuses (missing folder, no permission, disk full) and
    TypeError / ValueError for arguments no file could hold (a caller's bug, not the user's).
    """
    target = Path(path)
    # Serialising first means a bad argument fails before the disk is touched. It holds the file in
    # memory once more; VAE checkpoints are small, and MAX_CHECKPOINT_BYTES bounds the worst case.
    data = checkpoint_to_bytes(tensors, metadata)
    try:
        _replace_atomically(target, data)
    except OSError as error:
        raise CheckpointError(f"could not write {target.name}: {_os_reason(error)}") from error


def _prepare_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if not isinstance(tensors, dict):
        raise TypeError(f"tensors must be a dict of name -> torch.Tensor, not {type(tensors).__name__}")
    prepared = {}
    for name, tensor in tensors.items():
        if not isinstance(name, str) or name == _METADATA_KEY:
            raise ValueError(f"tensor name {name!r} cannot be stored (names are strings other than {_METADATA_KEY})")
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"tensor {name!r} is a {type(tensor).__name__}, not a torch.Tensor")
        if tensor.dtype not in _WRITABLE_DTYPES:
            raise ValueError(f"tensor {name!r} has dtype {tensor.dtype}, which checkpoints do not store")
        prepared[name] = tensor.detach().to("cpu").contiguous()
    return prepared


def _header_metadata(metadata: dict[str, Any]) -> dict[str, str]:
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict, not {type(metadata).__name__}")
    return {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "vae_studio": json.dumps(metadata, allow_nan=True),
    }


def _check_readable_back(data: bytes) -> None:
    """Refuse to produce a file that read_checkpoint would refuse: better now than after a long run."""
    (header_length,) = struct.unpack("<Q", data[:_LENGTH_PREFIX_BYTES])
    if header_length > MAX_HEADER_BYTES:
        raise CheckpointError(f"the checkpoint metadata would be {_format_size(header_length)}, "
                              f"more than the {_format_size(MAX_HEADER_BYTES)} limit")
    if len(data) > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"the checkpoint would be {_format_size(len(data))}, "
                              f"more than the {_format_size(MAX_CHECKPOINT_BYTES)} limit")


def _replace_atomically(target: Path, data: bytes) -> None:
    directory = target.parent
    mode = _file_mode_for(target)
    # The temporary file lives next to the target so os.replace is a rename within one filesystem,
    # which POSIX makes atomic; a hidden name keeps a half-written file out of the app's listings.
    handle = tempfile.NamedTemporaryFile(dir=directory, prefix=f".{target.name}.", suffix=".tmp", delete=False)
    temp_path = Path(handle.name)
    try:
        with handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())  # the bytes must be on disk before a name points at them
        os.chmod(temp_path, mode)
        os.replace(temp_path, target)
    except BaseException:  # also on KeyboardInterrupt: never leave the temporary file behind
        with contextlib.suppress(OSError):
            temp_path.unlink()
        raise
    _fsync_directory(directory)


def _file_mode_for(target: Path) -> int:
    """A replaced file keeps its permissions and a new one gets 0644: NamedTemporaryFile's private 0600
    would otherwise make every saved checkpoint unreadable to other users."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        return 0o644


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself survive a power cut.

    Best effort: the new file is already complete and in place, and some systems (Windows, some
    network filesystems) cannot fsync a directory; failing a save that did happen would be worse.
    """
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


# ----------------------------------------------------------------------------------------------
# Reading


class _TensorEntry(NamedTuple):
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


class _Header(NamedTuple):
    tensors: dict[str, _TensorEntry]
    raw_metadata: dict[str, str]  # the header's "__metadata__", to compare with what safetensors sees
    metadata: dict[str, Any]  # the parsed "vae_studio" JSON


class _NotACheckpoint(Exception):
    """Internal: what is wrong with a file, before the file's name is put in front of it."""


def read_checkpoint(
    source: str | Path | bytes,
    *,
    name: str | None = None,
    max_bytes: int | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors (on the CPU) and metadata of a checkpoint file or of an upload's raw bytes.

    `name` is what error messages call the file (default: the path's file name, or "uploaded file").
    Raises CheckpointError, and only CheckpointError, for anything wrong with the file.
    """
    limit = MAX_CHECKPOINT_BYTES if max_bytes is None else max_bytes
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _read_bytes(bytes(source), name or "uploaded file", limit)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        return _read_path(path, name or path.name or str(path), limit)
    raise TypeError(f"source must be a path or bytes, not {type(source).__name__}")


def _read_bytes(data: bytes, name: str, limit: int) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    with _reported_as(name):
        header = _validate(len(data), lambda offset, length: data[offset:offset + length], limit)
    tensors = _load_with_safetensors(name, lambda: safetensors.torch.load(data))
    return tensors, header.metadata


def _read_path(path: Path, name: str, limit: int) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    try:
        # Checked before open(): opening a FIFO or a device for reading could block forever.
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise CheckpointError(f"{name} is not a VAE Studio checkpoint: it is not a regular file")
        with open(path, "rb") as handle, _reported_as(name):
            header = _validate(os.fstat(handle.fileno()).st_size, _reader_of(handle), limit)
        tensors = _load_with_safetensors(name, lambda: _load_file_as_validated(path, name, header))
    except OSError as error:
        raise CheckpointError(f"could not read {name}: {_os_reason(error)}") from None
    return tensors, header.metadata


def _reader_of(handle) -> Callable[[int, int], bytes]:
    def read_at(offset: int, length: int) -> bytes:
        handle.seek(offset)
        return handle.read(length)

    return read_at


def _load_file_as_validated(path: Path, name: str, header: _Header) -> dict[str, torch.Tensor]:
    # safe_open opens the path again, so the file may have been replaced since it was validated; it
    # is only loaded if it still describes the tensors checked above. pread, not mmap: a file
    # truncated in place while mapped would kill the whole process with SIGBUS.
    backend = "pread" if os.name == "posix" else "mmap"
    with safe_open(path, framework="pt", device="cpu", backend=backend) as opened:
        if not _describes_same_tensors(opened, header):
            raise CheckpointError(f"{name} changed while it was being read; try again")
        return opened.get_tensors()


def _describes_same_tensors(opened, header: _Header) -> bool:
    if (opened.metadata() or {}) != header.raw_metadata or set(opened.keys()) != set(header.tensors):
        return False
    for tensor_name, entry in header.tensors.items():
        view = opened.get_slice(tensor_name)
        if view.get_dtype() != entry.dtype or tuple(view.get_shape()) != entry.shape:
            return False
    return True


def _load_with_safetensors(name: str, load: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    try:
        return load()
    except CheckpointError:
        raise
    except OSError as error:
        raise CheckpointError(f"could not read {name}: {_os_reason(error)}") from None
    except MemoryError:
        raise CheckpointError(f"not enough memory to load {name}") from None
    except Exception as error:  # noqa: BLE001 -- the promise is that only CheckpointError leaves here
        raise CheckpointError(
            f"{name} is not a VAE Studio checkpoint: safetensors could not read it ({_one_line(error)})"
        ) from None


@contextlib.contextmanager
def _reported_as(name: str) -> Iterator[None]:
    try:
        yield
    except _NotACheckpoint as problem:
        raise CheckpointError(f"{name} is not a VAE Studio checkpoint: {problem}") from None
    except MemoryError:
        raise CheckpointError(f"not enough memory to read {name}") from None


def _validate(size: int, read_at: Callable[[int, int], bytes], limit: int) -> _Header:
    """Check everything safetensors would, with messages a person can act on."""
    if size == 0:
        raise _NotACheckpoint("it is empty")
    if size > limit:
        raise _NotACheckpoint(f"it is {_format_size(size)}, more than the {_format_size(limit)} limit")
    prefix = read_at(0, _LENGTH_PREFIX_BYTES + 1)
    _check_not_foreign(prefix, size)
    header_length = _header_length(prefix)
    _check_header_length(header_length, size)
    header = _parse_json_object(_decode_header(read_at(_LENGTH_PREFIX_BYTES, header_length)), "its header")
    raw_metadata = header.pop(_METADATA_KEY, None)
    tensors = {tensor_name: _tensor_entry(tensor_name, entry) for tensor_name, entry in header.items()}
    _check_tensor_layout(tensors, size - _LENGTH_PREFIX_BYTES - header_length, limit)
    return _Header(tensors, raw_metadata, _vae_studio_metadata(raw_metadata))


def _header_length(prefix: bytes) -> int:
    return struct.unpack("<Q", prefix[:_LENGTH_PREFIX_BYTES].ljust(_LENGTH_PREFIX_BYTES, b"\0"))[0]


def _check_not_foreign(prefix: bytes, size: int) -> None:
    """Name the common wrong files (a PyTorch .pt first of all) instead of failing on their bytes."""
    starts_with_json = prefix[_LENGTH_PREFIX_BYTES:_LENGTH_PREFIX_BYTES + 1] == b"{"
    # A real safetensors header may have a length whose bytes look like a pickle's PROTO opcode
    # (e.g. 640 = 80 02 00 ...), so the magic numbers only decide once the header cannot fit.
    if starts_with_json and _header_length(prefix) <= size - _LENGTH_PREFIX_BYTES:
        return
    if prefix[:1] == b"\x80" and prefix[1:2] and prefix[1] in _PICKLE_PROTOCOL_BYTES:
        raise _NotACheckpoint("it looks like a pickle file (PyTorch .pt), which is never loaded for safety")
    if prefix.startswith(_ZIP_MAGIC):
        raise _NotACheckpoint(
            "it looks like a zip archive such as a PyTorch .pt file (which holds a pickle), "
            "which is never loaded for safety")
    if not starts_with_json:
        raise _NotACheckpoint("it is not a safetensors file (it does not start with a safetensors header)")


def _check_header_length(header_length: int, size: int) -> None:
    if header_length < 2:
        raise _NotACheckpoint(f"it is not a safetensors file (its header length is {header_length} bytes)")
    if header_length > MAX_HEADER_BYTES:
        raise _NotACheckpoint(f"the header claims {_format_size(header_length)}, "
                              f"more than the {_format_size(MAX_HEADER_BYTES)} limit for headers")
    available = size - _LENGTH_PREFIX_BYTES
    if header_length > available:
        raise _NotACheckpoint(f"the file is truncated (its header should be {_format_size(header_length)}, "
                              f"the file holds only {_format_size(available)} of it)")


def _decode_header(header_bytes: bytes) -> str:
    try:
        return header_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise _NotACheckpoint("its header is not UTF-8 text") from None


def _parse_json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text, object_pairs_hook=_object_without_duplicate_keys)
    except (ValueError, RecursionError) as error:  # RecursionError: hostile nesting like [[[[...
        raise _NotACheckpoint(f"{what} is not valid JSON ({_one_line(error)})") from None
    if not isinstance(value, dict):
        raise _NotACheckpoint(f"{what} is not a JSON object")
    return value


def _object_without_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two entries under one name could be read differently by us and by safetensors' own parser.
    result = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"the key {_quote(key)} appears twice")
        result[key] = value
    return result


def _tensor_entry(name: str, entry: Any) -> _TensorEntry:
    where = f"tensor {_quote(name)}"
    if not isinstance(entry, dict) or set(entry) != _TENSOR_ENTRY_KEYS:
        raise _NotACheckpoint(f"{where} has a malformed header entry (it needs exactly dtype, shape, data_offsets)")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in _DTYPES:
        raise _NotACheckpoint(f"{where} has the unsupported dtype {_quote(dtype)} "
                              f"(supported: {', '.join(_DTYPES)})")
    if not _is_list_of_counts(shape):
        raise _NotACheckpoint(f"{where} has an invalid shape (it must be a list of non-negative integers)")
    if not (_is_list_of_counts(offsets) and len(offsets) == 2 and offsets[0] <= offsets[1]):
        raise _NotACheckpoint(f"{where} has invalid data_offsets (they must be [begin, end] with begin <= end)")
    begin, end = offsets
    needed = _DTYPES[dtype][1] * math.prod(shape)
    if end - begin != needed:
        raise _NotACheckpoint(f"{where} has data_offsets spanning {_format_size(end - begin)}, "
                              f"but {dtype} of shape {_quote(shape)} needs {_format_size(needed)}")
    return _TensorEntry(dtype, tuple(shape), begin, end)


def _is_whole_number_text(value: Any) -> bool:
    # isascii: str.isdigit() also accepts digits such as "²" that int() refuses
    return isinstance(value, str) and value.isascii() and value.isdigit()


def _is_list_of_counts(value: Any) -> bool:
    # bool is an int in Python, but `true` is no size in JSON
    return isinstance(value, list) and all(
        isinstance(item, int) and not isinstance(item, bool) and item >= 0 for item in value)


def _check_tensor_layout(tensors: dict[str, _TensorEntry], data_size: int, limit: int) -> None:
    """Tensors must tile the data section exactly, as safetensors requires: no gap, overlap or excess."""
    claimed = max((entry.end for entry in tensors.values()), default=0)
    if claimed > limit:
        raise _NotACheckpoint(f"the header claims {_format_size(claimed)} of tensor data, "
                              f"more than the {_format_size(limit)} limit")
    if claimed > data_size:
        raise _NotACheckpoint(f"the file is truncated (its header lists {_format_size(claimed)} of tensor data, "
                              f"the file holds only {_format_size(data_size)})")
    position = 0
    for name, entry in sorted(tensors.items(), key=lambda item: (item[1].begin, item[1].end)):
        if entry.begin < position:
            raise _NotACheckpoint(f"tensor {_quote(name)} overlaps another tensor's data")
        if entry.begin > position:
            raise _NotACheckpoint(f"there are {_format_size(entry.begin - position)} of unexplained data "
                                  f"before tensor {_quote(name)}")
        position = entry.end
    if position < data_size:
        raise _NotACheckpoint(f"there are {_format_size(data_size - position)} of unexplained data "
                              "after the last tensor")


def _vae_studio_metadata(raw: Any) -> dict[str, Any]:
    if raw is None:
        raise _NotACheckpoint("it was written by another program (no VAE Studio metadata)")
    if not isinstance(raw, dict) or not all(isinstance(value, str) for value in raw.values()):
        raise _NotACheckpoint("its header metadata is malformed (it must map names to text)")
    if raw.get("format") != FORMAT_NAME:
        raise _NotACheckpoint("it was written by another program (no VAE Studio metadata)")
    _check_format_version(raw.get("format_version"))
    if "vae_studio" not in raw:
        raise _NotACheckpoint("its VAE Studio metadata is missing")
    return _parse_json_object(raw["vae_studio"], "its VAE Studio metadata")


def _check_format_version(version: str | None) -> None:
    if not _is_whole_number_text(version) or int(version) < 1:
        raise _NotACheckpoint(f"its format version {_quote(version)} is not a positive whole number")
    if int(version) > FORMAT_VERSION:
        raise _NotACheckpoint(f"it was written by a newer VAE Studio (format version {int(version)}; "
                              f"this version reads up to {FORMAT_VERSION})")


# ----------------------------------------------------------------------------------------------
# Optimizer state <-> flat tensors + JSON layout


def flatten_optimizer_state(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split a torch.optim state_dict into tensors "optim.state.<param_idx>.<key>" and a JSON-able layout.

    The tensors are copies on the CPU, so the live optimizer and a restored one never share memory.
    Layout: {"param_groups": [group with tuples as lists, ...], "tuple_keys": [[keys that were
    tuples], ...], "state": {"<param_idx>": {"tensors": [key, ...], "values": {key: non-tensor}}}}.
    Raises TypeError if the state holds something JSON cannot store (a caller's bug).
    """
    tensors: dict[str, torch.Tensor] = {}
    state_layout: dict[str, Any] = {}
    for param_index, param_state in state_dict["state"].items():
        tensor_keys = [key for key, value in param_state.items() if isinstance(value, torch.Tensor)]
        for key in tensor_keys:
            tensors[_optimizer_tensor_name(param_index, key)] = param_state[key].detach().to("cpu", copy=True)
        values = {key: value for key, value in param_state.items() if key not in tensor_keys}
        state_layout[str(param_index)] = {"tensors": tensor_keys, "values": values}
    layout = {
        "param_groups": [_json_shaped(group) for group in state_dict["param_groups"]],
        # torch keeps e.g. betas as a tuple; JSON only has lists, so remember which were tuples
        "tuple_keys": [sorted(key for key, value in group.items() if isinstance(value, tuple))
                       for group in state_dict["param_groups"]],
        "state": state_layout,
    }
    try:
        json.dumps(layout, allow_nan=True)
    except (TypeError, ValueError) as error:
        raise TypeError(f"optimizer state holds a value a checkpoint cannot store: {error}") from None
    return tensors, layout


def _json_shaped(group: dict[str, Any]) -> dict[str, Any]:
    """The layout is exactly what JSON gives back, so unflatten works with or without a file between."""
    return {key: list(value) if isinstance(value, (tuple, list)) else value for key, value in group.items()}


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], layout: dict[str, Any]) -> dict:
    """The torch.optim state_dict that flatten_optimizer_state split up.

    `tensors` may hold other tensors too (the model's); only "optim.state." ones are used, and
    each must be listed by the layout. Raises CheckpointError if tensors and layout do not fit.
    """
    try:
        return _rebuild_optimizer_state(tensors, layout)
    except _NotACheckpoint as problem:
        raise CheckpointError(f"the optimizer state in the checkpoint is invalid: {problem}") from None


def _optimizer_tensor_name(param_index: int | str, key: str) -> str:
    return f"{OPTIMIZER_TENSOR_PREFIX}{param_index}.{key}"


def _rebuild_optimizer_state(tensors: dict[str, torch.Tensor], layout: Any) -> dict:
    _require(isinstance(layout, dict) and {"param_groups", "tuple_keys", "state"} <= set(layout),
             "the layout needs param_groups, tuple_keys and state")
    param_groups = _rebuild_param_groups(layout["param_groups"], layout["tuple_keys"])
    known_params = {index for group in param_groups for index in group["params"]}
    state, used_names = _rebuild_param_states(tensors, layout["state"], known_params)
    unexpected = sorted(name for name in tensors if name.startswith(OPTIMIZER_TENSOR_PREFIX) and name not in used_names)
    if unexpected:
        raise _NotACheckpoint(f"tensor {_quote(unexpected[0])} is not in the layout")
    return {"state": state, "param_groups": param_groups}


def _rebuild_param_groups(groups: Any, tuple_keys: Any) -> list[dict[str, Any]]:
    _require(isinstance(groups, list) and all(isinstance(group, dict) for group in groups),
             "param_groups must be a list of objects")
    _require(isinstance(tuple_keys, list) and len(tuple_keys) == len(groups)
             and all(isinstance(keys, list) for keys in tuple_keys),
             "tuple_keys must list keys for each parameter group")
    rebuilt = []
    for group, keys in zip(groups, tuple_keys):
        _require(_is_list_of_counts(group.get("params")), "every parameter group needs params, a list of indices")
        _require(all(key in group and isinstance(group[key], list) for key in keys),
                 "tuple_keys names a value that is not a list in its parameter group")
        rebuilt.append({key: tuple(value) if key in keys else value for key, value in group.items()})
    return rebuilt


def _rebuild_param_states(tensors: dict[str, torch.Tensor], state_layout: Any,
                          known_params: set[int]) -> tuple[dict[int, dict[str, Any]], set[str]]:
    _require(isinstance(state_layout, dict), "state must be an object")
    state: dict[int, dict[str, Any]] = {}
    used_names: set[str] = set()
    for index_text, entry in state_layout.items():
        _require(_is_whole_number_text(index_text) and int(index_text) in known_params,
                 f"state names {_quote(index_text)}, which is no parameter of any group")
        _require(isinstance(entry, dict) and isinstance(entry.get("tensors"), list)
                 and isinstance(entry.get("values"), dict),
                 f"the state of parameter {index_text} needs a tensors list and a values object")
        param_state = dict(entry["values"])
        for key in entry["tensors"]:
            _require(isinstance(key, str) and key not in param_state,
                     f"the state of parameter {index_text} lists {_quote(key)} twice or not as text")
            name = _optimizer_tensor_name(index_text, key)
            _require(name in tensors, f"tensor {_quote(name)} is missing")
            _require(isinstance(tensors[name], torch.Tensor), f"{_quote(name)} is not a tensor")
            param_state[key] = tensors[name]
            used_names.add(name)
        state[int(index_text)] = param_state
    return state, used_names


def _require(condition: bool, problem: str) -> None:
    if not condition:
        raise _NotACheckpoint(problem)


# ----------------------------------------------------------------------------------------------
# Message helpers


def _format_size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    scaled = float(size)
    for unit in ("kB", "MB", "GB", "TB", "PB"):
        scaled /= 1024
        if scaled < 1024:
            break
    return f"{scaled:.1f} {unit}"


def _quote(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_QUOTED_CHARS else text[:_MAX_QUOTED_CHARS - 3] + "..."


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _os_reason(error: OSError) -> str:
    return error.strerror or _one_line(error)
