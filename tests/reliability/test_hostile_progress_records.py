"""Crafted files in the checkpoints folder named like a run's progress record or checkpoint: each is
listed as unreadable with its reason, at once, and `vae-studio runs` goes on with the other runs (a
FIFO would block a plain open forever; deep JSON raises RecursionError; a pid or a time out of range
raised OverflowError; a heartbeat from the future kept a run "running" for ever)."""

import json
import os
import shutil
import time

import pytest
from progress_records import progress_record

from vae_core.cli import main
from vae_core.runs import list_runs, read_run

CASES = {
    "nested 200,000 deep": (("[" * 200_000 + "]" * 200_000).encode(), "nested more than"),
    "a pid past any pid": (json.dumps(progress_record(pid=9007199254740992)).encode(), "pid must be"),
    "started at 1e308": (json.dumps(progress_record(started=1e308)).encode(), "started must be a time"),
    "a heartbeat from the future": (
        json.dumps(progress_record(heartbeat=time.time() + 1e9)).encode(),
        "heartbeat must be",
    ),
    "an epoch without its step": (
        json.dumps(progress_record(epoch_metrics=[{"epoch": 1}])).encode(),
        "epoch_metrics.step",
    ),
}


@pytest.mark.parametrize("content, reason", CASES.values(), ids=CASES.keys())
def test_a_crafted_progress_record_is_one_unreadable_run(tmp_path, good_checkpoint, content, reason, capsys):
    shutil.copy(good_checkpoint, tmp_path / "good.safetensors")
    (tmp_path / "crafted.progress.json").write_bytes(content)
    record = read_run(tmp_path, "crafted")
    assert record.status == "unreadable" and reason in record.error
    assert main(["runs", str(tmp_path)]) == 0
    listed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {run["run_id"] for run in listed} == {"good", "crafted"}


def test_a_fifo_or_a_folder_named_like_a_record_never_blocks_a_listing(tmp_path, good_checkpoint):
    shutil.copy(good_checkpoint, tmp_path / "good.safetensors")
    os.mkfifo(tmp_path / "fifo.progress.json")
    os.symlink(tmp_path / "fifo.progress.json", tmp_path / "link.progress.json")
    (tmp_path / "folder.progress.json").mkdir()
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling.safetensors")
    os.symlink(tmp_path / "loop.safetensors", tmp_path / "loop.safetensors")
    started = time.monotonic()
    records = {record.run_id: record for record in list_runs(tmp_path)}
    assert time.monotonic() - started < 5
    assert records["good"].error is None
    assert "not a regular file" in records["fifo"].error and "not a regular file" in records["link"].error
    assert "not a regular file" in records["folder"].error
