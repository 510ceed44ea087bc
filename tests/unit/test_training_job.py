"""The background job: commands from another thread, snapshots, failures, autosave, registry."""

import time

import pytest

from vae_core.checkpoint import load_checkpoint
from vae_core.config import TrainConfig
from vae_core.errors import TrainingError
from vae_core.registry import JobRegistry
from vae_core.training import TrainingJob

SMALL = dict(data="digits", hidden=(32,), latent_dim=2, batch_size=32, device="cpu")


def _wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


def test_job_trains_to_the_end_and_autosaves(digits, tmp_path):
    job = TrainingJob(TrainConfig(epochs=2, **SMALL), digits, checkpoint_dir=tmp_path).start()
    assert job.wait(60)
    snap = job.snapshot()
    assert snap.status == "finished" and snap.epoch == 2 and snap.step == snap.total_steps
    assert len(snap.curves) == snap.step and len(snap.epoch_metrics) == 2 and len(snap.frames) == 2
    assert snap.frames[-1].reconstructions.shape == (16, 1, 8, 8)
    saved = load_checkpoint(tmp_path / f"{job.run_id}.safetensors")
    assert saved.state.step == snap.step and saved.status == "finished"


def test_pause_resume_stop_from_another_thread(digits, tmp_path):
    job = TrainingJob(TrainConfig(epochs=500, **SMALL), digits, checkpoint_dir=tmp_path).start()
    _wait_for(lambda: job.snapshot().step > 5)
    job.pause()
    _wait_for(lambda: job.snapshot().status == "paused")
    paused_step = job.snapshot().step
    time.sleep(0.3)
    assert job.snapshot().step == paused_step
    job.set_beta(2.5)
    job.set_lr(5e-4)
    job.resume()
    _wait_for(lambda: job.snapshot().step > paused_step + 5)
    started = time.monotonic()
    job.stop()
    assert job.wait(5)
    assert time.monotonic() - started < 1.0
    snap = job.snapshot()
    assert snap.status == "stopped"
    assert [(e["name"], e["value"]) for e in snap.events] == [("beta", 2.5), ("lr", 5e-4)]
    assert snap.curves.beta[-1] == 2.5 and snap.curves.lr[-1] == pytest.approx(5e-4)
    saved = load_checkpoint(tmp_path / f"{job.run_id}.safetensors")
    assert saved.state.step == snap.step  # stop saves, no step lost


def test_divergence_fails_the_job_with_a_message_and_saves_the_last_good_weights(digits, tmp_path):
    config = TrainConfig(epochs=50, lr=50.0, recon="mse", **SMALL)
    job = TrainingJob(config, digits, checkpoint_dir=tmp_path).start()
    assert job.wait(60)
    snap = job.snapshot()
    assert snap.status == "failed"
    assert "diverged at step" in snap.message and "last good weights" in snap.message
    saved = load_checkpoint(tmp_path / f"{job.run_id}.safetensors")  # finite weights, loads
    assert saved.status == "failed"


def test_unexpected_errors_are_captured_not_lost(digits, monkeypatch):
    job = TrainingJob(TrainConfig(epochs=2, **SMALL), digits)

    def broken_step():
        raise RuntimeError("boom")
    monkeypatch.setattr(job.trainer, "train_step", broken_step)
    job.start()
    assert job.wait(10)
    assert job.snapshot().status == "failed"
    assert "RuntimeError: boom" in job.snapshot().message


def test_registry_allows_one_job_per_device(digits, tmp_path):
    registry = JobRegistry(tmp_path)
    first = registry.start(TrainConfig(epochs=500, **SMALL), digits)
    with pytest.raises(TrainingError, match=f"cpu is busy training run {first.run_id}"):
        registry.start(TrainConfig(epochs=1, **SMALL), digits)
    assert registry.get(first.run_id) is first
    registry.stop_all()
    second = registry.start(TrainConfig(epochs=1, **SMALL), digits)
    assert second.wait(30) and second.snapshot().status == "finished"
