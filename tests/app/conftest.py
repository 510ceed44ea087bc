"""AppTest fixtures: two small real runs in an isolated checkpoint folder, a fresh server-wide
cache for every test, and an AppTest of the whole app."""

import pytest
from apphelpers import APP, TIMEOUT, train_checkpoint


@pytest.fixture(scope="session")
def saved_runs():
    return [
        train_checkpoint("vae-beta1"),
        train_checkpoint("vae-beta4", beta=4.0),
        train_checkpoint("cvae-run", model="cvae"),
        train_checkpoint("vae-z4", latent_dim=4),
        train_checkpoint("ae-run", model="ae"),
    ]


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
