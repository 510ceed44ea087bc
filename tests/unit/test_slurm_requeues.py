"""What the retry limit (SlurmSettings.max_requeues) counts, on a fake SLURM (tests/fake_slurm.py): a
job that saved a newer epoch than its run began with is requeued freely, however often; one that saved
none counts, and past the limit the run fails, saying why, rather than being requeued for ever."""

import os
import signal
import subprocess
import time

from tests.fake_slurm import fake_slurm  # noqa: F401  (the fixture)
from vae_core import run_queue
from vae_core.config import TrainConfig
from vae_core.executor_state import read_state, state_path
from vae_core.runs import read_run
from vae_core.slurm_executor import SlurmQueue, saved_epoch

TINY = dict(data="digits", hidden=(16,), latent_dim=2, batch_size=16, device="cpu", threads=1)


def _state(folder, run_id):
    return read_state(state_path(folder, run_id))


def _trains(slurm, run_id) -> bool:
    """Its job has begun training (its progress record says so, from a process that is alive)."""
    record = read_run(slurm.folder, run_id)
    return record is not None and record.live


def _until(slurm, run_id, ready, timeout=90.0):
    deadline = time.monotonic() + timeout
    while not ready(_state(slurm.folder, run_id)):
        assert time.monotonic() < deadline, _state(slurm.folder, run_id)
        slurm.follow()
        time.sleep(0.02)
    return _state(slurm.folder, run_id)


def test_jobs_killed_after_saving_a_new_epoch_are_submitted_again_past_the_limit(tmp_path, fake_slurm, monkeypatch):  # noqa: F811
    monkeypatch.setenv("VAE_STUDIO_SLURM_MAX_REQUEUES", "1")
    slurm = SlurmQueue(tmp_path / "checkpoints")
    (run_id,) = slurm.queue([TrainConfig(epochs=6, seed=1, **TINY)])
    for _ in range(2):  # two deaths, each after a new epoch: more than the limit of 1, none counted
        began = _state(slurm.folder, run_id)
        state = _until(slurm, run_id, lambda s: s.state == "running" and s.job_id == began.job_id)
        deadline = time.monotonic() + 60
        while saved_epoch(slurm.folder, run_id) <= state.start_epoch:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.kill(fake_slurm.job(state.job_id)["step_pid"], signal.SIGKILL)
        _until(slurm, run_id, lambda s, job_id=state.job_id: s.job_id != job_id)  # submitted again
    state = _until(slurm, run_id, lambda s: not s.active)
    assert (state.state, state.attempts, state.reason) == ("finished", 0, None)
    assert len(fake_slurm.calls("sbatch")) == 3


def test_a_job_warned_again_before_saving_an_epoch_is_not_requeued_past_the_limit(tmp_path, fake_slurm, monkeypatch):  # noqa: F811
    monkeypatch.setenv("VAE_STUDIO_SLURM_MAX_REQUEUES", "1")
    slurm = SlurmQueue(tmp_path / "checkpoints")
    # An epoch of 1,438 steps of a wider model: longer than the warnings below leave it (at 719 steps of
    # a narrower one, a fast machine once saved an epoch before the second warning, which then rightly
    # did not count, and the run went on to finish).
    config = TrainConfig(epochs=3, **{**TINY, "hidden": (256,), "batch_size": 1})
    (run_id,) = slurm.queue([config])
    state = _until(slurm, run_id, lambda s: _trains(slurm, run_id))  # submitit's handlers are set by then
    subprocess.check_call(["scancel", state.job_id, "--signal", "USR2"])  # its time limit is near
    requeued = _until(slurm, run_id, lambda s: _trains(slurm, run_id) and fake_slurm.job(s.job_id)["runs"] == 2)
    assert (requeued.job_id, requeued.attempts, requeued.start_epoch) == (state.job_id, 1, 0)
    subprocess.check_call(["scancel", state.job_id, "--signal", "USR2"])  # and again, still no epoch saved

    failed = _until(slurm, run_id, lambda s: not s.active)
    assert (failed.state, failed.attempts) == ("failed", 1)
    assert failed.reason == (
        "its job reached its time limit or was preempted again without saving a new epoch (still 0): "
        "not requeued; raise time_min, or resume it from its checkpoint"
    )
    assert [call["args"] for call in fake_slurm.calls("scontrol")] == [["requeue", state.job_id]]
    assert not run_queue.queued_path(slurm.folder, run_id).exists()
    assert not run_queue.claimed_path(slurm.folder, run_id).exists()
    assert slurm.follow()[run_id].state == "failed"  # following the scheduler does not submit it again
