"""A small real checkpoint, a way to craft variants of it, and a valid progress record to spoil, for the
hostile-run tests."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from vae_core.checkpoint import save_trainer_checkpoint
from vae_core.config import TrainConfig
from vae_core.loop import train_step
from vae_core.runs import POINT_FIELDS, PROGRESS_FORMAT
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


@pytest.fixture
def progress_record() -> Callable[..., dict]:
    """progress_record(**changes): the progress record of a run "crafted" that a live process (pid 1,
    which always lives) trains on this host, valid as it stands, with `changes` made to it."""

    def make(**changes) -> dict:
        now = time.time()
        record = {
            "format": PROGRESS_FORMAT,
            "run_id": "crafted",
            "name": "crafted",
            "status": "running",
            "pid": 1,
            "host": socket.gethostname(),
            "started": now,
            "heartbeat": now,
            "step": 1,
            "total_steps": 10,
            "epoch": 0,
            "epochs": 1,
            "steps_per_epoch": 10,
            "samples_per_s": 1.0,
            "config": {"data": "digits"},
            "dataset": "digits",
            "points": {key: [] for key in POINT_FIELDS},
            "epoch_metrics": [],
        }
        return record | changes

    return make
