"""Hostile and broken datasets: each must end in a DataError that names the file and the problem, or in a
dataset whose `warnings` say what was skipped. Nothing may be unpickled or written outside the input."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import stat
import struct
import threading
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vae_core.data import idx, limits, load_dataset
from vae_core.errors import DataError


def png_bytes(value=0, size=(8, 8), mode="L") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, value).save(buffer, "PNG")
    return buffer.getvalue()


def noisy_png_bytes(size=(32, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (size[1], size[0]), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def write_zip(path: Path, members: dict) -> Path:
    """members: name or ZipInfo -> bytes."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, content in members.items():
            archive.writestr(member, content)
    return path


def good_images(count=2) -> dict[str, bytes]:
    return {f"good{i}.png": png_bytes(40 * (i + 1)) for i in range(count)}


def data_error(source, **options) -> str:
    with pytest.raises(DataError) as caught:
        load_dataset(source, **options)
    return str(caught.value)


def forbid_zip_reads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a member was read before the archive's sizes were checked")

    monkeypatch.setattr(zipfile.ZipFile, "open", refuse)


class CreatesMarkerWhenUnpickled:
    """Unpickling this calls open(marker, "w"): a harmless stand-in for arbitrary code execution."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


# --- .npz ----------------------------------------------------------------------------------------


def test_npz_object_array_is_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "pickle-ran"
    path = tmp_path / "evil.npz"
    objects = np.empty(3, dtype=object)
    objects[:] = [CreatesMarkerWhenUnpickled(marker) for _ in range(3)]
    np.savez(path, x=objects)
    # Control: the payload is real, loading it with pickling allowed runs it.
    with np.load(path, allow_pickle=True) as archive:
        archive["x"]
    assert marker.exists()
    marker.unlink()

    message = data_error(path)
    assert not marker.exists()
    assert "evil.npz" in message and "array x contains Python objects, which are not loaded for safety" in message


def test_npz_object_labels_are_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "pickle-ran"
    path = tmp_path / "labels.npz"
    labels = np.empty(3, dtype=object)
    labels[:] = [CreatesMarkerWhenUnpickled(marker) for _ in range(3)]
    np.savez(path, x=np.zeros((3, 4, 4), dtype=np.uint8), y=labels)
    message = data_error(path)
    assert not marker.exists()
    assert "labels.npz" in message and "array y contains Python objects" in message


def test_pickle_file_posing_as_npz_is_never_unpickled(tmp_path):
    marker = tmp_path / "pickle-ran"
    path = tmp_path / "sneaky.npz"
    path.write_bytes(pickle.dumps(CreatesMarkerWhenUnpickled(marker)))
    message = data_error(path)
    assert not marker.exists()
    assert "sneaky.npz" in message and "not a NumPy .npz archive" in message and "not loaded for safety" in message


@pytest.mark.parametrize(
    "arrays, problem",
    [
        (dict(x=np.array([[[0.5, np.nan], [0, 0]]] * 2)), "contains NaN or infinite pixel values"),
        (dict(x=np.array([[[0.5, np.inf], [0, 0]]] * 2)), "contains NaN or infinite pixel values"),
        (dict(x=np.zeros((2, 1, 1, 4, 4))), "x has 5 dimension(s), shape (2, 1, 1, 4, 4)"),
        (dict(x=np.zeros(16)), "x has 1 dimension(s)"),
        (dict(x=np.zeros((4, 4, 4), np.uint8), y=np.arange(3)), "y has shape (3,) but x holds 4 images"),
        (dict(x=np.zeros((4, 4, 4), np.uint8), y=np.zeros((4, 2), int)), "y has shape (4, 2)"),
        (dict(x=np.zeros((0, 28, 28), np.uint8)), "holds no images (the array has shape (0, 1, 28, 28))"),
        (dict(images=np.zeros((4, 4, 4))), "has no array named 'x' (the images); it holds: images"),
        (dict(x=np.zeros((4, 10))), "a flat (N, D) array needs D to be a square number"),
        (dict(x=np.zeros((4, 8, 8, 4))), "images need 1 (grayscale) or 3 (RGB) channels"),
        (dict(x=np.full((4, 4, 4), 300.0)), "pixel values must lie in 0..255 or 0..1, but they range from 300.0"),
        (dict(x=np.full((4, 4, 4), -1)), "range from -1 to -1"),
        (dict(x=np.zeros((4, 4, 4), np.complex64)), "pixel values must be numbers, not complex64"),
        (dict(x=np.zeros((4, 4, 4)), y=np.array([0, 1.5, 0, 1])), "labels must be whole numbers or text"),
    ],
    ids=[
        "nan",
        "inf",
        "rank-5",
        "rank-1",
        "short-y",
        "2d-y",
        "empty",
        "no-x",
        "flat-not-square",
        "four-channels",
        "above-255",
        "negative",
        "complex",
        "fractional-labels",
    ],
)
def test_broken_npz_names_file_and_problem(tmp_path, arrays, problem):
    path = tmp_path / "broken.npz"
    np.savez(path, **arrays)
    message = data_error(path)
    assert message.startswith("broken.npz: ") and problem in message


def test_npz_that_is_not_an_archive(tmp_path):
    path = tmp_path / "garbage.npz"
    path.write_bytes(b"PK\x03\x04 this is no zip")
    message = data_error(path)
    assert message.startswith("garbage.npz: is not a valid NumPy file")


def test_npz_member_is_size_checked_before_it_is_read(tmp_path, monkeypatch):
    path = tmp_path / "huge.npz"
    np.savez_compressed(path, x=np.zeros((64, 64, 64), np.uint8))  # 262,272 bytes unpacked, 1 KB packed
    monkeypatch.setattr(limits, "MAX_UNCOMPRESSED_BYTES", 100_000)
    message = data_error(path)
    assert message.startswith("huge.npz: array x unpacks to 262,272 bytes, more than the limit of 100,000")


# --- .zip: paths, links, bombs -------------------------------------------------------------------


def test_zip_members_escaping_the_archive_are_skipped_and_nothing_is_written(tmp_path, monkeypatch):
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    unsafe = [
        "../evil.png",
        "../../evil2.png",
        "/abs.png",
        "ok/../../../evil3.png",
        "C:/windows.png",
        "..\\backslash.png",
    ]
    archive = write_zip(deep / "traversal.zip", {name: png_bytes(255) for name in unsafe} | good_images())
    before = sorted(tmp_path.rglob("*"))
    dataset = load_dataset(archive)
    assert sorted(tmp_path.rglob("*")) == before
    assert not Path("/abs.png").exists() and not Path("/evil.png").exists()
    assert len(dataset.train_x) + len(dataset.test_x) == 2
    assert sorted(
        v * 255 for v in torch.cat([dataset.train_x, dataset.test_x])[:, 0, 0, 0].round(decimals=4).tolist()
    ) == pytest.approx([40, 80], abs=0.1)
    assert len(dataset.warnings) == 1
    warning = dataset.warnings[0]
    assert warning == "skipped 6 files with unsafe paths (absolute or containing '..')"


def test_zip_of_only_unsafe_members_is_refused(tmp_path):
    archive = write_zip(tmp_path / "only-evil.zip", {"../evil.png": png_bytes(), "/abs.png": png_bytes()})
    message = data_error(archive)
    assert message.startswith("only-evil.zip: holds no readable images")
    assert "skipped 2 files with unsafe paths" in message


def test_symlink_members_are_skipped(tmp_path):
    link = zipfile.ZipInfo("link.png")
    link.create_system = 3  # Unix, so the mode bits in external_attr mean what they say
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = write_zip(tmp_path / "links.zip", {link: b"/etc/passwd"} | good_images())
    dataset = load_dataset(archive)
    assert len(dataset.train_x) + len(dataset.test_x) == 2
    assert dataset.warnings == ("skipped 1 symbolic link",)


def test_zip_bomb_is_refused_before_anything_is_decompressed(tmp_path, monkeypatch):
    archive = write_zip(tmp_path / "bomb.zip", {"bomb.png": bytes(8 << 20)} | good_images())
    assert archive.stat().st_size < 64 << 10  # 8 MiB of zeros pack into a few KiB
    monkeypatch.setattr(limits, "MAX_UNCOMPRESSED_BYTES", 1 << 20)
    forbid_zip_reads(monkeypatch)
    message = data_error(archive)
    assert message.startswith("bomb.zip: unpacks to 8,38")  # 8 MiB of zeros plus two small images
    assert "more than the limit of 1,048,576 bytes" in message and "zip bomb" in message


def test_the_real_size_limit_refuses_an_archive_claiming_4_gib(tmp_path, monkeypatch):
    assert limits.MAX_UNCOMPRESSED_BYTES == 1 << 30
    path = write_zip(tmp_path / "claims.zip", {"huge.png": png_bytes()})
    raw = bytearray(path.read_bytes())
    central = raw.index(b"PK\x01\x02")
    raw[central + 24 : central + 28] = struct.pack("<I", 0xFFFFFFF0)  # uncompressed size in the central directory
    path.write_bytes(bytes(raw))
    forbid_zip_reads(monkeypatch)
    message = data_error(path)
    assert message.startswith("claims.zip: unpacks to 4,294,967,280 bytes, more than the limit of 1,073,741,824")


def test_oversized_member_is_skipped(tmp_path, monkeypatch):
    archive = write_zip(tmp_path / "sizes.zip", {"big.png": noisy_png_bytes((64, 64))} | good_images())
    monkeypatch.setattr(limits, "MAX_MEMBER_BYTES", 1000)
    dataset = load_dataset(archive)
    assert dataset.warnings == ("skipped 1 file larger than 1,000 bytes",)


def test_too_many_images_are_refused(tmp_path, monkeypatch):
    archive = write_zip(tmp_path / "many.zip", good_images(3))
    monkeypatch.setattr(limits, "MAX_IMAGE_COUNT", 2)
    forbid_zip_reads(monkeypatch)
    assert data_error(archive) == "many.zip: holds 3 images, more than the limit of 2"


def test_image_count_limit_is_real():
    assert limits.MAX_IMAGE_COUNT == 200_000 and limits.MAX_MEMBER_BYTES == 64 << 20


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (PIL must refuse it before decoding)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def test_decompression_bomb_images_are_skipped(tmp_path, monkeypatch):
    archive = write_zip(
        tmp_path / "pixels.zip",
        {"bomb.png": png_claiming(100_000, 100_000), "wide.png": png_bytes(size=(20, 20))} | good_images(),
    )
    monkeypatch.setattr(limits, "MAX_IMAGE_PIXELS", 100)  # 20 x 20 = 400 is now too many too
    dataset = load_dataset(archive)
    assert dataset.warnings == ("skipped 2 images with more than 100 pixels",)
    assert dataset.image_shape == (1, 8, 8)


def test_real_pixel_limit_refuses_a_claimed_10_gigapixel_png(tmp_path):
    assert limits.MAX_IMAGE_PIXELS == 40_000_000
    archive = write_zip(tmp_path / "gigapixel.zip", {"bomb.png": png_claiming(100_000, 100_000)} | good_images())
    dataset = load_dataset(archive)
    assert dataset.warnings == ("skipped 1 image with more than 40,000,000 pixels",)


# --- .zip / folder: broken and odd images --------------------------------------------------------


def test_corrupt_images_are_skipped_and_reported(tmp_path):
    noisy = noisy_png_bytes()
    archive = write_zip(
        tmp_path / "corrupt.zip",
        {
            "broken.png": b"\x89PNG\r\n\x1a\n" + b"garbage" * 10,
            "random.jpg": b"this is not a jpeg",
            "truncated.png": noisy[: len(noisy) // 2],  # header fine, pixel data cut: fails only when decoded
            "empty.gif": b"",
        }
        | good_images(),
    )
    dataset = load_dataset(archive)
    assert len(dataset.train_x) + len(dataset.test_x) == 2
    assert dataset.warnings == ("skipped 4 corrupt or unreadable images",)


def test_only_the_listed_decoders_may_run(tmp_path):
    """PIL picks a decoder by content: a TIFF or EPS named .png must not reach TIFF/EPS code (EPS runs Ghostscript)."""
    tiff = io.BytesIO()
    Image.new("L", (8, 8), 5).save(tiff, "TIFF")
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n"
    archive = write_zip(tmp_path / "disguised.zip", {"tiff.png": tiff.getvalue(), "eps.png": eps} | good_images())
    dataset = load_dataset(archive)
    assert dataset.warnings == ("skipped 2 corrupt or unreadable images",)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_pipe_or_dangling_link_named_png_in_a_folder_is_skipped_not_read(tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    for name, content in good_images().items():
        (folder / name).write_bytes(content)
    os.mkfifo(folder / "pipe.png")  # reading it would block forever
    (folder / "dangling.png").symlink_to(tmp_path / "missing.png")
    dataset = load_dataset(folder)
    assert dataset.warnings == ("skipped 2 corrupt or unreadable images",)


def test_non_image_files_are_skipped_and_reported(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name, content in good_images().items():
        (folder / name).write_bytes(content)
    (folder / "notes.txt").write_text("hello")
    (folder / "labels.csv").write_text("a,b\n")
    dataset = load_dataset(folder)
    assert dataset.warnings == ("skipped 2 files that are not images",)


def test_nothing_usable_is_a_data_error_listing_what_was_skipped(tmp_path):
    archive = write_zip(tmp_path / "useless.zip", {"notes.txt": b"hi", "broken.png": b"nope"})
    message = data_error(archive)
    assert message.startswith("useless.zip: holds no readable images")
    assert "skipped 1 file that is not an image" in message and "notes.txt" not in message
    assert "skipped 1 corrupt or unreadable image" in message and "broken.png" not in message


def test_empty_folder_is_a_data_error(tmp_path):
    (tmp_path / "nothing").mkdir()
    assert data_error(tmp_path / "nothing") == "nothing: holds no readable images. "


def test_mixed_sizes_and_modes_become_one_rgb_size(tmp_path):
    archive = write_zip(
        tmp_path / "mixed.zip",
        {
            "red.png": png_bytes((255, 0, 0), size=(10, 10), mode="RGB"),
            "gray.png": png_bytes(100, size=(12, 16), mode="L"),
            "alpha.png": png_bytes((0, 0, 255, 128), size=(28, 28), mode="RGBA"),
        },
    )
    dataset = load_dataset(archive)
    images = torch.cat([dataset.train_x, dataset.test_x])
    assert images.shape == (3, 3, 28, 28)
    colors = sorted(tuple(round(float(v) * 255) for v in image[:, 14, 14]) for image in images)
    assert colors == [(0, 0, 255), (100, 100, 100), (255, 0, 0)]
    assert dataset.warnings == (
        "the images come in 3 different sizes, so all were resized to 28x28 (pass image_size to choose another size)",
        "some images are in color, so the grayscale ones were converted to RGB",
    )
    assert load_dataset(archive, image_size=16).image_shape == (3, 16, 16)


def test_grayscale_modes_stay_one_channel(tmp_path):
    gray_palette = Image.new("L", (8, 8), 77).convert("P")
    buffer = io.BytesIO()
    gray_palette.save(buffer, "GIF")
    sixteen_bit = io.BytesIO()
    Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16)).save(sixteen_bit, "PNG")
    archive = write_zip(
        tmp_path / "grays.zip",
        {
            "palette.gif": buffer.getvalue(),
            "bilevel.png": png_bytes(1, mode="1"),
            "with-alpha.png": png_bytes((150, 20), mode="LA"),
            "deep.png": sixteen_bit.getvalue(),
        },
    )
    dataset = load_dataset(archive)
    assert dataset.image_shape == (1, 8, 8) and dataset.warnings == ()
    values = sorted(round(float(v) * 255) for v in torch.cat([dataset.train_x, dataset.test_x])[:, 0, 0, 0])
    assert values == [77, 150, 255, 255]


def test_images_at_mixed_depths_load_unlabeled_with_a_warning(tmp_path):
    archive = write_zip(
        tmp_path / "depths.zip", {"top.png": png_bytes(), "cats/a.png": png_bytes(), "dogs/b.png": png_bytes()}
    )
    dataset = load_dataset(archive)
    assert not dataset.has_labels
    assert dataset.warnings == (
        "some images sit in subfolders and some do not, so the dataset was loaded without "
        "labels (put every image in a subfolder named after its class)",
    )


def test_a_zip_that_is_not_a_zip(tmp_path):
    path = tmp_path / "fake.zip"
    path.write_bytes(b"definitely not a zip archive")
    assert data_error(path).startswith("fake.zip: is not a valid zip file")


def test_unsupported_file_type(tmp_path):
    path = tmp_path / "readme.txt"
    path.write_text("hi")
    assert data_error(path) == (
        "readme.txt: cannot load .txt files; use a .npz, .npy, .zip or .csv file or a folder of images"
    )


# --- .csv ----------------------------------------------------------------------------------------


def write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(rows) + "\n")
    return path


HEADER = "label,p0,p1,p2,p3"


@pytest.mark.parametrize(
    "rows, problem",
    [
        ([HEADER, "0,1,2,3,4", "1,5,6,7,8", "0,9,9,abc,9"], "row 3 (line 4), column 4 is not a number"),
        (["0,1,2,3,4", "1,5,,7,8"], "row 2 (line 2), column 3 is empty"),
        ([HEADER, "0,1,2,3,4", ",5,6,7,8"], "row 2 (line 3) has an empty label"),
        (["a,b,c", "1,2,3", "4,5,6"], "has 3 pixel columns; one image needs a square number of them"),
        (
            [HEADER, "0,1,2,3,400", "1,0,0,0,0"],
            "pixel values must lie in 0..255 or 0..1, but they range from 0.0 to 400.0",
        ),
        ([HEADER, "0,1,2,3,4", "1,5,6,7,8,9,10"], "is not a readable CSV file"),
        ([HEADER], "has no data rows"),
    ],
    ids=["text-in-pixel", "empty-cell", "empty-label", "not-square", "above-255", "ragged", "header-only"],
)
def test_broken_csv_names_file_row_column_and_problem(tmp_path, rows, problem):
    message = data_error(write_csv(tmp_path / "bad.csv", rows))
    assert message.startswith("bad.csv: ") and problem in message


def test_empty_csv(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    assert data_error(path) == "empty.csv: is empty"


# --- idx -----------------------------------------------------------------------------------------


def write_idx(path: Path, magic: int, shape: tuple, payload: bytes, gzipped=False) -> Path:
    content = struct.pack(">I", magic) + struct.pack(f">{len(shape)}I", *shape) + payload
    path.write_bytes(gzip.compress(content) if gzipped else content)
    return path


def test_idx_with_the_wrong_magic_number(tmp_path):
    path = write_idx(tmp_path / "train-images-idx3-ubyte", 0x0801, (2,), b"\0\0")
    with pytest.raises(DataError) as caught:
        idx.read_idx(path, 3)
    assert str(caught.value).startswith(f"{path}: magic number is 2049, not 2051")


def test_truncated_and_overlong_idx(tmp_path):
    truncated = write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", 0x0803, (2, 3, 3), bytes(10), gzipped=True)
    with pytest.raises(DataError) as caught:
        idx.read_idx(truncated, 3)
    assert str(caught.value) == f"{truncated}: is truncated: its header announces shape (2, 3, 3) (18 bytes of data)"
    overlong = write_idx(tmp_path / "t10k-labels-idx1-ubyte", 0x0801, (2,), bytes(3))
    with pytest.raises(DataError) as caught:
        idx.read_idx(overlong, 1)
    assert "has extra bytes at the end" in str(caught.value)


def test_idx_claiming_gigabytes_is_refused_before_reading(tmp_path):
    path = write_idx(tmp_path / "train-images-idx3-ubyte", 0x0803, (60000, 10000, 10000), b"")
    with pytest.raises(DataError) as caught:
        idx.read_idx(path, 3)
    assert str(caught.value).startswith(f"{path}: announces 6,000,000,000,000 bytes of data, more than the limit")


def test_idx_gz_that_is_not_gzip_and_mismatched_counts(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_STUDIO_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    root = tmp_path / "root"
    root.mkdir()
    write_idx(root / "train-images-idx3-ubyte", 0x0803, (3, 2, 2), bytes(12))
    write_idx(root / "train-labels-idx1-ubyte", 0x0801, (2,), bytes(2))
    write_idx(root / "t10k-images-idx3-ubyte", 0x0803, (1, 2, 2), bytes(4))
    (root / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip")
    message = data_error("mnist", root=root)
    assert message == (f"{root / 'train-labels-idx1-ubyte'}: holds 2 labels but train-images-idx3-ubyte holds 3 images")
    write_idx(root / "train-labels-idx1-ubyte", 0x0801, (3,), bytes(3))
    message = data_error("mnist", root=root)
    assert message.startswith(f"{root / 't10k-labels-idx1-ubyte.gz'}: could not be read")


def test_no_file_outside_tmp_is_created_by_loading(tmp_path):
    """A smoke check over all loaders: loading never writes next to its input."""
    np.savez(tmp_path / "ok.npz", x=np.zeros((4, 4, 4), np.uint8))
    write_zip(tmp_path / "ok.zip", good_images())
    before = sorted(os.listdir(tmp_path))
    load_dataset(tmp_path / "ok.npz")
    load_dataset(tmp_path / "ok.zip")
    assert sorted(os.listdir(tmp_path)) == before


# --- issue 13: small files that asked for gigabytes, odd files that crashed or hung -----------------


def npz_claiming(path: Path, shape: tuple, descr: str = "|u1") -> Path:
    """An .npz whose x.npy header claims `shape` but which holds only a few bytes of data."""
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"
    header += " " * (63 - (10 + len(header)) % 64) + "\n"  # numpy pads the header to 64 bytes
    npy = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + bytes(64)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", npy)
    return path


def forbid_array_reads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("array data was read before its header was checked")

    monkeypatch.setattr(np.lib.format, "read_array", refuse)


def test_large_images_are_scaled_down_before_they_reach_a_model(tmp_path):
    """Two blank 1000x1000 PNGs (a few hundred bytes zipped) made a model of gigabytes at their native size."""
    assert limits.MAX_NATIVE_SIDE == 128
    archive = write_zip(tmp_path / "blank.zip", {name: png_bytes(size=(1000, 1000)) for name in ("a.png", "b.png")})
    assert archive.stat().st_size < 4096
    dataset = load_dataset(archive)
    assert dataset.image_shape == (1, 128, 128)
    assert dataset.warnings == (
        "the images are 1000x1000 pixels, more than the limit of 128 a side, so all were "
        "scaled down to 128x128 (pass image_size to choose another size)",
    )
    assert (
        load_dataset(archive, image_size=32).image_shape == (1, 32, 32)
        and load_dataset(archive, image_size=32).warnings == ()
    )


def test_large_array_images_are_scaled_down_keeping_their_shape(tmp_path):
    path = tmp_path / "tall.npz"
    np.savez(path, x=np.full((2, 600, 300), 200, np.uint8))
    dataset = load_dataset(path)
    assert dataset.image_shape == (1, 128, 64)
    assert "the images are 300x600 pixels, more than the limit of 128 a side" in dataset.warnings[0]
    assert torch.allclose(torch.cat([dataset.train_x, dataset.test_x]), torch.tensor(200 / 255))


@pytest.mark.parametrize(
    "shape, problem",
    [
        (
            (640_000, 28, 28),
            "array x has shape (640000, 28, 28): 501,760,000 values, more than the limit of 268,435,456",
        ),
        (
            (1_000_000, 1000, 1000),
            "array x has shape (1000000, 1000, 1000) of uint8: 1,000,000,000,000 bytes, "
            "more than the limit of 1,073,741,824 bytes",
        ),
    ],
    ids=["500-million-zeros", "931-GiB"],
)
def test_npz_header_claiming_too_much_is_refused_before_reading(tmp_path, monkeypatch, shape, problem):
    path = npz_claiming(tmp_path / "claims.npz", shape)
    forbid_array_reads(monkeypatch)
    assert path.stat().st_size < 1024
    assert data_error(path).startswith(f"claims.npz: {problem}")


def test_npy_header_is_checked_too(tmp_path, monkeypatch):
    path = tmp_path / "claims.npy"
    path.write_bytes(zipfile.ZipFile(npz_claiming(tmp_path / "inner.npz", (10**6, 10**6))).read("x.npy"))
    forbid_array_reads(monkeypatch)
    assert data_error(path).startswith("claims.npy: array x has shape (1000000, 1000000) of uint8: ")


def test_a_real_npz_is_refused_by_values_without_reading_its_data(tmp_path, monkeypatch):
    path = tmp_path / "zeros.npz"
    np.savez_compressed(path, x=np.zeros((64, 64, 64), np.uint8))
    monkeypatch.setattr(limits, "MAX_DATASET_VALUES", 100_000)
    forbid_array_reads(monkeypatch)
    assert data_error(path).startswith(
        "zeros.npz: array x has shape (64, 64, 64): 262,144 values, more than the limit of 100,000"
    )


def test_csv_with_a_million_columns_is_refused_from_its_first_line(tmp_path):
    path = tmp_path / "wide.csv"
    row = ",".join(["0"] * 1_000_000) + "\n"
    path.write_text(row + row)
    started = time.perf_counter()
    message = data_error(path)
    assert time.perf_counter() - started < 5
    assert message == (
        "wide.csv: has 1,000,000 columns, more than the limit of 65,537 (one row is one image: its pixels and a label)"
    )


def test_csv_limits_on_line_and_file_size(tmp_path, monkeypatch):
    path = write_csv(tmp_path / "long.csv", [",".join(["1"] * 600), "1,2"])
    monkeypatch.setattr(limits, "MAX_CSV_LINE_BYTES", 1000)
    assert data_error(path) == "long.csv: line 1 is longer than 1,000 bytes, the limit for one row of pixels"
    monkeypatch.setattr(limits, "MAX_CSV_BYTES", 100)
    assert data_error(path) == (
        "long.csv: is 1,204 bytes, more than the limit of 100 bytes for a CSV file (save large datasets as .npz)"
    )


def test_csv_whose_first_cell_passes_the_csv_modules_field_limit(tmp_path):
    path = write_csv(tmp_path / "field.csv", ["1" * 140_000 + ",2,3,4,5", "1,2,3,4,5"])
    assert data_error(path) == "field.csv: line 1 has a cell longer than 131,072 characters, the limit for one cell"


def load_in_thread(source, seconds: float = 10.0):
    """load_dataset(source) in a daemon thread: (finished in time, the exception it raised or None)."""
    outcome = []

    def run():
        try:
            load_dataset(source)
        except Exception as error:
            outcome.append(error)
        else:
            outcome.append(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive(), (outcome or [None])[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
@pytest.mark.parametrize("name", ["pipe.csv", "pipe.npz", "pipe.zip"])
def test_a_named_pipe_is_refused_without_waiting_for_a_writer(tmp_path, name):
    pipe = tmp_path / name
    os.mkfifo(pipe)
    finished, error = load_in_thread(pipe)
    if not finished:  # let the stuck reader go before failing
        os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))
    assert finished, "loading a named pipe hung"
    assert isinstance(error, DataError)
    assert str(error) == f"{name}: is a named pipe, so it is not read; data must be a regular file or a folder"


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
@pytest.mark.parametrize("name", ["zero.csv", "zero.npy", "zero.zip"])
def test_a_link_to_a_device_is_refused_before_reading(tmp_path, name):
    (tmp_path / name).symlink_to("/dev/zero")
    finished, error = load_in_thread(tmp_path / name)
    assert finished and isinstance(error, DataError)
    assert str(error) == f"{name}: is a device, so it is not read; data must be a regular file or a folder"


# --- issue 13: messages about data never quote other files ----------------------------------------


def test_a_folder_of_other_files_is_refused_by_counts_not_names(tmp_path):
    folder = tmp_path / "etc"
    folder.mkdir()
    for name in ("adduser.conf", "passwd", "shadow.png"):
        (folder / name).write_text("root:x:0:0")
    message = data_error(folder)
    assert message == (
        "etc: holds no readable images. skipped 2 files that are not images; skipped 1 corrupt or unreadable image"
    )


def test_a_csv_error_gives_the_position_not_the_cell(tmp_path):
    path = write_csv(tmp_path / "users.csv", ["label,p0,p1,p2,p3", "0,1,2,3,4", "1,root,hunter2,3,4"])
    message = data_error(path)
    assert message == "users.csv: row 2 (line 3), column 2 is not a number"
    assert "hunter2" not in message and "root" not in message


def test_a_folder_is_walked_only_so_far(tmp_path, monkeypatch):
    folder = tmp_path / "root"
    (folder / "deep").mkdir(parents=True)
    for index in range(4):
        (folder / "deep" / f"{index}.txt").write_text("x")
    monkeypatch.setattr(limits, "MAX_FOLDER_FILES", 3)
    assert data_error(folder) == "root: holds more than 3 files, the limit for a folder"
