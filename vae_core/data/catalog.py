"""The built-in datasets, by name: bundled ones first (the default leads), then the idx ones."""

from __future__ import annotations

import os

from .bundled import DIGITS, MNIST_SAMPLE, Bundled
from .idx import FASHION_MNIST, KMNIST, MNIST, Idx

DEFAULT_DATASET = MNIST_SAMPLE.name

REGISTRY: dict[str, Bundled | Idx] = {
    entry.name: entry for entry in (MNIST_SAMPLE, DIGITS, MNIST, FASHION_MNIST, KMNIST)
}


def dataset_names() -> tuple[str, ...]:
    """Registry names, the default first."""
    return tuple(REGISTRY)


def describe_datasets(root: str | os.PathLike | None = None) -> list[dict]:
    """Name, description, availability and location of every registry dataset; never downloads."""
    root = os.path.abspath(os.path.expanduser(os.fspath(root))) if root is not None else None
    rows = []
    for name, entry in REGISTRY.items():
        where = entry.where(root)
        rows.append(
            {
                "name": name,
                "description": entry.description,
                "available": where is not None,
                "where": where if where is not None else entry.missing_hint(root),
            }
        )
    return rows
