"""The background job: commands from another thread, snapshots, names, failures, autosave."""

import os
import time

import numpy as np
import pytest
import torch

from vae_core import loop
from vae_core.checkpoint import load_checkpoint
from vae_core.config import TrainConfig
from vae_core.errors import ConfigError, TrainingError
from vae_core.jobs import TrainingJob

SMALL = dict(data="digits", hidden=(32,), latent_dim=2, batch_size=32, device="cpu")


def _wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


def test_job_trains_to_the_end_and_autosaves(digits, tmp_path):
    job = TrainingJob(TrainConfig(epochs=2, **SMALL), digits, checkpoint_dir=tmp_path)
    waiting = job.snapshot()
    assert waiting.status == "queued" and waiting.step == 0 and waiting.total_steps == 2 * 45 and waiting.active
    assert not job.wait(0.05)  # not started: not ended either
    job.start()
    assert job.wait(60)
    snap = job.snapshot()
    assert snap.status == "finished" and snap.epoch == 2 and snap.step == snap.total_steps
    assert len(snap.curves) == snap.step and len(snap.epoch_metrics) == 2 and len(snap.frames) == 2
    assert snap.frames[-1].reconstructions.shape == (16, 1, 8, 8)
    assert snap.threads.startswith(f"{snap.config['threads']} CPU thread")
    assert 1 <= snap.config["threads"] <= os.cpu_count()
    saved = load_checkpoint(tmp_path / f"{job.run_id}.safetensors")
    assert saved.state.step == snap.step and saved.status == "finished"
    assert saved.config.threads == snap.config["threads"]  # kept with the run, for a repeat or an exact resume
    assert saved.name == job.name == snap.name == "mlp z2 β1 digits h32 bs 32"
    epoch, weights = job.latest_weights()
    assert epoch == 2 and all(torch.equal(weights[k], v) for k, v in saved.state.model_state.items())


def test_a_job_trains_the_same_bits_as_the_loop_it_wraps(digits):
    config = TrainConfig(epochs=2, **SMALL)
    job = TrainingJob(config, digits).start()
    assert job.wait(60)
    before = torch.get_num_threads()
    torch.set_num_threads(job.config.threads)  # the count the job chose and kept with the run
    try:
        direct = loop.train(config, digits)
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(job.snapshot().curves.total, direct.history.curves().total)
    _, weights = job.latest_weights()
    assert all(torch.equal(weights[k], v) for k, v in direct.model.state_dict().items())


def test_a_queued_job_shows_the_weights_it_will_start_from_and_can_be_renamed(digits):
    job = TrainingJob(TrainConfig(epochs=1, **SMALL), digits, name="first try")
    epoch, weights = job.latest_weights()
    assert epoch == 0 and set(weights) >= {"fc_mu.weight", "fc_log_var.weight"}
    assert all(torch.equal(weights[k], v) for k, v in loop.Trainer(job.config, digits).model.state_dict().items())
    assert job.snapshot().name == "first try"
    version = job.snapshot().version
    job.rename("  second   try ")
    assert job.snapshot().name == "second try" and job.snapshot().version == version + 1
    with pytest.raises(TrainingError, match="cannot be empty"):
        job.rename("   ")
    job.stop()  # a queued job is cancelled at once
    assert job.wait(0) and job.status == "cancelled" and not job.snapshot().active
    with pytest.raises(TrainingError, match="cannot start: it is cancelled"):
        job.start()


def test_bad_commands_and_configs_fail_at_once_with_a_message(digits):
    job = TrainingJob(TrainConfig(epochs=1, **SMALL), digits)
    with pytest.raises(ConfigError, match="lr must be above 0 and at most 100"):
        job.set_lr(0)
    with pytest.raises(ConfigError, match="beta must be between 0 and 1000"):
        job.set_beta(1e6)
    with pytest.raises(ConfigError, match="16x16"):  # before any thread: the images are 8x8
        TrainingJob(TrainConfig(epochs=1, **{**SMALL, "model": "conv"}), digits)


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

    def broken_step(trainer):
        raise RuntimeError("boom")

    monkeypatch.setattr(loop, "train_step", broken_step)
    job.start()
    assert job.wait(10)
    assert job.snapshot().status == "failed"
    assert "RuntimeError: boom" in job.snapshot().message
