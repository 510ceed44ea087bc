"""Faults lose nothing: divergence, out of memory, kills during autosave, stop and resume."""

import os
import signal
import subprocess
import sys
import textwrap
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from vae_core import loop
from vae_core.checkpoint import load_checkpoint
from vae_core.cli import main
from vae_core.config import TrainConfig
from vae_core.errors import CheckpointError
from vae_core.jobs import TrainingJob
from vae_core.loop import run_to_end
from vae_core.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]
SMALL = dict(data="digits", hidden=(32,), latent_dim=2, batch_size=64, device="cpu")


def test_cli_divergence_exits_non_zero_naming_the_step_and_saves_good_weights(tmp_path, capsys):
    out = tmp_path / "diverged.safetensors"
    code = main(
        [
            "train",
            "--data",
            "digits",
            "--hidden",
            "32",
            "--latent-dim",
            "2",
            "--recon",
            "mse",
            "--lr",
            "50",
            "--epochs",
            "5",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "diverged at step" in err and "the loss became" in err
    saved = load_checkpoint(out)
    assert saved.status == "failed"
    assert all(torch.isfinite(v).all() for v in saved.state.model_state.values())


def test_out_of_memory_fails_the_job_with_advice_and_keeps_the_weights(digits, tmp_path, monkeypatch):
    # A count of its own: no timing of thread counts, whose steps would meet the patched step first.
    job = TrainingJob(TrainConfig(epochs=3, threads=1, **SMALL), digits, checkpoint_dir=tmp_path)
    real_step = loop.train_step
    calls = {"n": 0}

    def step_then_oom(trainer):
        calls["n"] += 1
        if calls["n"] > 5:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        real_step(trainer)

    monkeypatch.setattr(loop, "train_step", step_then_oom)
    job.start()
    assert job.wait(30)
    snap = job.snapshot()
    assert snap.status == "failed"
    assert "out of memory" in snap.message and "smaller batch size" in snap.message
    assert load_checkpoint(tmp_path / f"{job.run_id}.safetensors").state.step == 5


def test_stop_mid_epoch_then_resume_loses_and_repeats_no_step(digits, tmp_path):
    config = TrainConfig(epochs=3, **SMALL)
    job = TrainingJob(config, digits, checkpoint_dir=tmp_path).start()
    while job.snapshot().step < 7:
        time.sleep(0.005)
    job.stop()
    assert job.wait(5)
    saved = load_checkpoint(tmp_path / f"{job.run_id}.safetensors")
    assert saved.state.step_in_epoch == saved.state.step % 23  # 1,437 train images / 64 -> 23 steps
    resumed = Trainer(saved.config, digits, state=saved.state)
    run_to_end(resumed)
    straight = Trainer(config, digits)
    run_to_end(straight)
    assert np.array_equal(resumed.history.curves().step, np.arange(1, 3 * 23 + 1))
    assert np.array_equal(resumed.history.curves().total, straight.history.curves().total)


KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    from vae_core.config import TrainConfig
    from vae_core.data import load_dataset
    from vae_core.jobs import TrainingJob
    config = TrainConfig(data="digits", hidden=(512, 512), latent_dim=8, batch_size=512, epochs=1000,
                         device="cpu")
    job = TrainingJob(config, load_dataset("digits"), run_id="victim", checkpoint_dir={folder!r}).start()
    print("started", flush=True)
    job.wait()
""")


def test_killing_a_training_process_in_the_middle_of_a_save_leaves_a_loadable_checkpoint(tmp_path):
    """The job autosaves every epoch (several times a second here). Kill it the moment a save's
    temporary file appears, i.e. mid-write: the checkpoint on disk must still load."""
    target = tmp_path / "victim.safetensors"
    process = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT.format(root=str(ROOT), folder=str(tmp_path))],
        stdout=subprocess.PIPE,
        text=True,
    )
    caught_mid_write = False
    try:
        assert process.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not caught_mid_write:
            caught_mid_write = target.exists() and any(tmp_path.glob(".victim.safetensors.*"))
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert caught_mid_write, "never saw a save in progress"
    assert load_checkpoint(target).state.step > 0  # raises if the file were corrupt


def test_a_corrupt_autosave_is_reported_not_loaded(tmp_path):
    path = tmp_path / "half.safetensors"
    path.write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{"a":')
    with pytest.raises(CheckpointError, match="half.safetensors"):
        load_checkpoint(path)


def test_server_listens_locally_with_xsrf_protection_and_an_upload_limit():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    assert config["server"]["enableXsrfProtection"] is True
    assert 0 < config["server"]["maxUploadSize"] <= 200
