"""Files a user might hand the app: none is ever unpickled, each ends in one clear CheckpointError."""

from __future__ import annotations

import json
import os
import pickle
import random
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import safetensors
import safetensors.torch
import torch

from vae_core import safetensors_io
from vae_core.errors import CheckpointError
from vae_core.safetensors_io import FORMAT_NAME, checkpoint_to_bytes, read_checkpoint, write_checkpoint

PROJECT_ROOT = Path(__file__).resolve().parents[2]
FILE_NAME = "model.safetensors"
PREFIX = f"{FILE_NAME} is not a VAE Studio checkpoint: "
OUR_METADATA = {"format": FORMAT_NAME, "format_version": "1", "vae_studio": "{}"}
PICKLE_REFUSED = "it looks like a pickle file (PyTorch .pt), which is never loaded for safety"
ZIP_REFUSED = (
    "it looks like a zip archive such as a PyTorch .pt file (which holds a pickle), which is never loaded for safety"
)
TRUNCATED = "the file is truncated or has extra bytes (its tensor data does not match its header)"
BAD_OFFSETS = (
    "its tensor data is out of order, overlaps or runs past the end of the file (invalid offset for tensor `{}`)"
)
BAD_JSON = "its header is not valid safetensors JSON (invalid JSON in header: "


@pytest.fixture(params=["path", "bytes"])
def read_hostile(request, tmp_path):
    """Read `content` as a file on disk or as an upload's bytes; return the CheckpointError's message."""

    def read(content: bytes, **options) -> str:
        if request.param == "path":
            path = tmp_path / FILE_NAME
            path.write_bytes(content)
            source = path
        else:
            source, options = content, {"name": FILE_NAME, **options}
        with pytest.raises(CheckpointError) as caught:
            read_checkpoint(source, **options)
        message = str(caught.value)
        assert "\n" not in message
        return message

    return read


def valid_checkpoint(size: int = 1024) -> bytes:
    return checkpoint_to_bytes({"weights": torch.arange(size // 4, dtype=torch.float32)}, {"epoch": 1})


def raw_safetensors(header: dict, data: bytes = b"", *, metadata: dict | None = None) -> bytes:
    """Hand-made safetensors bytes, for headers no well-behaved writer produces."""
    if metadata is not None:
        header = {"__metadata__": metadata, **header}
    return header_bytes(json.dumps(header).encode()) + data


def header_bytes(header: bytes) -> bytes:
    return struct.pack("<Q", len(header)) + header


def f32_entry(shape: list, *offsets) -> dict:
    return {"dtype": "F32", "shape": shape, "data_offsets": list(offsets)}


# ----------------------------------------------------------------------------------------------
# Pickles are recognised and never loaded


class CreatesMarkerWhenUnpickled:
    """A payload that proves unpickling happened: loading it opens (creates) the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_the_marker_payload_really_fires_when_unpickled(tmp_path):
    # Guards the tests below: if this payload stopped working, "no marker" would prove nothing.
    marker = tmp_path / "unpickled"
    pickle.loads(pickle.dumps(CreatesMarkerWhenUnpickled(marker), protocol=2)).close()
    assert marker.exists()


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_a_malicious_pickle_is_recognised_and_never_unpickled(read_hostile, tmp_path, protocol):
    marker = tmp_path / "unpickled"
    payload = pickle.dumps(CreatesMarkerWhenUnpickled(marker), protocol=protocol)

    message = read_hostile(payload)

    assert message == PREFIX + PICKLE_REFUSED
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [0, 1])
def test_an_old_protocol_pickle_is_refused_and_never_unpickled(read_hostile, tmp_path, protocol):
    marker = tmp_path / "unpickled"
    payload = pickle.dumps(CreatesMarkerWhenUnpickled(marker), protocol=protocol)

    message = read_hostile(payload)

    assert message == PREFIX + "it is not a safetensors file (it does not start with a safetensors header)"
    assert not marker.exists()


def torch_save_bytes(obj, tmp_path: Path, **options) -> bytes:
    path = tmp_path / "saved.pt"
    torch.save(obj, path, **options)
    return path.read_bytes()


def test_a_torch_save_file_renamed_safetensors_is_refused(read_hostile, tmp_path):
    content = torch_save_bytes({"weights": torch.zeros(3), "epoch": 1}, tmp_path)

    assert read_hostile(content) == PREFIX + ZIP_REFUSED


def test_a_malicious_torch_save_file_is_never_unpickled(read_hostile, tmp_path):
    marker = tmp_path / "unpickled"
    content = torch_save_bytes({"payload": CreatesMarkerWhenUnpickled(marker)}, tmp_path)

    assert read_hostile(content) == PREFIX + ZIP_REFUSED
    assert not marker.exists()


def test_a_legacy_torch_save_file_is_recognised_as_a_pickle(read_hostile, tmp_path):
    content = torch_save_bytes({"weights": torch.zeros(3)}, tmp_path, _use_new_zipfile_serialization=False)

    assert read_hostile(content) == PREFIX + PICKLE_REFUSED


def test_a_real_checkpoint_whose_length_bytes_look_like_a_pickle_is_read():
    # A header of 640 bytes starts the file with 80 02 -- the pickle protocol 2 magic.
    for padding in range(700):
        content = checkpoint_to_bytes({"weights": torch.zeros(2)}, {"padding": "x" * padding})
        if content[:2] == b"\x80\x02":
            break
    else:
        pytest.fail("no padding gives a header of 640 bytes")

    tensors, metadata = read_checkpoint(content)

    assert torch.equal(tensors["weights"], torch.zeros(2))
    assert len(metadata["padding"]) == padding


# ----------------------------------------------------------------------------------------------
# Damaged files


def test_an_empty_file_is_refused(read_hostile):
    assert read_hostile(b"") == PREFIX + "it is empty"


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_a_file_truncated_in_its_tensor_data_is_refused(read_hostile, cut):
    content = valid_checkpoint(size=4096)
    data_size = len(content) - 8 - struct.unpack("<Q", content[:8])[0]
    kept = content[: int(len(content) * cut)]
    assert len(kept) > len(content) - data_size  # the cut is in the data, past the header

    assert read_hostile(kept) == PREFIX + TRUNCATED


def test_a_file_truncated_in_its_header_is_refused(read_hostile):
    content = valid_checkpoint()
    header_length = struct.unpack("<Q", content[:8])[0]

    message = read_hostile(content[: 8 + header_length // 2])

    assert message == PREFIX + "the file is truncated (it ends inside its header)"


@pytest.mark.parametrize("seed, size", [(0, 1), (1, 7), (2, 9), (3, 100), (4, 10_000), (5, 1_000_000)])
def test_random_bytes_are_refused(read_hostile, seed, size):
    content = random.Random(seed).randbytes(size)

    assert read_hostile(content).startswith(PREFIX)


def test_random_bytes_after_a_plausible_length_are_refused(read_hostile):
    content = header_bytes(b"{" + random.Random(0).randbytes(200)) + random.Random(1).randbytes(64)

    assert read_hostile(content).startswith(PREFIX + "its header is not")


def test_a_header_length_claiming_gigabytes_is_refused(read_hostile):
    content = struct.pack("<Q", 5 * 1024**3) + b'{"weights": {}}'

    assert (
        read_hostile(content) == PREFIX + "it is not a safetensors file (it does not start with a safetensors header)"
    )


def test_a_header_claiming_gigabytes_of_tensors_is_refused(read_hostile):
    content = raw_safetensors({"weights": f32_entry([2 * 1024**3], 0, 8 * 1024**3)}, b"\0" * 16, metadata=OUR_METADATA)

    assert read_hostile(content) == PREFIX + TRUNCATED


def test_data_offsets_past_the_end_are_refused(read_hostile):
    content = raw_safetensors({"weights": f32_entry([2], 16, 24)}, b"\0" * 8, metadata=OUR_METADATA)

    assert read_hostile(content) == PREFIX + BAD_OFFSETS.format("weights")


@pytest.mark.parametrize(
    "entries, data_size, problem",
    [
        ({"a": f32_entry([2], 0, 8), "b": f32_entry([2], 4, 12)}, 12, BAD_OFFSETS.format("b")),
        ({"a": f32_entry([2], 0, 8), "b": f32_entry([2], 8, 16)}, 20, TRUNCATED),
        ({"a": f32_entry([2], 4, 12)}, 12, BAD_OFFSETS.format("a")),
        (
            {"a": f32_entry([3], 0, 8)},
            8,
            "a tensor's shape, dtype and data size do not agree (invalid shape, data type, or offset for tensor)",
        ),
        ({"a": f32_entry([-2], 0, 8)}, 8, BAD_JSON + "invalid value: integer `-2`, expected usize"),
        ({"a": f32_entry([True, 2], 0, 8)}, 8, BAD_JSON + "invalid type: boolean `true`, expected usize"),
        ({"a": f32_entry([2], 8, 0)}, 8, BAD_OFFSETS.format("a")),
        ({"a": f32_entry([2], 0.0, 8)}, 8, BAD_JSON + "invalid type: floating point `0.0`, expected usize"),
        ({"a": f32_entry([2], 0)}, 8, BAD_JSON + "invalid length 1, expected a tuple of size 2"),
        ({"a": {"dtype": "F32", "shape": [2]}}, 8, BAD_JSON + "missing field `data_offsets`"),
        ({"a": [1, 2]}, 8, BAD_JSON + "invalid type: integer `1`, expected string or map"),
        (
            {"a": {"dtype": ["F32"], "shape": [2], "data_offsets": [0, 8]}},
            8,
            BAD_JSON + "invalid type: sequence, expected string or map",
        ),
    ],
)
def test_inconsistent_tensor_entries_are_refused(read_hostile, entries, data_size, problem):
    # The safetensors library finds each of these; the message says what it found, in one line.
    content = raw_safetensors(entries, b"\0" * data_size, metadata=OUR_METADATA)

    assert read_hostile(content).startswith(PREFIX + problem)


def test_an_unknown_dtype_is_refused(read_hostile):
    content = raw_safetensors(
        {"a": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8, metadata=OUR_METADATA
    )

    assert read_hostile(content) == PREFIX + (
        "tensor 'a' has the unsupported dtype 'C64' (supported: F32, F16, BF16, F64, I64, I32, U8, BOOL)"
    )


def test_a_float8_tensor_written_by_safetensors_is_refused(read_hostile):
    content = safetensors.torch.save({"a": torch.zeros(4, dtype=torch.float8_e4m3fn)}, metadata=OUR_METADATA)

    assert "tensor 'a' has the unsupported dtype 'F8_E4M3'" in read_hostile(content)


def test_a_megabyte_long_tensor_name_is_shortened_in_the_message(read_hostile):
    content = raw_safetensors(
        {"n" * 1_000_000: {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8, metadata=OUR_METADATA
    )

    assert len(read_hostile(content)) < 300


@pytest.mark.parametrize(
    "header, problem",
    [
        (b'{"a": \xff\xfe}', "its header is not UTF-8 text"),
        (b'{"a": ', BAD_JSON + "EOF while parsing a value at line 1 column 6)"),
        (b"{}      [1, 2]", BAD_JSON + "trailing characters at line 1 column 9)"),
        (b'{"a": 1, "a": 2}', BAD_JSON + "invalid type: integer `1`, expected struct TensorInfo"),
        (b"{" + b'"a":' * 100_000 + b"1" + b"}" * 100_000, BAD_JSON),
        (b"{" + b"[" * 100_000, BAD_JSON),
    ],
)
def test_a_header_that_is_not_a_json_object_is_refused(read_hostile, header, problem):
    assert read_hostile(header_bytes(header)).startswith(PREFIX + problem)


@pytest.mark.parametrize("shape", [[0, 2**64 + 5], [0, 2**40, 2**40, 2**40]])
def test_empty_tensors_with_absurd_shapes_are_refused(read_hostile, shape):
    # They need no bytes, so only safetensors or torch object to them; that must still be a CheckpointError.
    content = raw_safetensors({"a": f32_entry(shape, 0, 0)}, metadata=OUR_METADATA)

    assert read_hostile(content).startswith((PREFIX + "safetensors could not read it (", PREFIX + BAD_JSON))


def test_a_header_length_below_two_is_refused(read_hostile):
    assert read_hostile(struct.pack("<Q", 1) + b"{}") == PREFIX + (
        BAD_JSON + "EOF while parsing an object at line 1 column 1)"
    )


# ----------------------------------------------------------------------------------------------
# Valid safetensors that are not (or not valid) VAE Studio checkpoints


def test_a_file_from_plain_safetensors_save_file_is_refused(read_hostile, tmp_path):
    safetensors.torch.save_file({"weights": torch.zeros(3)}, tmp_path / "plain.safetensors")

    message = read_hostile((tmp_path / "plain.safetensors").read_bytes())

    assert message == PREFIX + "it was written by another program (no VAE Studio metadata)"


def test_a_file_with_another_programs_metadata_is_refused(read_hostile):
    content = safetensors.torch.save({"weights": torch.zeros(3)}, metadata={"format": "pt"})

    assert read_hostile(content) == PREFIX + "it was written by another program (no VAE Studio metadata)"


@pytest.mark.parametrize(
    "metadata, problem",
    [
        ({**OUR_METADATA, "vae_studio": "{oops"}, "its VAE Studio metadata is not valid JSON (Expecting property name"),
        ({**OUR_METADATA, "vae_studio": "[1, 2]"}, "its VAE Studio metadata is not a JSON object"),
        (
            {**OUR_METADATA, "vae_studio": '{"a": 1, "a": 2}'},
            "its VAE Studio metadata is not valid JSON (the key 'a' appears twice)",
        ),
        ({"format": FORMAT_NAME, "format_version": "1"}, "its VAE Studio metadata is missing"),
        (
            {**OUR_METADATA, "format_version": "2"},
            "it was written by a newer VAE Studio (format version 2; this version reads up to 1)",
        ),
        ({**OUR_METADATA, "format_version": "²"}, "its format version '²' is not a positive whole number"),
        ({"format": FORMAT_NAME, "vae_studio": "{}"}, "its format version None is not a positive whole number"),
    ],
)
def test_broken_vae_studio_metadata_is_refused(read_hostile, metadata, problem):
    content = safetensors.torch.save({"weights": torch.zeros(3)}, metadata=metadata)

    assert read_hostile(content).startswith(PREFIX + problem)


def test_header_metadata_that_is_not_text_is_refused(read_hostile):
    content = raw_safetensors({}, metadata={**OUR_METADATA, "format_version": 1})

    assert read_hostile(content).startswith(PREFIX + BAD_JSON + "invalid type: integer `1`, expected a string")


# ----------------------------------------------------------------------------------------------
# Size limits, names and sources


def test_a_file_over_max_bytes_is_refused(read_hostile):
    content = valid_checkpoint(size=4096)

    assert read_hostile(content, max_bytes=1000) == PREFIX + (
        f"it is {len(content) / 1024:.1f} kB, more than the 1000 bytes limit"
    )


def test_the_module_limit_applies_when_max_bytes_is_not_given(read_hostile, monkeypatch):
    content = valid_checkpoint(size=4096)
    monkeypatch.setattr(safetensors_io, "MAX_CHECKPOINT_BYTES", 1000)

    assert read_hostile(content).endswith("more than the 1000 bytes limit")


def test_uploaded_bytes_without_a_name_are_called_uploaded_file():
    with pytest.raises(CheckpointError, match=r"^uploaded file is not a VAE Studio checkpoint: it is empty$"):
        read_checkpoint(b"")


def test_a_path_is_called_by_its_file_name_unless_named(tmp_path):
    path = tmp_path / "run-7.safetensors"
    path.write_bytes(b"")

    with pytest.raises(CheckpointError, match=r"^run-7\.safetensors is not a VAE Studio checkpoint"):
        read_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"^my upload is not a VAE Studio checkpoint"):
        read_checkpoint(str(path), name="my upload")


def test_a_missing_file_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match=r"^could not read gone\.safetensors: No such file or directory$"):
        read_checkpoint(tmp_path / "gone.safetensors")


def test_a_folder_is_a_checkpoint_error(tmp_path):
    (tmp_path / "folder.safetensors").mkdir()

    with pytest.raises(
        CheckpointError,
        match=r"^folder\.safetensors is not a VAE Studio checkpoint: it is not a "
        r"regular file$",
    ):
        read_checkpoint(tmp_path / "folder.safetensors")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_named_pipe_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.safetensors")

    with pytest.raises(CheckpointError, match="it is not a regular file"):
        read_checkpoint(tmp_path / "pipe.safetensors")


def test_an_unreadable_file_is_a_checkpoint_error(tmp_path, monkeypatch):
    path = tmp_path / FILE_NAME
    path.write_bytes(valid_checkpoint())

    def deny(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    # chmod 0 would prove nothing when the tests run as root, so the refusal is simulated
    monkeypatch.setattr(safetensors_io, "safe_open", deny)
    with pytest.raises(CheckpointError, match=r"^could not read model\.safetensors: Permission denied$"):
        read_checkpoint(path)


# ----------------------------------------------------------------------------------------------
# Errors from inside the safetensors library


def raise_safetensor_error(*args, **kwargs):
    raise safetensors.SafetensorError("Error while deserializing header: something\nodd")


def raise_memory_error(*args, **kwargs):
    raise MemoryError


def patch_loaders(monkeypatch, replacement) -> None:
    monkeypatch.setattr(safetensors_io, "safe_open", replacement)
    monkeypatch.setattr(safetensors_io.safetensors.torch, "load", replacement)


def test_errors_of_the_safetensors_library_become_checkpoint_errors(read_hostile, monkeypatch):
    patch_loaders(monkeypatch, raise_safetensor_error)

    assert read_hostile(valid_checkpoint()) == PREFIX + "safetensors could not read it (something odd)"


def test_running_out_of_memory_while_loading_is_a_checkpoint_error(read_hostile, monkeypatch):
    patch_loaders(monkeypatch, raise_memory_error)

    assert read_hostile(valid_checkpoint()) == f"not enough memory to load {FILE_NAME}"


def test_a_file_replaced_by_a_bigger_one_after_its_size_was_checked_is_not_loaded(tmp_path, monkeypatch):
    path = tmp_path / FILE_NAME
    write_checkpoint(path, {"weights": torch.zeros(2)}, {})
    real_safe_open = safetensors_io.safe_open

    def replace_then_open(*args, **kwargs):
        write_checkpoint(path, {"weights": torch.zeros(1_000_000)}, {})
        return real_safe_open(*args, **kwargs)

    monkeypatch.setattr(safetensors_io, "safe_open", replace_then_open)

    with pytest.raises(
        CheckpointError,
        match=r"^model\.safetensors is not a VAE Studio checkpoint: its tensors take "
        r"3\.8 MB, more than the 1000 bytes limit$",
    ):
        read_checkpoint(path, max_bytes=1000)


# ----------------------------------------------------------------------------------------------
# A writer killed mid-write

WRITER = """
import sys
import torch
from vae_core.safetensors_io import write_checkpoint

weights = {"weights": torch.ones(16 * 1024 * 1024)}  # 64 MB: a write long enough to be hit, cheap to build
generation = 1
while True:
    write_checkpoint(sys.argv[1], weights, {"generation": generation})
    generation += 1
"""


def wait_for_write_under_way(folder: Path, writer: subprocess.Popen, timeout: float = 30.0) -> None:
    """Return once the writer's temporary file has bytes in it, i.e. it is writing right now."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert writer.poll() is None, f"the writer exited early: {writer.stderr.read().decode()}"
        if any(temp.stat().st_size > 0 for temp in folder.glob(f".{FILE_NAME}.*.tmp")):
            return
        time.sleep(0.002)
    pytest.fail("the writer never started writing")


def test_killing_a_writer_mid_write_leaves_a_loadable_checkpoint(tmp_path):
    target = tmp_path / FILE_NAME
    write_checkpoint(target, {"weights": torch.zeros(4)}, {"generation": 0})
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], cwd=PROJECT_ROOT, stderr=subprocess.PIPE)
    try:
        # A fixed delay would land inside `import torch` (seconds here); this kills during the write.
        wait_for_write_under_way(tmp_path, writer)
    finally:
        writer.kill()  # SIGKILL: no cleanup handler runs
        writer.wait()
        writer.stderr.close()

    tensors, metadata = read_checkpoint(target)

    if metadata["generation"] == 0:
        assert torch.equal(tensors["weights"], torch.zeros(4))
    else:
        assert tensors["weights"].shape == (16 * 1024 * 1024,) and bool(tensors["weights"].eq(1).all())
    leftovers = [path.name for path in tmp_path.iterdir() if path != target]
    assert all(name.startswith(f".{FILE_NAME}.") and name.endswith(".tmp") for name in leftovers)


def test_metadata_over_its_limit_is_refused_before_it_is_parsed(read_hostile, monkeypatch):
    metadata = json.dumps({"notes": "x" * 200})
    content = safetensors.torch.save({"weights": torch.zeros(3)}, metadata={**OUR_METADATA, "vae_studio": metadata})
    monkeypatch.setattr(safetensors_io, "MAX_METADATA_CHARS", 100)

    assert read_hostile(content) == PREFIX + (
        f"its VAE Studio metadata is {len(metadata)} bytes, more than the 100 bytes limit"
    )
