"""Runs in processes of their own (vae_core/executors.py, worker.py) and the folder's durable queue
(run_queue.py): the same bits as a run on a thread, commands that reach the process, a queue on disk
that two registries share without running a run twice."""

import json
import os
import threading
import time

import numpy as np
import pytest
import torch

from vae_core import run_queue
from vae_core.checkpoint import load_checkpoint
from vae_core.config import TrainConfig
from vae_core.errors import TrainingError
from vae_core.jobs import TrainingJob
from vae_core.registry import JobRegistry
from vae_core.run_process import end_run_processes
from vae_core.run_queue import DeviceLock, QueuedRun
from vae_core.safe_files import UnreadableFile

SMALL = dict(data="digits", hidden=(32,), latent_dim=2, batch_size=32, device="cpu", threads=1)


def _wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


@pytest.fixture
def registry(tmp_path):
    made = JobRegistry(tmp_path, executor="process")
    yield made
    made.stop_all(timeout=30)
    made.close()
    end_run_processes(tmp_path)


def test_a_run_in_its_own_process_trains_the_bits_of_a_run_on_a_thread(registry, digits, tmp_path):
    config = TrainConfig(epochs=2, **SMALL)  # seed 0: the split of the `digits` fixture (data load with the seed)
    job = registry.submit(config, digits)
    assert job.wait(120), job.snapshot()
    snap = job.snapshot()
    assert snap.status == "finished" and snap.epoch == 2 and snap.step == snap.total_steps == 90
    assert len(snap.curves) == 90 and len(snap.frames) == 2 and snap.fixed_inputs.shape == (16, 1, 8, 8)
    assert job.process.process.pid != os.getpid()
    reference = TrainingJob(config, digits).start()
    assert reference.wait(60)
    assert np.array_equal(snap.curves.total, reference.snapshot().curves.total)
    epoch, weights = job.latest_weights()
    _, expected = reference.latest_weights()
    assert epoch == 2 and all(torch.equal(weights[key], value) for key, value in expected.items())
    saved = load_checkpoint(tmp_path / f"{job.run_id}.safetensors")
    assert saved.status == "finished" and all(torch.equal(saved.state.model_state[k], v) for k, v in expected.items())
    record = json.loads((tmp_path / f"{job.run_id}.progress.json").read_bytes())
    assert record["status"] == "finished" and record["pid"] == job.process.process.pid and record["step"] == 90
    assert not list(tmp_path.glob("*.queued.json")) and not list(tmp_path.glob("*.claimed.json"))


def test_commands_reach_the_process_and_the_queue_waits_on_disk(registry, digits, tmp_path):
    long_run = registry.submit(TrainConfig(epochs=200, **SMALL), digits)
    _wait_for(lambda: long_run.snapshot().step > 0)
    waiting = registry.submit(TrainConfig(epochs=1, **SMALL), digits, name="second")
    assert waiting.status == "queued" and registry.position(waiting.run_id) == 1
    assert [run.run_id for run in run_queue.waiting(tmp_path)] == [waiting.run_id]  # on disk, not in memory only
    assert (tmp_path / f"{long_run.run_id}.claimed.json").exists()
    long_run.pause()
    _wait_for(lambda: long_run.status == "paused")
    long_run.set_lr(0.005)
    long_run.set_beta(2.0)
    long_run.rename("renamed while paused")
    long_run.resume()
    _wait_for(lambda: long_run.status == "running" and len(long_run.snapshot().events) == 2)
    assert [(e["name"], e["value"]) for e in long_run.snapshot().events] == [("lr", 0.005), ("beta", 2.0)]
    long_run.stop()
    assert long_run.wait(60) and long_run.status == "stopped"
    assert waiting.wait(60) and waiting.status == "finished"
    saved = load_checkpoint(tmp_path / f"{long_run.run_id}.safetensors")
    assert saved.status == "stopped" and saved.name == "renamed while paused" and saved.state.lr == 0.005


def test_a_second_registry_on_the_folder_sees_the_queue_and_never_trains_a_run_twice(registry, digits, tmp_path):
    blocker = DeviceLock(tmp_path, "cpu")
    assert blocker.acquire()  # another process trains on the device: everything waits
    try:
        jobs = [registry.submit(TrainConfig(epochs=1, seed=seed, **SMALL), digits) for seed in range(3)]
        other = JobRegistry(tmp_path, executor="process")
        try:
            other.sync_with_store()
            assert [job.run_id for job in other.queued("cpu")] == [job.run_id for job in jobs]
            time.sleep(2.0)
            assert all(job.status == "queued" for job in jobs)
        finally:
            blocker.release()
        _wait_for(
            lambda: not list(tmp_path.glob("*.queued.json")) and not list(tmp_path.glob("*.claimed.json")), timeout=120
        )
        _wait_for(
            lambda: all(
                (tmp_path / f"{job.run_id}.progress.json").exists()
                and json.loads((tmp_path / f"{job.run_id}.progress.json").read_bytes())["status"] == "finished"
                for job in jobs
            ),
            timeout=60,
        )
        for job in jobs:  # each trained exactly once: one epoch, one progress record's process
            saved = load_checkpoint(tmp_path / f"{job.run_id}.safetensors")
            assert saved.state.epoch == 1 and len(saved.state.history.epochs) == 1
    finally:
        other.close()
        end_run_processes(tmp_path)


def _queued(run_id: str, order: float, device: str = "cpu") -> QueuedRun:
    return QueuedRun(run_id, TrainConfig(epochs=1, **SMALL), f"run {run_id}", None, device, order)


def test_the_queue_on_disk_keeps_order_and_a_claim_is_won_once(tmp_path):
    for run_id, order in (("b", 2.0), ("a", 1.0), ("c", 3.0)):
        run_queue.enqueue(tmp_path, _queued(run_id, order))
    with pytest.raises(TrainingError, match="already queued"):
        run_queue.enqueue(tmp_path, _queued("a", 9.0))
    assert [run.run_id for run in run_queue.waiting(tmp_path)] == ["a", "b", "c"]
    run_queue.reorder(tmp_path, ["c", "a", "b"])
    assert [run.run_id for run in run_queue.waiting(tmp_path)] == ["c", "a", "b"]
    results = []
    threads = [threading.Thread(target=lambda: results.append(run_queue.claim(tmp_path, "c"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(result is not None for result in results) == 1
    assert run_queue.cancel(tmp_path, "a") and not run_queue.cancel(tmp_path, "a")
    assert [run.run_id for run in run_queue.waiting(tmp_path)] == ["b"]


def test_a_run_whose_process_died_goes_back_to_the_head_of_the_queue(tmp_path):
    run_queue.enqueue(tmp_path, _queued("first", 1.0))
    run_queue.enqueue(tmp_path, _queued("second", 2.0))
    lock = DeviceLock(tmp_path, "cpu")
    assert lock.acquire()
    assert run_queue.claim(tmp_path, "second") is not None
    assert run_queue.recover_interrupted(tmp_path) == []  # its process (holding the lock) lives
    lock.release()  # as the kernel does when that process dies
    assert run_queue.recover_interrupted(tmp_path) == ["second"]
    runs = run_queue.waiting(tmp_path)
    assert [run.run_id for run in runs] == ["second", "first"] and runs[0].attempts == 1
    for _ in range(run_queue.MAX_ATTEMPTS - 1):  # killed every time: left for a person to resume
        assert run_queue.claim(tmp_path, "second") is not None
        run_queue.recover_interrupted(tmp_path)
    assert [run.run_id for run in run_queue.waiting(tmp_path)] == ["first"]


def test_the_device_lock_is_one_holder_at_a_time(tmp_path):
    first, second = DeviceLock(tmp_path, "cpu"), DeviceLock(tmp_path, "cpu")
    assert first.acquire() and not second.acquire() and second.held_by_a_process()
    first.release()
    assert not second.held_by_a_process() and second.acquire()
    second.release()
    with pytest.raises(TrainingError):
        DeviceLock(tmp_path, "../etc")


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"[" * 5000 + b"]" * 5000, "nested more than"),
        (b'{"format": "vae-studio-queued-run", "run_id": "x"}', "run_id is not the file's own"),
        (b"\xff\xfe", "not valid JSON"),
        (b'{"a": NaN}', "not valid JSON"),
    ],
)
def test_a_crafted_queue_file_is_skipped_with_a_reason(tmp_path, content, problem):
    path = tmp_path / "crafted.queued.json"
    path.write_bytes(content)
    with pytest.raises(UnreadableFile, match=problem):
        run_queue.read_queued(path)
    assert run_queue.waiting(tmp_path) == []


def test_a_fifo_named_like_a_queue_file_never_blocks(tmp_path):
    os.mkfifo(tmp_path / "fifo.queued.json")
    (tmp_path / "folder.queued.json").mkdir()
    started = time.monotonic()
    assert run_queue.waiting(tmp_path) == [] and run_queue.recover_interrupted(tmp_path) == []
    assert time.monotonic() - started < 2.0


def test_a_run_process_obeys_commands_through_the_store_from_any_server(registry, digits, tmp_path):
    from vae_core.run_commands import read_commands, send_command
    from vae_core.runs import read_run

    job = registry.submit(TrainConfig(epochs=200, **SMALL), digits)
    _wait_for(lambda: (record := read_run(tmp_path, job.run_id)) is not None and record.live)
    assert read_run(tmp_path, job.run_id).progress.commands  # its record says it takes commands
    send_command(tmp_path, job.run_id, "pause")  # as a restarted server does: no pipe to the process
    _wait_for(lambda: read_run(tmp_path, job.run_id).status == "paused")
    send_command(tmp_path, job.run_id, "lr", 0.004)
    send_command(tmp_path, job.run_id, "resume")
    _wait_for(lambda: read_run(tmp_path, job.run_id).status == "running" and len(job.snapshot().events) == 1)
    assert [(e["name"], e["value"]) for e in job.snapshot().events] == [("lr", 0.004)]
    assert [name for _, name, _ in read_commands(tmp_path / f"{job.run_id}.commands.json")] == ["pause", "lr", "resume"]
    with pytest.raises(Exception, match="lr"):
        send_command(tmp_path, job.run_id, "lr", -1.0)
    send_command(tmp_path, job.run_id, "stop")
    assert job.wait(60) and job.status == "stopped"
    assert read_run(tmp_path, job.run_id).status == "stopped"
    assert not (tmp_path / f"{job.run_id}.commands.json").exists()  # gone with the run


def test_a_run_process_is_warming_up_until_it_says_it_is_ready(registry):
    """The Train page tells a run next in line that it waits for its run process's start-up: true only
    between the process's start and its "ready" (and never for a device without a process)."""
    assert not registry.warming_up("cpu")
    registry.warm_up("cpu")
    assert registry.warming_up("cpu")  # a fresh interpreter imports torch for seconds first
    assert registry.wait_for_run_process(120)
    assert not registry.warming_up("cpu")
    assert not registry.warming_up("cuda:0")
