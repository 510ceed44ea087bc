"""Issue 13, item 1: `config.data` in a checkpoint is a reference read from a file. It opens a built-in
dataset or what this user supplied here, and nothing else; a refusal quotes no server file."""

from __future__ import annotations

import numpy as np
import pytest

from vae_core.checkpoint import checkpoint_dataset, load_checkpoint
from vae_core.errors import CheckpointError, DataError


def with_data(reference):
    return lambda metadata: metadata["config"].update(data=reference)


def test_a_built_in_dataset_is_loaded_and_checked_against_the_checkpoint(good_checkpoint):
    dataset = checkpoint_dataset(load_checkpoint(good_checkpoint))

    assert dataset.name == "digits" and dataset.fingerprint == load_checkpoint(good_checkpoint).dataset.fingerprint


@pytest.mark.parametrize("reference", ["/etc", "~", "/etc/passwd", "../../etc", "/proc/self/environ"])
def test_a_server_path_in_a_checkpoint_is_refused_without_quoting_it(craft, tmp_path, reference):
    checkpoint = load_checkpoint(craft("hostile", metadata_change=with_data(reference)))

    with pytest.raises(DataError) as refusal:
        checkpoint_dataset(checkpoint, allowed=[tmp_path / "uploads"])

    message = str(refusal.value)
    assert "etc" not in message and "passwd" not in message and "environ" not in message
    assert "\n" not in message


def test_a_file_this_user_supplied_is_opened_and_must_hold_the_same_data(craft, tmp_path):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    rng = np.random.default_rng(0)
    np.savez(uploads / "mine.npz", x=rng.integers(0, 256, (40, 8, 8), dtype=np.uint8))
    checkpoint = load_checkpoint(craft("mine", metadata_change=with_data(str(uploads / "mine.npz"))))

    # The policy lets the file through; it is not the digits the run was trained on, so resuming is refused.
    with pytest.raises(CheckpointError, match="trained on"):
        checkpoint_dataset(checkpoint, allowed=[uploads])


@pytest.mark.parametrize("command", [["eval", "{file}", "--iwae-k", "0"], ["train", "--resume", "{file}", "--quiet"]])
def test_the_cli_refuses_a_server_path_read_from_a_checkpoint(craft, tmp_path, monkeypatch, capsys, command):
    from vae_core.cli import main

    monkeypatch.chdir(tmp_path)
    hostile = craft("hostile", metadata_change=with_data("/etc"))
    argv = [part.format(file=hostile) for part in command]

    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1
    assert "etc" not in error and "adduser" not in error
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())


def test_the_cli_resumes_on_the_data_its_user_names(craft, tmp_path, monkeypatch, capsys):
    """--data is the user's own choice: it replaces a reference the file makes (here a refused path),
    and must still hold the data the run was trained on."""
    from vae_core.cli import main

    monkeypatch.chdir(tmp_path)
    hostile = craft("elsewhere", metadata_change=with_data("/etc"))
    out = tmp_path / "resumed.safetensors"

    assert (
        main(["train", "--resume", str(hostile), "--data", "digits", "--epochs", "2", "--out", str(out), "--quiet"])
        == 0
    )
    assert load_checkpoint(out).state.epoch == 2
    assert main(["train", "--resume", str(hostile), "--data", "mnist-sample", "--quiet"]) == 2
    assert "trained on" in capsys.readouterr().err
