"""Shared fixtures: small real data and tiny configs, so the suite stays fast on 2 CPU cores."""

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Nothing a test trains lands in the checkout's own checkpoints folder (the CLI's and the app's default).
os.environ.setdefault("VAE_STUDIO_CHECKPOINTS", tempfile.mkdtemp(prefix="vae_studio_tests_"))
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def mnist_sample():
    from vae_core.data import load_dataset
    return load_dataset("mnist-sample")


@pytest.fixture(scope="session")
def digits():
    from vae_core.data import load_dataset
    return load_dataset("digits")
