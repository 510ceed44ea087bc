"""An imported (uploaded) checkpoint becomes a run of its own: a new id, its origin in its metadata,
and no byte of any other file changed, whatever run id or name the file carries."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from vae_core import safetensors_io
from vae_core.checkpoint import import_checkpoint, load_checkpoint
from vae_core.errors import CheckpointError
from vae_core.run_ids import is_valid_run_id


def folder_fingerprint(folder: Path) -> dict[str, str]:
    """Every file below `folder` (hidden ones too) -> the SHA-256 of its bytes."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def server_folder(tmp_path, good_checkpoint) -> Path:
    """A checkpoints folder holding the server's run "good"."""
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "good.safetensors").write_bytes(good_checkpoint.read_bytes())
    return folder


def test_an_upload_carrying_an_existing_run_id_changes_no_byte_of_the_server_folder(server_folder, craft):
    upload = craft("upload", metadata_change=lambda m: m.update(name="mine", notes="from home"))
    before = folder_fingerprint(server_folder)

    imported = import_checkpoint(upload, server_folder, file_name="good.safetensors")

    after = folder_fingerprint(server_folder)
    new_file = f"{imported.run_id}.safetensors"
    assert {name: digest for name, digest in after.items() if name != new_file} == before
    assert set(after) == set(before) | {new_file}
    assert imported.run_id != "good" and is_valid_run_id(imported.run_id)
    assert imported.path == str(server_folder / new_file)
    assert imported.imported_from["run_id"] == "good"
    assert imported.imported_from["file_name"] == "good.safetensors"
    assert imported.imported_from["sha256"] == hashlib.sha256(upload.read_bytes()).hexdigest()
    assert (imported.name, imported.notes) == ("mine", "from home")
    assert load_checkpoint(server_folder / new_file).imported_from == imported.imported_from


def test_an_escaping_run_id_is_replaced_and_never_used_in_a_path(tmp_path, craft):
    upload = craft("escape", metadata_change=lambda m: m.update(run_id="../../escaped-run"))
    folder = tmp_path / "deep" / "er" / "checkpoints"

    imported = import_checkpoint(upload, folder)

    assert imported.imported_from["run_id"] is None  # an invalid id is not even kept as text
    assert [path.name for path in folder.iterdir()] == [f"{imported.run_id}.safetensors"]
    assert not any("escaped" in path.name for path in tmp_path.rglob("*"))
    assert imported.name == imported.run_id  # no name of its own: the new id stands in


def test_a_hostile_file_name_is_made_safe_to_show(tmp_path, craft):
    imported = import_checkpoint(craft("named"), tmp_path, file_name="../../etc/\x1b[31mpasswd" + "x" * 400)

    shown = imported.imported_from["file_name"]
    assert "/" not in shown and "\x1b" not in shown and len(shown.encode()) <= 255


def test_a_run_that_was_training_elsewhere_is_imported_as_stopped(tmp_path, craft):
    imported = import_checkpoint(craft("live", metadata_change=lambda m: m.update(status="running")), tmp_path)

    assert imported.status == "stopped"


def test_an_invalid_upload_writes_nothing(tmp_path, craft):
    upload = craft("bad", metadata_change=lambda m: m["history"].update(epochs=["x"]))
    folder = tmp_path / "checkpoints"
    folder.mkdir()

    with pytest.raises(CheckpointError, match=r"^bad\.safetensors: history\.epochs\[0\] is text, not an object$"):
        import_checkpoint(upload, folder)

    assert list(folder.iterdir()) == []


def test_an_import_never_replaces_a_file_that_appears_under_its_new_name(tmp_path, craft, monkeypatch):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    ids = iter(["taken", "free"])
    monkeypatch.setattr("vae_core.checkpoint.new_run_id", lambda: next(ids))
    (folder / "taken.safetensors").write_bytes(b"someone else's run")

    imported = import_checkpoint(craft("upload"), folder)

    assert imported.run_id == "free"
    assert (folder / "taken.safetensors").read_bytes() == b"someone else's run"


def test_writing_without_overwrite_keeps_an_existing_file_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "run.safetensors"
    target.write_bytes(b"original")

    with pytest.raises(CheckpointError, match=r"^could not write run\.safetensors: a file of that name exists$"):
        safetensors_io.write_checkpoint(target, {}, {}, overwrite=False)

    assert target.read_bytes() == b"original"
    assert os.listdir(tmp_path) == ["run.safetensors"]
