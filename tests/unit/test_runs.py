"""The run store: listing a folder from headers alone, distinct names, progress records written and
read back, killed and stale writers, renaming and notes."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vae_core import runs
from vae_core.checkpoint import load_checkpoint, save_trainer_checkpoint
from vae_core.config import TrainConfig
from vae_core.errors import CheckpointError, ConfigError, TrainingError
from vae_core.loop import Hooks, run_to_end
from vae_core.runs import KILLED, STALE, ProgressWriter, list_runs, read_progress, read_run, relabel_run
from vae_core.safetensors_io import OpenCheckpoint
from vae_core.trainer import Trainer

EARLY, LATE = "20261130-090000-aaaaaa", "20261130-100000-bbbbbb"


@pytest.fixture(scope="module")
def trained(digits):
    trainer = Trainer(
        TrainConfig(data="digits", hidden=(16,), latent_dim=2, batch_size=128, epochs=1, device="cpu"), digits
    )
    run_to_end(trainer)
    return trainer


def save(trainer, folder, run_id, name="mlp z2", status="finished"):
    return save_trainer_checkpoint(trainer, run_id, status, folder / f"{run_id}.safetensors", name=name)


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def test_listing_names_statuses_and_metrics_from_headers_alone(tmp_path, trained, monkeypatch):
    save(trained, tmp_path, LATE)
    save(trained, tmp_path, EARLY)
    save(trained, tmp_path, "my-run", name="other")
    (tmp_path / "not a run id.safetensors").write_bytes(b"ignored: its name is no run id")
    (tmp_path / "broken.safetensors").write_bytes(b"\x80\x04 not a checkpoint")

    def no_tensors(self):
        raise AssertionError("listing loaded tensors")

    monkeypatch.setattr(OpenCheckpoint, "load", no_tensors)
    listed = list_runs(tmp_path)

    assert [r.run_id for r in listed] == [EARLY, LATE, "broken", "my-run"]  # creation order, then other ids
    early, late, broken, mine = listed
    assert (early.display_name, late.display_name, mine.display_name) == ("mlp z2", "mlp z2 (2)", "other")
    assert early.name == late.name == "mlp z2"
    assert early.status == "finished" and not early.live and (early.epoch, early.epochs) == (1, 1)
    assert early.test_neg_elbo == pytest.approx(trained.history.epochs[-1]["test_neg_elbo"])
    assert early.config["latent_dim"] == 2 and early.checkpoint == str(tmp_path / f"{EARLY}.safetensors")
    assert broken.status == "unreadable" and "broken.safetensors" in broken.error
    assert json.loads(json.dumps([r.as_json() for r in listed]))[0]["name"] == "mlp z2"


def test_served_listing_numbers_a_name_among_its_owners_runs_only(tmp_path, trained):
    """Two people's identical runs both read "mlp z2": my listing never says "(2)" because of theirs."""
    from vae_core.checkpoint_fields import OWNER_ID_LENGTH

    them, me = "a" * OWNER_ID_LENGTH, "b" * OWNER_ID_LENGTH
    for run_id, owner in ((EARLY, them), (LATE, me), ("mine-again", me)):
        save_trainer_checkpoint(
            trained, run_id, "finished", tmp_path / f"{run_id}.safetensors", name="mlp z2", owner=owner
        )
    shown = {record.run_id: record.display_name for record in list_runs(tmp_path)}
    assert shown == {EARLY: "mlp z2", LATE: "mlp z2", "mine-again": "mlp z2 (2)"}


def test_distinct_names_are_deterministic():
    assert runs.distinct_names(["a", "a", "b", "a", "a (2)"]) == ["a", "a (2)", "b", "a (3)", "a (2) (2)"]


def test_progress_record_is_written_while_training_and_read_back(tmp_path, digits):
    clock = Clock(time.time())  # a clock the test moves, starting now, so the record reads as fresh
    trainer = Trainer(
        TrainConfig(data="digits", hidden=(16,), latent_dim=2, batch_size=32, epochs=2, device="cpu"), digits
    )
    out = tmp_path / f"{LATE}.safetensors"
    writer = ProgressWriter(out, trainer, run_id=LATE, name="live\x00 run", dataset="digits", clock=clock)
    seen = []

    def flushed(trainer):
        clock.now += 0.25  # every other flush is due (interval 0.5 s)
        writer.update(trainer)
        writer.flush()  # written on the writer's own thread
        if writer.path.exists():
            seen.append(read_progress(writer.path).step)

    def epoch_end(trainer, metrics):
        save(trainer, tmp_path, LATE, status="running")
        writer.epoch_end(trainer, metrics)

    run_to_end(trainer, Hooks(after_flush=flushed, after_epoch=epoch_end, flush_steps=5))
    writer.flush()
    assert seen == sorted(seen) and len(set(seen)) > 3  # written as it went, not only at the end
    record = read_progress(writer.path)
    assert record.status == "running" and record.liveness() == "running" and record.pid == os.getpid()
    assert record.name == "live run" and record.epoch == 2 and record.step == trainer.step
    assert record.points["step"][-1] == trainer.step and len(record.epoch_metrics) == 2
    assert record.points["wall"] == sorted(record.points["wall"]) and record.samples_per_s > 0
    live = read_run(tmp_path, LATE)
    assert live.live and live.status == "running" and live.epoch == 2

    writer.close(trainer, "finished")
    ended = read_run(tmp_path, LATE)
    assert ended.status == "finished" and not ended.live


def test_a_run_is_listed_from_its_progress_record_before_its_first_checkpoint(tmp_path, digits):
    trainer = Trainer(TrainConfig(data="digits", hidden=(16,), latent_dim=2, epochs=3, device="cpu"), digits)
    writer = ProgressWriter(tmp_path / f"{EARLY}.safetensors", trainer, run_id=EARLY, name="first", dataset="digits")
    writer.update(trainer, force=True)
    writer.flush()
    (record,) = list_runs(tmp_path)
    assert (record.run_id, record.name, record.status, record.live) == (EARLY, "first", "running", True)
    assert record.checkpoint is None and (record.epoch, record.epochs) == (0, 3)
    with pytest.raises(CheckpointError, match="no checkpoint yet"):
        relabel_run(tmp_path, EARLY, name="renamed")


def test_points_are_merged_past_the_limit_and_keep_the_whole_run(tmp_path, digits, monkeypatch):
    monkeypatch.setattr(runs, "MAX_POINTS", 8)
    trainer = Trainer(
        TrainConfig(data="digits", hidden=(16,), latent_dim=2, batch_size=16, epochs=1, device="cpu"), digits
    )
    writer = ProgressWriter(tmp_path / f"{EARLY}.safetensors", trainer, run_id=EARLY, name="n", dataset="digits")
    run_to_end(trainer, Hooks(after_flush=writer.update, flush_steps=3))
    writer.close(trainer, "finished")
    points = read_progress(writer.path).points
    assert 4 <= len(points["step"]) <= 8 and points["step"][-1] == trainer.step
    assert points["step"] == sorted(points["step"])
    assert min(points["total"]) >= float(trainer.history.curves().total.min()) - 1e-3


def _record_file(tmp_path, stem, **changes):
    record = {
        "format": runs.PROGRESS_FORMAT,
        "run_id": stem,
        "name": "elsewhere",
        "status": "running",
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": 1000.0,
        "heartbeat": 1000.0,
        "step": 5,
        "total_steps": 50,
        "epoch": 0,
        "epochs": 5,
        "steps_per_epoch": 10,
        "samples_per_s": 1.0,
        "config": TrainConfig(data="digits").to_dict(),
        "dataset": "digits",
        "points": {key: [] for key in runs.POINT_FIELDS},
        "epoch_metrics": [],
        "message": None,
        **changes,
    }
    path = tmp_path / f"{stem}{runs.PROGRESS_SUFFIX}"
    path.write_text(json.dumps(record))
    return path


def test_a_killed_writer_and_a_silent_one_are_not_live(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: its pid names no process now
    _record_file(tmp_path, EARLY, pid=dead.pid, heartbeat=1000.0)
    _record_file(tmp_path, LATE, host="another-machine", heartbeat=1000.0)
    _record_file(tmp_path, "alive", heartbeat=1000.0)
    by_id = {r.run_id: r for r in list_runs(tmp_path, now=1000.0 + runs.STALE_AFTER_S + 1)}
    assert by_id[EARLY].status == KILLED and not by_id[EARLY].live
    assert by_id[LATE].status == STALE and not by_id[LATE].live
    assert by_id["alive"].status == STALE  # alive, but silent for longer than an epoch may take
    fresh = {r.run_id: r for r in list_runs(tmp_path, now=1001.0)}
    assert fresh["alive"].live and fresh[LATE].live and not fresh[EARLY].live


@pytest.mark.parametrize(
    "changes, problem",
    [
        ({"run_id": "../../etc"}, "run_id"),
        ({"pid": -1}, "pid"),
        ({"status": "hacked"}, "status"),
        ({"name": "x" * 500}, "name"),
        ({"points": {"step": [1]}}, "points"),
        ({"config": {"model": "gpt"}}, "config"),
    ],
)
def test_a_hostile_progress_record_is_refused_with_its_problem(tmp_path, changes, problem):
    path = _record_file(tmp_path, EARLY, **changes)
    with pytest.raises(CheckpointError, match=problem):
        read_progress(path)
    (record,) = list_runs(tmp_path)
    assert record.status == "unreadable" and problem in record.error


def test_garbage_and_oversized_records_are_refused(tmp_path, monkeypatch):
    (tmp_path / f"{EARLY}.progress.json").write_bytes(b"\xff{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_progress(tmp_path / f"{EARLY}.progress.json")
    monkeypatch.setattr(runs, "MAX_PROGRESS_BYTES", 10)
    with pytest.raises(CheckpointError, match="more than the limit of 10"):
        read_progress(_record_file(tmp_path, LATE))


def test_rename_and_notes_rewrite_the_checkpoint_and_keep_the_rest(tmp_path, trained):
    path = save(trained, tmp_path, EARLY)
    before = load_checkpoint(path)
    record = relabel_run(tmp_path, EARLY, name="  my   best\trun ", notes="line one\nline two")
    after = load_checkpoint(path)
    assert record.name == after.name == "my best run" and after.notes == "line one\nline two"
    assert after.run_id == EARLY and after.state.step == before.state.step
    for key, weight in before.state.model_state.items():
        assert torch.equal(weight, after.state.model_state[key])
    relabel_run(tmp_path, EARLY, notes="")
    assert load_checkpoint(path).name == "my best run" and load_checkpoint(path).notes == ""
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_rename_refuses_bad_names_ids_and_runs_training_elsewhere(tmp_path, trained):
    save(trained, tmp_path, EARLY)
    with pytest.raises(ConfigError, match="cannot be empty"):
        relabel_run(tmp_path, EARLY, name=" \x00 ")
    with pytest.raises(ConfigError, match="at most 80"):
        relabel_run(tmp_path, EARLY, name="n" * 81)
    with pytest.raises(CheckpointError, match="not valid"):
        relabel_run(tmp_path, "../" + EARLY, name="x")
    _record_file(tmp_path, EARLY, heartbeat=time.time(), step=999)
    with pytest.raises(TrainingError, match="training in another process"):
        relabel_run(tmp_path, EARLY, name="x")
    assert load_checkpoint(tmp_path / f"{EARLY}.safetensors").name == "mlp z2"


def test_the_default_checkpoints_folder_is_the_apps_in_a_checkout(monkeypatch, tmp_path):
    """The CLI writes where the app looks: the variable, else the checkout's folder, whatever the cwd."""
    from vae_core import runs

    monkeypatch.delenv(runs.CHECKPOINTS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert runs.default_checkpoint_dir() == Path(runs.__file__).resolve().parents[1] / "checkpoints"
    monkeypatch.setenv(runs.CHECKPOINTS_ENV, str(tmp_path / "elsewhere"))
    assert runs.default_checkpoint_dir() == tmp_path / "elsewhere"
