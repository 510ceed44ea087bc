"""Served to several people (ui/access.py): two signed-in identities, Alice and Bob, in sessions of
one server. Each sees and drives their own runs and uploads only; shared runs (no owner: the CLI's,
here the `saved_runs` fixture) are visible and decodable by both, stoppable or deletable by neither.

The served mode is switched on as a real server does, by an [auth] section in the secrets
(`AppTest.secrets`), and the identities are what `st.user` returns (`AppTest.user`)."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from apphelpers import (
    APP,
    CHECKPOINTS,
    TIMEOUT,
    assert_no_exception,
    page_text,
    rendered,
    train_checkpoint,
)
from streamlit.testing.v1 import AppTest

ISSUER = "https://id.example"
ALICE = {"is_logged_in": True, "iss": ISSUER, "sub": "alice-1", "email": "alice@example.com", "name": "Alice"}
BOB = {"is_logged_in": True, "iss": ISSUER, "sub": "bob-2", "email": "bob@example.com", "name": "Bob"}
AUTH = {
    "redirect_uri": "http://localhost:8501/oauth2callback",
    "cookie_secret": "s" * 32,
    "client_id": "studio",
    "client_secret": "secret",
    "server_metadata_url": f"{ISSUER}/.well-known/openid-configuration",
}


def served_session(user: dict, page: str | None = None, run_id: str | None = None) -> AppTest:
    """A browser session of the served app, signed in as `user`, opened on `page` (and ?run=)."""
    session = AppTest.from_file(APP, default_timeout=TIMEOUT)
    session.secrets["auth"] = dict(AUTH)
    session.user = dict(user)
    if run_id:
        session.query_params["run"] = run_id
    session.run()
    if page:
        session.switch_page(page)
        session.run()
    assert_no_exception(session)
    return session


def owner(user: dict) -> str:
    from ui.identity import owner_of_identity

    return owner_of_identity(user["iss"], user["sub"])


def start_training(session: AppTest, epochs: int, upload: tuple[str, bytes] | None = None):
    from ui.session import registry

    {s.label: s for s in session.selectbox}["Dataset"].set_value("digits")
    sliders = {s.label: s for s in session.slider}
    sliders["Epochs"].set_value(epochs)
    sliders["Latent size"].set_value(2)
    session.text_input[0].set_value("16")
    if upload:
        next(u for u in session.file_uploader if "own file" in u.label).upload(*upload)
    next(b for b in session.button if b.label == "Start training").click()
    session.run()
    assert_no_exception(session)
    return registry().get(session.session_state["run"])


def digits_npz() -> bytes:
    from sklearn.datasets import load_digits

    digits = load_digits()
    buffer = io.BytesIO()
    np.savez(buffer, x=(digits.images[:300] * 16).astype(np.uint8), y=digits.target[:300])
    return buffer.getvalue()


def table_runs(session: AppTest) -> set[str]:
    return {str(run) for frame in session.dataframe for run in frame.value.get("run", frame.value.get("run id", []))}


def test_nobody_sees_a_page_or_a_run_before_signing_in(saved_runs):
    session = served_session({"is_logged_in": False}, run_id="vae-beta1")
    assert [b.label for b in session.button] == ["Sign in"]
    assert not session.selectbox and not session.dataframe and not session.get("plotly_chart")
    assert "vae-beta1" not in page_text(session) and "Train a VAE" not in page_text(session)


def test_the_served_mode_without_a_login_configured_says_what_to_add(monkeypatch, saved_runs):
    monkeypatch.setenv("VAE_STUDIO_MULTI_USER", "1")
    session = AppTest.from_file(APP, default_timeout=TIMEOUT)
    session.user = {"is_logged_in": False}
    session.run()
    assert_no_exception(session)
    assert any("add an [auth] section" in rendered(e.value) for e in session.error)
    assert not session.button and "Train a VAE" not in page_text(session)


def test_a_private_run_is_seen_and_driven_by_its_owner_alone(saved_runs):
    alice = served_session(ALICE)
    job = start_training(alice, epochs=200)
    assert job.owner == owner(ALICE)
    assert "Stop" in {b.label for b in alice.button}

    # Bob, even with a link to Alice's run: not in his pickers, tables or sidebar, and no control of it.
    for page in ("app_pages/latent.py", "app_pages/generate.py", "app_pages/runs.py", "app_pages/checkpoints.py"):
        bob = served_session(BOB, page, run_id=job.run_id)
        assert job.run_id not in page_text(bob) and job.run_id not in table_runs(bob), page
        assert "another person's run" in page_text(bob), page  # the device is busy, and that is all he learns
    bob = served_session(BOB, "app_pages/train.py", run_id=job.run_id)
    assert not {"Pause", "Stop"} & {b.label for b in bob.button}
    assert [p.proto.text for p in bob.get("progress")] == ["No run yet"]  # the empty panel, not her run's

    # Alice stops it: her controls work.
    alice.run()
    next(b for b in alice.button if b.label == "Stop").click()
    alice.run()
    assert job.wait(30) and job.status == "stopped"
    assert job.run_id not in page_text(served_session(BOB, "app_pages/checkpoints.py"))  # nor its saved file
    assert job.run_id in page_text(served_session(ALICE, "app_pages/checkpoints.py"))


def test_an_upload_is_its_uploaders_whatever_owner_the_file_names(saved_runs, tmp_path):
    from vae_core.checkpoint import load_checkpoint
    from vae_core.safetensors_io import read_checkpoint, write_checkpoint

    # A file claiming to be Bob's, uploaded by Alice, is Alice's run.
    tensors, metadata = read_checkpoint(CHECKPOINTS / "vae-beta4.safetensors")
    forged = tmp_path / "forged.safetensors"
    write_checkpoint(forged, tensors, {**metadata, "owner": owner(BOB)})
    alice = served_session(ALICE, "app_pages/checkpoints.py")
    next(u for u in alice.file_uploader if "checkpoint" in u.label.lower()).upload(
        "mine.safetensors", forged.read_bytes()
    )
    alice.run()
    assert_no_exception(alice)
    imported = alice.session_state["run"]
    assert load_checkpoint(CHECKPOINTS / f"{imported}.safetensors").owner == owner(ALICE)
    assert any("yours alone" in rendered(s.value) for s in alice.success)
    assert imported in table_runs(alice)
    assert imported not in table_runs(served_session(BOB, "app_pages/checkpoints.py"))


def test_an_uploaded_data_file_is_readable_by_its_owners_runs_only(saved_runs):
    from ui.session import upload_root

    bob = served_session(BOB)
    job = start_training(bob, epochs=1, upload=("bobs digits.npz", digits_npz()))
    assert job.wait(60) and job.status == "finished"
    assert str(upload_root() / owner(BOB)) in job.config.data  # his folder, named by his owner id

    # Alice brings a checkpoint whose config names Bob's file: opening it reads nothing of Bob's.
    crafted = train_checkpoint("points-at-bobs-file", data=job.config.data)
    alice = served_session(ALICE, "app_pages/checkpoints.py")
    next(u for u in alice.file_uploader if "checkpoint" in u.label.lower()).upload(
        "crafted.safetensors", crafted.read_bytes()
    )
    alice.run()
    crafted.unlink()  # the server's copy: only Alice's import of it stays
    imported = alice.session_state["run"]
    latent = served_session(ALICE, "app_pages/latent.py", run_id=imported)
    assert not latent.get("plotly_chart")  # no scatter of Bob's images
    assert any("nor a file or folder supplied here" in rendered(e.value) for e in latent.error)
    assert "bobs digits" not in page_text(latent) and str(upload_root()) not in page_text(latent)


def test_a_shared_run_is_decodable_by_everyone_and_read_only_in_the_app(saved_runs):
    shared = CHECKPOINTS / "vae-beta1.safetensors"
    for user in (ALICE, BOB):
        generate = served_session(user, "app_pages/generate.py", run_id="vae-beta1")
        assert generate.selectbox(key="run_picker").value.endswith("vae-beta1.safetensors")
        assert generate.get("image")  # decoded pictures
        checkpoints = served_session(user, "app_pages/checkpoints.py", run_id="vae-beta1")
        labels = {b.label for b in checkpoints.button}
        assert "Resume training" not in labels and "Yes, delete it" not in labels
        assert any("shared run" in rendered(c.value) for c in checkpoints.caption)
        runs = served_session(user, "app_pages/runs.py", run_id="vae-beta1")
        assert not any(f.label == "Name" for f in runs.text_input)  # no rename form
    assert shared.exists()


def test_locally_every_tab_sees_and_drives_every_run(app, saved_runs):
    """The default model is unchanged: no sign-in, every run listed, every run resumable and deletable."""
    from ui.session import registry, run_data
    from vae_core.config import TrainConfig

    config = TrainConfig(data="digits", hidden=(16,), latent_dim=2, epochs=1, device="cpu")
    job = registry().start(config, run_data(config), owner=owner(ALICE))  # e.g. trained while it was served
    assert job.wait(60)
    app.switch_page("app_pages/checkpoints.py")
    app.query_params["run"] = job.run_id
    app.run()
    assert_no_exception(app)
    assert "Sign in" not in {b.label for b in app.button}
    assert {"Resume training", "Yes, delete it"} <= {b.label for b in app.button}
    assert {job.run_id, "vae-beta1"} <= table_runs(app)


@pytest.fixture(autouse=True)
def _no_served_mode_leaks(monkeypatch):
    """The secrets each served session sets are its own; nothing else in this process is served."""
    monkeypatch.delenv("VAE_STUDIO_MULTI_USER", raising=False)


def test_a_shared_queued_run_is_moved_or_cancelled_by_no_one(saved_runs):
    """Shared runs in the queue (queued before the app was served) are listed with their buttons
    disabled; the callbacks check the owner again, since a browser decides what is disabled."""
    from ui.session import registry, run_data
    from vae_core.config import TrainConfig

    config = TrainConfig(data="digits", hidden=(16,), latent_dim=2, epochs=200, device="cpu")
    running = registry().submit(config, run_data(config))
    waiting = registry().submit(config, run_data(config))
    try:
        bob = served_session(BOB, "app_pages/runs.py")
        assert all(bob.button(key=f"queue_{action}_{waiting.run_id}").disabled for action in ("up", "down", "cancel"))
        assert [job.run_id for job in registry().queued()] == [waiting.run_id]
    finally:
        registry().stop_all()
    assert running.status == "stopped"


BROKEN_SECRETS = '[auth]\nredirect_uri = "http://localhost:8501/oauth2callback\n'  # a quote missing
ROUTER_IN = """
from streamlit.testing.v1 import AppTest
app = AppTest.from_file({router!r}, default_timeout=60)
app.run()
import json
print(json.dumps({{"errors": [e.value for e in app.error], "buttons": [b.label for b in app.button],
                   "exceptions": len(app.exception), "nav": len(app.get("navigation") or [])}}))
"""


def test_a_secrets_file_that_fails_to_parse_serves_no_page_and_stops_the_server(tmp_path):
    """One missing quote in [auth] once started the app as one person's: every visitor saw, stopped and
    deleted every run. Now no page is served, and `streamlit run` exits saying what to fix."""
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text(BROKEN_SECRETS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAE_STUDIO_")}
    env.update(VAE_STUDIO_WARM_UP="0", VAE_STUDIO_EXECUTOR="thread", VAE_STUDIO_CHECKPOINTS=str(tmp_path / "runs"))
    page = subprocess.run(
        [sys.executable, "-c", ROUTER_IN.format(router=APP)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    seen = json.loads(page.stdout.strip().splitlines()[-1])
    assert seen["buttons"] == [] and seen["exceptions"] == 0
    assert any(
        "will not serve any page" in error and "secrets.toml cannot be read" in error for error in seen["errors"]
    )
    server = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(Path(APP).with_name("app.py")),
            "--server.headless",
            "true",
            "--server.port",
            "0",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert server.returncode != 0 and "VAE Studio: not started" in server.stderr + server.stdout


@pytest.mark.parametrize("value, served", [("true", True), ("yes", True), ("1", True), ("0", False), ("no", False)])
def test_the_multi_user_switch_takes_yes_and_no_words(monkeypatch, value, served):
    from ui import identity

    monkeypatch.setenv("VAE_STUDIO_MULTI_USER", value)
    assert identity.multi_user_switch() is served


def test_a_multi_user_switch_that_is_neither_yes_nor_no_serves_no_page(monkeypatch, saved_runs):
    monkeypatch.setenv("VAE_STUDIO_MULTI_USER", "maybe")
    session = AppTest.from_file(APP, default_timeout=TIMEOUT)
    session.run()
    assert_no_exception(session)
    assert any("VAE_STUDIO_MULTI_USER is 'maybe'" in rendered(e.value) for e in session.error)
    assert not session.button and "vae-beta1" not in page_text(session)
