"""The test images of a run, and their latent means, cached per (run, epoch)."""

from __future__ import annotations

import numpy as np
import streamlit as st
import torch

from vae_core.metrics import latent_means

from . import session
from .runs import RunView


def run_dataset(view: RunView):
    """The run's own data (same name, size, split and seed), shared across sessions."""
    return session.run_data(view.config)


# By count, not bytes: each entry is small by construction, at most 10,000 images (the Latent page's
# largest choice) x 128 dimensions (config.BOUNDS) of float32, 5 MB, so 8 of them 41 MB.
@st.cache_resource(max_entries=8, show_spinner=False)
def _latents(weights_key: tuple, count: int, _view: RunView) -> np.ndarray:
    data = run_dataset(_view)
    with torch.no_grad():
        mu = latent_means(_view.model, data.test_x[:count], data.test_y[:count] if data.test_y is not None else None)
    return mu.numpy().astype(np.float32)


def test_latents(view: RunView, count: int) -> np.ndarray:
    """Latent means of the first `count` test images under the weights the view holds."""
    return _latents(view.weights_key, count, view)
