"""Which latent dimensions are in use: the one definition (config.ACTIVE_KL_NATS), numpy only, so a
page draws a run's per-dimension KL before torch has loaded. metrics.py computes the KLs it reads."""

from __future__ import annotations

import numpy as np

from .config import ACTIVE_KL_NATS


def active_dimensions(kl_per_dim) -> np.ndarray:
    """Which latent dimensions are active (True) or collapsed (False), from each dimension's test KL
    in nats: the one definition (see ACTIVE_KL_NATS). A model without a KL (ae, vqvae) has none."""
    return np.asarray(kl_per_dim, dtype=np.float64) >= ACTIVE_KL_NATS


def active_units(kl_per_dim) -> int:
    """How many latent dimensions are active (see ACTIVE_KL_NATS)."""
    return int(active_dimensions(kl_per_dim).sum())
