"""Served, each person may keep at most config.Limits.max_upload_bytes_per_person of uploaded checkpoints
(issue 23, finding 5: uploads pinned the server's memory and disk with no quota per person)."""

import pytest
from apphelpers import CHECKPOINTS, assert_no_exception, rendered
from test_multi_user import ALICE, BOB, served_session

# People who have uploaded nothing yet: other tests leave Alice's and Bob's uploads in the shared folder.
CAROL = {**ALICE, "sub": "carol-3", "email": "carol@example.com", "name": "Carol"}
DAVE = {**BOB, "sub": "dave-4", "email": "dave@example.com", "name": "Dave"}


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
    carol = served_session(CAROL, "app_pages/checkpoints.py")
    before_first = set(CHECKPOINTS.iterdir())
    errors, successes = upload(carol, "first.safetensors", data)
    assert not errors and any("first.safetensors: imported as run" in text for text in successes)
    before = set(CHECKPOINTS.iterdir())
    errors, _ = upload(carol, "second.safetensors", data)
    # The run imported first, as it lies on disk (its file has the owner and origin written in).
    (imported,) = [path for path in set(CHECKPOINTS.iterdir()) - before_first if path.suffix == ".safetensors"]
    size, quota = f"{len(data) / 1024:.1f} kB", f"{len(data) * 3 // 2 / 1024:.1f} kB"  # a small run: kilobytes
    used = f"{imported.stat().st_size / 1024:.1f} kB"
    assert errors == [
        f"second.safetensors ({size}) is not imported: your uploaded runs already take {used} of the "
        f"{quota} each person may keep on this server. Delete one of them first."
    ]
    assert set(CHECKPOINTS.iterdir()) == before  # nothing imported
    dave = served_session(DAVE, "app_pages/checkpoints.py")
    errors, successes = upload(dave, "daves.safetensors", data)
    assert not errors and any("daves.safetensors: imported as run" in text for text in successes)
