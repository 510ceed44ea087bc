"""A run's clock (wall time by step): noted at every flush, bounded, kept in its checkpoint, carried
on by an exact resume (the time it waits on disk not counted), and never touching the numbers."""

import itertools
import time

import numpy as np
import pytest

from vae_core.checkpoint import load_checkpoint, save_trainer_checkpoint
from vae_core.checkpoint_fields import parse_metadata
from vae_core.config import TrainConfig
from vae_core.history import MAX_CLOCK_POINTS, History
from vae_core.loop import Hooks, run_to_end, train_step
from vae_core.runs import ProgressWriter, read_progress
from vae_core.safetensors_io import read_checkpoint
from vae_core.trainer import Trainer

SMALL = dict(data="digits", hidden=(32,), latent_dim=2, batch_size=128, device="cpu")


def assert_clock_runs_forward(clock):
    steps, seconds = zip(*clock)
    assert all(b > a for a, b in itertools.pairwise(steps)), steps
    assert all(b >= a for a, b in itertools.pairwise(seconds)), seconds


def test_every_flush_notes_the_time_of_its_last_step(digits):
    trainer = Trainer(TrainConfig(epochs=2, **SMALL), digits)
    began = time.perf_counter()
    run_to_end(trainer, Hooks(flush_steps=4))
    took = time.perf_counter() - began
    clock = trainer.history.clock
    assert clock[0] == (0, 0.0)  # a new run starts its clock at step 0
    assert clock[-1][0] == trainer.step and 0 < clock[-1][1] <= took + 0.01
    assert len(clock) == 1 + -(-trainer.steps_per_epoch // 4) * 2  # one point per flush
    assert_clock_runs_forward(clock)
    curves = trainer.history.curves()
    seconds = curves.clock.at(curves.step.astype(float))
    assert np.isfinite(seconds).all() and np.all(np.diff(seconds) >= 0) and seconds[-1] > seconds[0]


def test_the_clock_is_saved_and_read_back_with_the_checkpoint(digits, tmp_path):
    trainer = Trainer(TrainConfig(epochs=1, **SMALL), digits)
    run_to_end(trainer)
    path = save_trainer_checkpoint(trainer, "timed", "finished", tmp_path / "timed.safetensors")
    _, metadata = read_checkpoint(path)
    assert metadata["history"]["clock"] == [list(point) for point in trainer.history.clock]
    loaded = load_checkpoint(path).state.history
    assert loaded.clock == trainer.history.clock
    assert np.array_equal(loaded.curves().clock.seconds, trainer.history.curves().clock.seconds)


def test_a_resumed_run_goes_on_from_its_saved_time_not_from_zero(digits, tmp_path):
    first = Trainer(TrainConfig(epochs=1, **SMALL), digits)
    run_to_end(first)
    saved_step, saved_seconds = first.history.clock[-1]
    path = save_trainer_checkpoint(first, "paused", "stopped", tmp_path / "paused.safetensors")
    loaded = load_checkpoint(path)
    time.sleep(0.5)  # the time a run waits on disk is not training time
    resumed = Trainer(loaded.config.replace(epochs=2), digits, state=loaded.state)
    began = time.perf_counter()
    run_to_end(resumed)
    took = time.perf_counter() - began

    clock = resumed.history.clock
    assert clock[: len(first.history.clock)] == first.history.clock  # what it had, kept as it was
    assert_clock_runs_forward(clock)
    later = [(step, seconds) for step, seconds in clock if step > saved_step]
    assert later and later[0][1] > saved_seconds  # after the saved time, not from 0
    assert clock[-1][1] - saved_seconds <= took + 0.05  # ... and without the half second on disk


def test_a_run_resumed_from_a_file_without_a_clock_times_what_it_trains_from_there(digits):
    first = Trainer(TrainConfig(epochs=1, **SMALL), digits)
    run_to_end(first)
    state = first.state()
    state.history.clock = []  # as in a file written before runs kept a clock
    resumed = Trainer(first.config.replace(epochs=2), digits, state=state)
    run_to_end(resumed)
    assert resumed.history.clock[0] == (first.step, 0.0)
    curves = resumed.history.curves()
    seconds = curves.clock.at(curves.step.astype(float))
    assert np.isnan(seconds[: first.step - 1]).all() and np.isfinite(seconds[first.step :]).all()


def test_the_clock_does_not_change_the_numbers(digits, monkeypatch):
    """Same seed, same losses, however the wall clock runs (here: one that jumps by an hour a call)."""
    straight = Trainer(TrainConfig(epochs=1, **SMALL), digits)
    run_to_end(straight)
    ticks = iter(range(0, 10**9, 3600))
    monkeypatch.setattr("vae_core.trainer.time.perf_counter", lambda: float(next(ticks)))
    jumpy = Trainer(TrainConfig(epochs=1, **SMALL), digits)
    run_to_end(jumpy)
    assert np.array_equal(jumpy.history.step_matrix(), straight.history.step_matrix())
    assert jumpy.history.clock[-1][1] >= 3600


def test_a_long_run_keeps_a_bounded_clock_spanning_all_of_it():
    history = History()
    for step in range(10 * MAX_CLOCK_POINTS + 1):
        history.add_time(step, step / 10)
    assert len(history.clock) <= MAX_CLOCK_POINTS
    assert history.clock[0] == (0, 0.0) and history.clock[-1] == (10 * MAX_CLOCK_POINTS, MAX_CLOCK_POINTS)
    assert_clock_runs_forward(history.clock)
    assert history.run_clock().at(np.array([5000.0]))[0] == pytest.approx(500.0)


def test_a_later_time_for_the_same_step_replaces_it_and_a_truncation_drops_later_steps():
    history = History()
    for step, seconds in [(0, 0.0), (10, 1.0), (10, 1.5), (20, 2.0)]:
        history.add_time(step, seconds)
    assert history.clock == [(0, 0.0), (10, 1.5), (20, 2.0)]
    history.truncate(15)
    assert history.clock == [(0, 0.0), (10, 1.5)] and history.seconds_trained == 1.5


def test_a_resumed_cli_runs_progress_record_carries_the_clock_on(digits, tmp_path):
    """The progress record's wall times are the run's clock, so a followed run resumed by the CLI does
    not start again from 0 s, and its earlier points keep their times."""
    first = Trainer(TrainConfig(epochs=1, **SMALL), digits)
    run_to_end(first)
    saved_seconds = first.history.seconds_trained
    resumed = Trainer(first.config.replace(epochs=2), digits, state=first.state())
    writer = ProgressWriter(tmp_path / "r.safetensors", resumed, run_id="r", name="r", dataset="digits")
    for _ in range(3):
        train_step(resumed)
    resumed.flush()
    writer.close(resumed, "stopped")
    points = read_progress(writer.path).points
    assert None not in points["wall"] and points["wall"] == sorted(points["wall"])
    assert points["wall"][-2] == pytest.approx(saved_seconds, abs=1e-3)  # the last point it had
    assert points["wall"][-1] > saved_seconds and points["step"][-1] == first.step + 3


def test_the_metadata_of_a_file_without_a_clock_parses_to_none(digits, tmp_path):
    trainer = Trainer(TrainConfig(epochs=1, **SMALL), digits)
    train_step(trainer)
    _, metadata = read_checkpoint(save_trainer_checkpoint(trainer, "old", "stopped", tmp_path / "old.safetensors"))
    del metadata["history"]["clock"]
    assert parse_metadata(metadata).clock == ()
