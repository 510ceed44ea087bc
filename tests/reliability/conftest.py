"""A small real checkpoint, and a way to craft variants of it, for the hostile-run tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from vae_core.checkpoint import save_trainer_checkpoint
from vae_core.config import TrainConfig
from vae_core.loop import train_step
from vae_core.safetensors_io import read_checkpoint, write_checkpoint
from vae_core.trainer import Trainer


@pytest.fixture(scope="session")
def good_checkpoint(tmp_path_factory, digits) -> Path:
    """One step and one finished epoch (metrics, pictures) of a tiny MLP on the digits: run id "good"."""
    trainer = Trainer(TrainConfig(data="digits", hidden=(16,), latent_dim=2, epochs=2, device="cpu"), digits)
    train_step(trainer)
    trainer.end_epoch()
    return save_trainer_checkpoint(trainer, "good", "stopped", tmp_path_factory.mktemp("runs") / "good.safetensors")


@pytest.fixture
def craft(good_checkpoint, tmp_path) -> Callable[..., Path]:
    """craft(name, tensors_change=None, metadata_change=None): a copy of the good checkpoint, changed
    by the given functions (which edit the tensors dict or the metadata dict in place), as a file."""

    def make(name: str, tensors_change=None, metadata_change=None) -> Path:
        tensors, metadata = read_checkpoint(good_checkpoint)
        if tensors_change:
            tensors_change(tensors)
        if metadata_change:
            metadata_change(metadata)
        target = tmp_path / f"{name}.safetensors"
        write_checkpoint(target, tensors, metadata)
        return target

    return make
