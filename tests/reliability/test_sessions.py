"""Several browser sessions at once: each has its own run and uploads; a busy device says so."""

import os

import pytest
from apphelpers import APP, CHECKPOINTS, train_checkpoint

assert os.environ["VAE_STUDIO_CHECKPOINTS"] == str(CHECKPOINTS)


@pytest.fixture
def two_sessions():
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    yield AppTest.from_file(APP, default_timeout=60), AppTest.from_file(APP, default_timeout=60)
    from ui.session import registry

    registry().stop_all()
    st.cache_resource.clear()


def _checkpoints_page(app):
    app.switch_page("app_pages/checkpoints.py")
    return app.run()


def test_an_upload_is_a_new_run_that_every_local_session_sees(two_sessions):
    """The local model (README, Security): one person, so every tab sees every run; an upload is
    imported under a new id and leaves the run it copies untouched."""
    alice, bob = two_sessions
    shared = train_checkpoint("shared-run")
    before = shared.read_bytes()
    _checkpoints_page(alice)
    next(u for u in alice.file_uploader if "checkpoint" in u.label.lower()).upload(
        "alices.safetensors", shared.read_bytes()
    )
    alice.run()
    alice.run()
    runs = set(alice.dataframe[0].value["run"])
    _checkpoints_page(bob)
    assert set(bob.dataframe[0].value["run"]) == runs and len(runs - {"shared-run"}) >= 1
    assert shared.read_bytes() == before
    assert alice.session_state["_upload_token"] != bob.session_state.get("_upload_token", "")


def test_a_second_session_queues_on_a_busy_device(two_sessions):
    alice, bob = two_sessions
    for app in (alice, bob):
        app.run()
        {s.label: s for s in app.selectbox}["Dataset"].set_value("digits")
        {s.label: s for s in app.slider}["Epochs"].set_value(200)
        next(b for b in app.button if b.label == "Start training").click()
        app.run()
    assert not alice.exception and not bob.exception
    from ui.session import registry

    assert alice.session_state["run"] != bob.session_state["run"]
    assert registry().get(bob.session_state["run"]).snapshot().status == "queued"
