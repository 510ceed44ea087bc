"""The per-user cache folder: what VAE Studio can rebuild but would rather not rebuild in every process.

Downloaded datasets, parsed bundled datasets, UMAP's compiled kernels. $XDG_CACHE_HOME/vae_studio, by
default ~/.cache/vae_studio. Nothing in it is needed: a cache that cannot be read or written is
skipped, never an error."""

from __future__ import annotations

import os
from pathlib import Path


def user_cache_dir() -> Path:
    cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(cache_home) / "vae_studio"
