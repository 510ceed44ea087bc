"""Served to several people, the Theory page shows a saved finding only to whoever may see all of
its runs: a finding about Alice's run says something about her data. Each person's latest finding is
kept beside the others', so a later one of Bob's hides nothing of Alice's (issue 23, finding 8)."""

import pytest
from apphelpers import APP, CHECKPOINTS, TIMEOUT, assert_no_exception, rendered
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
BOBS_FINDING = "Bob's AE drifted even further."


def owner(user: dict) -> str:
    from ui.identity import owner_of_identity

    return owner_of_identity(user["iss"], user["sub"])


def save_as(user: dict, run_id: str, finding: str) -> list:
    """As the Experiments page saves it for `user`: an ae-vs-vae finding about a run of theirs (a copy
    of ae-run, made theirs) and a shared one. Returns the files it made."""
    from vae_core.checkpoint import load_checkpoint, save_trainer_checkpoint
    from vae_core.config import TrainConfig
    from vae_core.data import load_dataset
    from vae_core.experiments import ExperimentResult, RunResult, finding_path, get, save_finding
    from vae_core.trainer import Trainer

    shared = load_checkpoint(CHECKPOINTS / "ae-run.safetensors")
    trainer = Trainer(shared.config, load_dataset("digits"), state=shared.state)
    run = save_trainer_checkpoint(trainer, run_id, "finished", CHECKPOINTS / f"{run_id}.safetensors", owner=owner(user))
    config = TrainConfig(data="digits")
    runs = (RunResult("AE", config.replace(model="ae"), {}, (), None), RunResult("VAE", config, {}, (), None))
    save_finding(
        CHECKPOINTS, ExperimentResult(get("ae-vs-vae"), runs, finding), [run_id, "vae-beta1"], owner=owner(user)
    )
    return [run, finding_path(CHECKPOINTS, "ae-vs-vae", owner(user))]


@pytest.fixture
def no_other_findings(saved_runs):
    """The folder's own findings (other tests save shared ones) set aside, and put back after."""
    import shutil

    from vae_core.experiments import FINDINGS_FOLDER

    folder = CHECKPOINTS / FINDINGS_FOLDER
    aside = CHECKPOINTS.parent / f"{CHECKPOINTS.name}-findings-aside"
    shutil.rmtree(aside, ignore_errors=True)
    if folder.exists():
        folder.rename(aside)
    yield
    shutil.rmtree(folder, ignore_errors=True)
    if aside.exists():
        aside.rename(folder)


def kept_while_testing(user: dict, run_id: str, finding: str):
    """save_as for the length of a test, its files removed after."""
    made = save_as(user, run_id, finding)
    yield
    for path in made:
        path.unlink(missing_ok=True)


@pytest.fixture
def alices_finding(no_other_findings):
    """An ae-vs-vae finding of Alice's about a run of hers and a shared one."""
    yield from kept_while_testing(ALICE, "alices-ae", FINDING)


@pytest.fixture
def bobs_later_finding(alices_finding):
    """Then Bob runs the same experiment on a run of his own."""
    yield from kept_while_testing(BOB, "bobs-ae", BOBS_FINDING)


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


def test_a_later_finding_of_someone_else_hides_nobodys_own(bobs_later_finding):
    """Finding 8: there was one findings file per experiment, so Bob's later finding erased Alice's."""
    alice = [rendered(s.value) for s in theory_as(ALICE).success]
    assert any("Alice's AE drifted" in text for text in alice) and not any("Bob's" in text for text in alice)
    bob = [rendered(s.value) for s in theory_as(BOB).success]
    assert any("Bob's AE drifted" in text for text in bob) and not any("Alice's" in text for text in bob)
