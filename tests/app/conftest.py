"""AppTest fixtures: an isolated checkpoint folder with two small real runs (trained once per session
on scikit-learn's digits), and a fresh server-wide cache for every test."""

import os
import tempfile
from pathlib import Path

import pytest

# Before ui.session is imported anywhere: the app reads its checkpoint folder from here.
CHECKPOINTS = Path(tempfile.mkdtemp(prefix="vae_studio_app_tests_"))
os.environ["VAE_STUDIO_CHECKPOINTS"] = str(CHECKPOINTS)

APP = str(Path(__file__).resolve().parents[2] / "app.py")
TIMEOUT = 60


def train_checkpoint(name: str, **overrides) -> Path:
    from vae_core.checkpoint import save_trainer_checkpoint
    from vae_core.config import TrainConfig
    from vae_core.data import load_dataset
    from vae_core.trainer import Trainer, run_to_end

    config = TrainConfig(data="digits", hidden=(32,), latent_dim=2, batch_size=128, epochs=2, device="cpu",
                         **overrides)
    trainer = Trainer(config, load_dataset("digits"))
    run_to_end(trainer)
    return save_trainer_checkpoint(trainer, name, "finished", CHECKPOINTS / f"{name}.safetensors")


@pytest.fixture(scope="session")
def saved_runs():
    return [train_checkpoint("vae-beta1"), train_checkpoint("vae-beta4", beta=4.0),
            train_checkpoint("cvae-run", model="cvae")]


@pytest.fixture(autouse=True)
def fresh_server_state():
    """Each test sees a new registry (no job of an earlier test) and an empty cache."""
    import streamlit as st
    yield
    try:
        from ui.session import registry
        registry().stop_all()
    finally:
        st.cache_resource.clear()
        st.cache_data.clear()


@pytest.fixture
def app():
    from streamlit.testing.v1 import AppTest
    return AppTest.from_file(APP, default_timeout=TIMEOUT)


def open_page(app, page: str):
    app.switch_page(page)
    return app.run()


def assert_no_exception(app):
    assert not app.exception, [e.value for e in app.exception]


def plotly_specs(app) -> list[dict]:
    import json
    return [json.loads(c.proto.spec) for c in app.get("plotly_chart")]


def trace_values(values) -> list:
    """Plotly 7 sends numeric arrays as base64 typed arrays ({'dtype', 'bdata'}); decode either form."""
    import base64

    import numpy as np
    if isinstance(values, dict) and "bdata" in values:
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=np.dtype(values["dtype"])).tolist()
    return list(values)
