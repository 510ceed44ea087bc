"""A run's step history stays float32 from the training step to the file and back to the curves: a
190 MB upload of 8 M rows was held as 380 MB of float64 (issue 23, finding 5)."""

import json
import struct

import numpy as np
import pytest
import torch

from vae_core.checkpoint import load_checkpoint, save_trainer_checkpoint
from vae_core.config import TrainConfig
from vae_core.data import load_dataset
from vae_core.history import MAX_FLOAT32_STEP, History, kept_rows
from vae_core.loop import run_to_end
from vae_core.safetensors_io import read_checkpoint, write_checkpoint
from vae_core.trainer import Trainer


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    trainer = Trainer(
        TrainConfig(data="digits", hidden=(16,), latent_dim=2, epochs=1, device="cpu"), load_dataset("digits")
    )
    run_to_end(trainer)
    return trainer, save_trainer_checkpoint(
        trainer, "run", "finished", tmp_path_factory.mktemp("runs") / "run.safetensors"
    )


def stored_dtype(path) -> str:
    """The dtype of history.steps as the file's safetensors header says it."""
    with open(path, "rb") as handle:
        header = json.loads(handle.read(struct.unpack("<Q", handle.read(8))[0]))
    return header["history.steps"]["dtype"]


def test_a_history_read_from_a_checkpoint_is_float32(trained):
    trainer, path = trained
    assert trainer.history.step_matrix().dtype == np.float32
    assert stored_dtype(path) == "F32"
    history = load_checkpoint(path).state.history
    matrix = history.step_matrix()
    assert matrix.dtype == np.float32 and np.array_equal(matrix, trainer.history.step_matrix())
    curves = history.curves()
    assert curves.total.dtype == np.float32 and curves.step.dtype == np.int64
    assert np.shares_memory(curves.total, matrix) and not curves.total.flags.writeable  # a view, not a copy
    assert history.curves() is curves  # asked again (a page's rerun), nothing is made again


def test_a_float64_history_of_an_older_file_is_read_as_float32(trained, tmp_path):
    _, path = trained
    tensors, metadata = read_checkpoint(path)
    tensors["history.steps"] = tensors["history.steps"].to(torch.float64)
    older = tmp_path / "older.safetensors"
    write_checkpoint(older, tensors, metadata)
    assert stored_dtype(older) == "F64"
    matrix = load_checkpoint(older).state.history.step_matrix()
    assert matrix.dtype == np.float32 and np.array_equal(matrix, tensors["history.steps"].numpy())


def test_steps_past_what_float32_holds_exactly_stay_float64():
    history = History()
    history.add_steps(np.array([[MAX_FLOAT32_STEP - 1, 1, 1, 0, 1, 1e-3], [MAX_FLOAT32_STEP, 1, 1, 0, 1, 1e-3]]))
    history.add_steps(np.array([[MAX_FLOAT32_STEP + 1, 1, 1, 0, 1, 1e-3]]))
    assert [chunk.dtype for chunk in history.steps] == [np.float32, np.float64]
    assert history.curves().step.tolist() == [MAX_FLOAT32_STEP - 1, MAX_FLOAT32_STEP, MAX_FLOAT32_STEP + 1]
    assert history.curves().total.dtype == np.float32


def test_kept_rows_are_the_historys_own():
    rows = np.zeros((2, 6), dtype=np.float32)
    history = History()
    history.add_steps(rows)
    rows[0, 1] = 5.0  # the caller's buffer, written again: the history's rows stay as they were
    assert history.step_matrix()[0, 1] == 0.0 and kept_rows(rows, copy=False) is rows
