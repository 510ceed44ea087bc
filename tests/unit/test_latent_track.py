"""The latent means of the first test images, kept at every epoch end: in the history, the job's
snapshot and the checkpoint, exactly, and within bounds; old checkpoints without them still load."""

import numpy as np
import torch

from vae_core.checkpoint import load_checkpoint, save_trainer_checkpoint
from vae_core.config import TrainConfig
from vae_core.history import TRACKED_IMAGES, tracked_count
from vae_core.loop import run_to_end
from vae_core.safetensors_io import read_checkpoint, write_checkpoint
from vae_core.trainer import Trainer

SMALL = dict(data="digits", hidden=(32,), latent_dim=3, batch_size=256, device="cpu")


def test_each_epoch_keeps_the_means_of_the_same_test_images(digits):
    trainer = Trainer(TrainConfig(epochs=2, **SMALL), digits)
    run_to_end(trainer)
    frames = trainer.history.frames
    images = min(len(digits.test_x), TRACKED_IMAGES)
    assert [f.latent_means.shape for f in frames] == [(images, 3)] * 2
    assert all(f.latent_means.dtype == np.float16 for f in frames)
    assert not np.array_equal(frames[0].latent_means, frames[1].latent_means)  # the codes moved
    with torch.no_grad():
        mu, _ = trainer.model.eval().encode(digits.test_x[:images])
    assert np.array_equal(frames[-1].latent_means, mu.numpy().astype(np.float16))  # the last epoch's model


def test_the_means_survive_a_checkpoint_exactly(digits, tmp_path):
    trainer = Trainer(TrainConfig(epochs=2, **SMALL), digits)
    run_to_end(trainer)
    loaded = load_checkpoint(save_trainer_checkpoint(trainer, "tracked", "finished", tmp_path / "t.safetensors"))
    for saved, read in zip(trainer.history.frames, loaded.state.history.frames, strict=True):
        assert read.latent_means.dtype == np.float16
        assert np.array_equal(saved.latent_means, read.latent_means)


def test_a_checkpoint_from_before_the_means_loads_and_resumes(digits, tmp_path):
    trainer = Trainer(TrainConfig(epochs=1, **SMALL), digits)
    run_to_end(trainer)
    path = save_trainer_checkpoint(trainer, "old", "stopped", tmp_path / "old.safetensors")
    tensors, metadata = read_checkpoint(path)
    for name in [name for name in tensors if name.endswith(".latent_means")]:
        del tensors[name]
    write_checkpoint(path, tensors, metadata)

    loaded = load_checkpoint(path)
    assert loaded.state.history.frames[0].latent_means is None
    resumed = Trainer(loaded.config.replace(epochs=2), digits, state=loaded.state)
    run_to_end(resumed)
    assert resumed.history.frames[0].latent_means is None and resumed.history.frames[1].latent_means is not None


def test_the_job_snapshot_carries_the_means(digits):
    from vae_core.jobs import TrainingJob

    job = TrainingJob(TrainConfig(epochs=1, **SMALL), digits)
    job.start()
    job.wait(timeout=60)
    frames = job.snapshot().frames
    assert frames and frames[-1].latent_means.shape == (min(len(digits.test_x), TRACKED_IMAGES), 3)


def test_a_wide_latent_keeps_fewer_images_so_a_frame_stays_small():
    assert tracked_count(2) == tracked_count(32) == TRACKED_IMAGES
    assert tracked_count(128) * 128 <= 32_768 and tracked_count(128) >= 200
