"""MNIST and its look-alikes (Fashion-MNIST, Kuzushiji-MNIST) from the four standard idx files.

The files are looked for in `root`, $VAE_STUDIO_DATA, the user cache (~/.cache/vae_studio) and Debian's package folder;
torchvision downloads them only when the caller asks (download=True)."""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

import vae_core.data.limits as limits

from ..errors import DataError
from ..user_cache import user_cache_dir
from .bundled import DIGIT_NAMES
from .dataset import ImageDataset, Options, finish

DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist
FASHION_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
KMNIST_NAMES = ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")
IDX_FILES = {  # role -> standard file name (optionally + ".gz")
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


class Idx:
    """A dataset with an official split in the four standard idx files (MNIST and its look-alikes)."""

    def __init__(
        self,
        name: str,
        title: str,
        description: str,
        torchvision_name: str,
        class_names: tuple[str, ...],
        extra_dirs: tuple[str, ...] = (),
    ):
        self.name, self.title, self.description = name, title, description
        self.torchvision_name, self.class_names, self.extra_dirs = torchvision_name, class_names, extra_dirs

    def search_dirs(self, root: str | None) -> list[Path]:
        """Folders that may hold the idx files, most specific first (evaluated per call: env and HOME may change).

        `root` itself comes after its per-dataset subfolders: files directly in it could be any of the datasets."""
        dirs: list[Path] = []
        if root:
            dirs += [Path(root, self.name), Path(root, self.torchvision_name, "raw"), Path(root)]
        if os.environ.get("VAE_STUDIO_DATA"):
            data_dir = Path(os.path.expanduser(os.environ["VAE_STUDIO_DATA"]))
            dirs += [data_dir / self.name, data_dir / self.torchvision_name / "raw"]
        cache = user_cache_dir()
        dirs += [cache / self.name, cache / self.torchvision_name / "raw"]
        return dirs + [Path(extra) for extra in self.extra_dirs]

    def find(self, root: str | None) -> dict[str, Path] | None:
        """The four files from the first folder that has all of them (plain preferred to .gz), or None."""
        for directory in self.search_dirs(root):
            files = {}
            for role, file_name in IDX_FILES.items():
                candidates = [directory / file_name, directory / (file_name + ".gz")]
                found = next((path for path in candidates if path.is_file()), None)
                if found is None:
                    break
                files[role] = found
            else:
                return files
        return None

    def where(self, root: str | None) -> str | None:
        files = self.find(root)
        return None if files is None else str(files["train_images"].parent)

    def missing_hint(self, root: str | None) -> str:
        return f"not found; put the idx files in {self.search_dirs(root)[0]} or load with download=True"

    def stamp(self, root: str | None) -> tuple | None:
        files = self.find(root)
        if files is None:
            return None
        return tuple((str(path), path.stat().st_size, path.stat().st_mtime_ns) for path in files.values())

    def load(self, options: Options, download: bool, root: str | None) -> ImageDataset:
        files = self.find(root)
        if files is None and download:
            self._download(root)
            files = self.find(root)
        if files is None:
            raise DataError(self._missing_message(root))
        train_x, train_y = read_idx_pair(files["train_images"], files["train_labels"], len(self.class_names))
        test_x, test_y = read_idx_pair(files["test_images"], files["test_labels"], len(self.class_names))
        source = (
            f"{len(train_y) + len(test_y):,} {self.title} images (official {len(train_y):,}/{len(test_y):,} "
            f"split) from {files['train_images'].parent}"
        )
        return finish(
            self.name,
            train_x[:, None],
            train_y,
            self.class_names,
            source=source,
            options=options,
            test=(test_x[:, None], test_y),
        )

    def _download(self, root: str | None) -> None:
        target = root or os.environ.get("VAE_STUDIO_DATA") or str(user_cache_dir())
        try:
            import torchvision.datasets

            getattr(torchvision.datasets, self.torchvision_name)(target, train=True, download=True)
        except Exception as error:  # network, HTTP, disk and checksum failures all mean the same to the user
            raise DataError(
                f"could not download {self.title} into {target}: {error}\n"
                + self._missing_message(root, offer_download=False)
            ) from None

    def _missing_message(self, root: str | None, offer_download: bool = True) -> str:
        names = ", ".join(IDX_FILES.values())
        folders = "\n".join(f"  {directory}" for directory in self.search_dirs(root))
        message = (
            f"{self.title} ({self.name}) is not on this machine. Put its four idx files "
            f"({names}; each may also be gzipped as .gz) into one of these folders:\n{folders}"
        )
        if offer_download:
            message += "\nor pass download=True (--download on the command line) to fetch them with torchvision."
        return message


def read_idx(path: Path, dims: int) -> np.ndarray:
    """Parse an idx file of unsigned bytes (plain or gzip): magic 0x0000 08 <dims>, big-endian sizes, data."""
    expected_magic = 0x0800 | dims
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as stream:
            magic_bytes = stream.read(4)
            magic = struct.unpack(">I", magic_bytes)[0] if len(magic_bytes) == 4 else None
            if magic != expected_magic:
                raise DataError(
                    f"{path}: magic number is {magic}, not {expected_magic}: this is not an idx file "
                    f"of {dims}-dimensional unsigned bytes"
                )
            sizes = stream.read(4 * dims)
            if len(sizes) < 4 * dims:
                raise DataError(f"{path}: is truncated inside its header")
            shape = struct.unpack(f">{dims}I", sizes)
            size = math.prod(shape)
            if size > limits.MAX_UNCOMPRESSED_BYTES:
                raise DataError(
                    f"{path}: announces {size:,} bytes of data, more than the limit of "
                    f"{limits.MAX_UNCOMPRESSED_BYTES:,} bytes"
                )
            data = stream.read(size + 1)  # one byte more reveals trailing garbage
    except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: could not be read: {error}") from None
    if len(data) != size:
        problem = "is truncated" if len(data) < size else "has extra bytes at the end"
        raise DataError(f"{path}: {problem}: its header announces shape {shape} ({size:,} bytes of data)")
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def read_idx_pair(images_path: Path, labels_path: Path, class_count: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(images_path, 3), read_idx(labels_path, 1)
    if len(images) != len(labels):
        raise DataError(
            f"{labels_path}: holds {len(labels):,} labels but {images_path.name} holds {len(images):,} images"
        )
    if len(labels) and labels.max() >= class_count:
        raise DataError(f"{labels_path}: holds label {labels.max()}, but this dataset has {class_count} classes")
    return images, labels.astype(np.int64)


MNIST = Idx(
    "mnist",
    title="MNIST",
    description="MNIST handwritten digits: 60,000 train + 10,000 test (1x28x28, 10 classes)",
    torchvision_name="MNIST",
    class_names=DIGIT_NAMES,
)

FASHION_MNIST = Idx(
    "fashion-mnist",
    title="Fashion-MNIST",
    description="Fashion-MNIST clothing photos: 60,000 train + 10,000 test (1x28x28, 10 classes)",
    torchvision_name="FashionMNIST",
    class_names=FASHION_NAMES,
    extra_dirs=(DEBIAN_FASHION_MNIST_DIR,),
)

KMNIST = Idx(
    "kmnist",
    title="Kuzushiji-MNIST",
    description="Kuzushiji-MNIST cursive Japanese characters: 60,000 train + 10,000 test (1x28x28, 10 classes)",
    torchvision_name="KMNIST",
    class_names=KMNIST_NAMES,
)
