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


def test_uploads_are_private_to_their_session(two_sessions):
    alice, bob = two_sessions
    shared = train_checkpoint("shared-run")
    _checkpoints_page(alice)
    next(u for u in alice.file_uploader if "checkpoint" in u.label.lower()).upload(
        "alices.safetensors", shared.read_bytes())
    alice.run()
    alice.run()
    assert "alices.safetensors" in set(alice.dataframe[0].value["file"])
    _checkpoints_page(bob)
    files = set(bob.dataframe[0].value["file"])
    assert "shared-run.safetensors" in files and "alices.safetensors" not in files
    assert alice.session_state["_upload_token"] != bob.session_state["_upload_token"]


def test_a_second_session_cannot_start_on_a_busy_device(two_sessions):
    alice, bob = two_sessions
    for app in (alice, bob):
        app.run()
        {s.label: s for s in app.selectbox}["Dataset"].set_value("digits")
        {s.label: s for s in app.slider}["Epochs"].set_value(200)
        next(b for b in app.button if b.label == "Start training").click()
        app.run()
    assert not alice.exception and not bob.exception
    assert "run" in alice.session_state
    assert any("is busy training run" in e.value for e in bob.error)
    assert alice.session_state["run"] not in (bob.query_params.get("run") or [])
