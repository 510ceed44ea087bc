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


def _user_cache_of_its_own() -> None:
    """The suite's user cache (vae_core/user_cache.py) is a folder of its own, for this process and
    the app servers it starts: a thread count timed while the suite loads the machine must not be the
    one the next `make run` trains with (vae_core/threads.py). The parsed datasets and numba's
    compiled kernels are linked from the real cache: they do not depend on the load, and rebuilding
    them in every session would cost minutes."""
    from vae_core.user_cache import user_cache_dir

    real, own = user_cache_dir(), Path(tempfile.mkdtemp(prefix="vae_studio_test_cache_"))
    (own / "vae_studio").mkdir()
    for shared in ("datasets", "numba"):
        try:
            (real / shared).mkdir(parents=True, exist_ok=True)
            (own / "vae_studio" / shared).symlink_to(real / shared, target_is_directory=True)
        except OSError:  # a read-only home: the suite builds them in its own folder
            pass
    os.environ["XDG_CACHE_HOME"] = str(own)


_user_cache_of_its_own()
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
