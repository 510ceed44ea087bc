"""Served, each person may keep at most config.Limits.max_upload_bytes_per_person of uploaded checkpoints
(issue 23, finding 5: uploads pinned the server's memory and disk with no quota per person)."""

import pytest
from apphelpers import CHECKPOINTS, assert_no_exception, rendered
from test_multi_user import ALICE, BOB, served_session


def upload(session, name: str, data: bytes):
    next(u for u in session.file_uploader if "checkpoint" in u.label.lower()).upload(name, data)
    session.run()
    assert_no_exception(session)
    return [rendered(error.value) for error in session.error], [rendered(s.value) for s in session.success]


@pytest.fixture
def imported_runs_removed():
    before = set(CHECKPOINTS.iterdir())
    yield
    for path in set(CHECKPOINTS.iterdir()) - before:  # the folder is shared by the tests
        path.unlink()


def test_a_person_past_their_upload_quota_is_refused_and_others_are_not(saved_runs, imported_runs_removed, monkeypatch):
    data = (CHECKPOINTS / "vae-beta4.safetensors").read_bytes()
    monkeypatch.setenv("VAE_STUDIO_MAX_UPLOAD_BYTES_PER_PERSON", str(len(data) * 3 // 2))  # room for one
    alice = served_session(ALICE, "app_pages/checkpoints.py")
    errors, successes = upload(alice, "first.safetensors", data)
    assert not errors and any("first.safetensors: imported as run" in text for text in successes)
    before = set(CHECKPOINTS.iterdir())
    errors, _ = upload(alice, "second.safetensors", data)
    megabytes = f"{len(data) / 2**20:,.0f} MB"
    assert errors == [
        f"second.safetensors ({megabytes}) is not imported: your uploaded runs already take {megabytes} of the "
        f"{len(data) * 3 // 2 / 2**20:,.0f} MB each person may keep on this server. Delete one of them first."
    ]
    assert set(CHECKPOINTS.iterdir()) == before  # nothing imported
    bob = served_session(BOB, "app_pages/checkpoints.py")
    errors, successes = upload(bob, "bobs.safetensors", data)
    assert not errors and any("bobs.safetensors: imported as run" in text for text in successes)
