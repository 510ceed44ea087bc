"""Served to several people, the Theory page shows a saved finding only to whoever may see all of
its runs: a finding about Alice's run says something about her data."""

import pytest
from apphelpers import APP, CHECKPOINTS, TIMEOUT, assert_no_exception
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
FINDING = "Alice's AE drifted far from the prior."


@pytest.fixture
def alices_finding(saved_runs):
    """An ae-vs-vae finding about a run of Alice's and a shared one; the folder's own is put back after."""
    from ui.identity import owner_of_identity
    from vae_core.checkpoint import load_checkpoint, save_trainer_checkpoint
    from vae_core.config import TrainConfig
    from vae_core.data import load_dataset
    from vae_core.experiments import FINDINGS_FOLDER, ExperimentResult, RunResult, get, save_finding
    from vae_core.trainer import Trainer

    shared = load_checkpoint(CHECKPOINTS / "ae-run.safetensors")
    trainer = Trainer(shared.config, load_dataset("digits"), state=shared.state)
    alices = save_trainer_checkpoint(
        trainer,
        "alices-ae",
        "finished",
        CHECKPOINTS / "alices-ae.safetensors",
        owner=owner_of_identity(ALICE["iss"], ALICE["sub"]),
    )
    path = CHECKPOINTS / FINDINGS_FOLDER / "ae-vs-vae.json"
    before = path.read_bytes() if path.exists() else None
    config = TrainConfig(data="digits")
    runs = (RunResult("AE", config.replace(model="ae"), {}, (), None), RunResult("VAE", config, {}, (), None))
    save_finding(CHECKPOINTS, ExperimentResult(get("ae-vs-vae"), runs, FINDING), ["alices-ae", "vae-beta1"])
    yield
    alices.unlink()
    if before is None:
        path.unlink(missing_ok=True)
    else:
        path.write_bytes(before)


def theory_as(user: dict) -> AppTest:
    session = AppTest.from_file(APP, default_timeout=TIMEOUT)
    session.secrets["auth"] = dict(AUTH)
    session.user = dict(user)
    session.run()
    session.switch_page("app_pages/theory.py")
    session.run()
    assert_no_exception(session)
    return session


def test_only_the_owner_of_its_runs_sees_a_finding(alices_finding):
    assert any(FINDING.split()[1] in s.value and "drifted" in s.value for s in theory_as(ALICE).success)
    bob = theory_as(BOB)
    assert not any("drifted" in s.value for s in bob.success)
    assert bob.button(key="open_ae-vs-vae").label == "Open the experiment"
