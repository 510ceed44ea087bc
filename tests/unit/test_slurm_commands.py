"""Stop and cancel reach a SLURM run that is training (tests/fake_slurm.py), by the doors the pages use:
the Train page's Stop (the run's record in the store, commands through the run's command file) and the
Runs page's cancel (the registry's, scancel)."""

import time

from tests.fake_slurm import fake_slurm  # noqa: F401  (the fixture)
from vae_core import run_queue
from vae_core.checkpoint import load_checkpoint
from vae_core.config import TrainConfig
from vae_core.executor_state import read_state, state_path
from vae_core.registry import JobRegistry
from vae_core.runs import checkpoint_path, read_run
from vae_core.stored_runs import stored_run

TINY = dict(data="digits", hidden=(16,), latent_dim=2, batch_size=16, device="cpu", threads=1)


def _state(folder, run_id):
    return read_state(state_path(folder, run_id))


def _training_past_its_first_epoch(registry, run_id, timeout=90.0):
    """Wait until the run's job trains and has saved its first epoch; its record then."""
    folder = registry.checkpoint_dir
    deadline = time.monotonic() + timeout
    while True:
        registry.sync_with_store()
        record = read_run(folder, run_id)
        if _state(folder, run_id).state == "running" and record is not None and record.live and record.epoch >= 1:
            return record
        assert time.monotonic() < deadline, _state(folder, run_id)
        time.sleep(0.05)


def _ended(registry, run_id, timeout=60.0):
    deadline = time.monotonic() + timeout
    while _state(registry.checkpoint_dir, run_id).active:
        registry.sync_with_store()
        assert time.monotonic() < deadline, _state(registry.checkpoint_dir, run_id)
        time.sleep(0.05)
    return _state(registry.checkpoint_dir, run_id)


def test_the_train_pages_stop_ends_a_running_slurm_job_cleanly(tmp_path, fake_slurm, digits):  # noqa: F811
    registry = JobRegistry(tmp_path, executor="slurm")
    try:
        job = registry.submit(TrainConfig(epochs=500, **TINY), digits, name="stopped on the cluster")
        record = _training_past_its_first_epoch(registry, job.run_id)
        job_id = _state(tmp_path, job.run_id).job_id

        shown = stored_run(tmp_path, record, None)  # what the Train page drives for a run it did not start
        assert shown.commands  # so the page offers Stop, Pause and the live changes
        shown.stop()
        state = _ended(registry, job.run_id)

        assert (state.state, state.job_id, state.reason) == ("stopped", job_id, None)
        saved = load_checkpoint(checkpoint_path(tmp_path, job.run_id))
        assert (saved.status, saved.name) == ("stopped", "stopped on the cluster")
        assert 1 <= saved.state.epoch < 500
        assert read_run(tmp_path, job.run_id).status == "stopped"
        deadline = time.monotonic() + 30
        while fake_slurm.job(job_id)["state"] == "RUNNING":  # the job returns once the run has saved
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert fake_slurm.job(job_id)["state"] == "COMPLETED"
        assert fake_slurm.calls("scancel") == []  # stopped by the run itself, not killed
        assert not run_queue.claimed_path(tmp_path, job.run_id).exists()
    finally:
        registry.close()


def test_cancel_of_a_running_slurm_job_reaches_scancel(tmp_path, fake_slurm, digits):  # noqa: F811
    registry = JobRegistry(tmp_path, executor="slurm")
    try:
        job = registry.submit(TrainConfig(epochs=500, **TINY), digits)
        _training_past_its_first_epoch(registry, job.run_id)
        job_id = _state(tmp_path, job.run_id).job_id

        registry.cancel(job.run_id)

        assert [call["args"] for call in fake_slurm.calls("scancel")] == [[job_id]]
        assert fake_slurm.job(job_id)["state"] == "CANCELLED"
        state = _ended(registry, job.run_id)
        assert (state.state, state.job_id, state.reason) == ("cancelled", job_id, "cancelled by a person")
        assert registry.slurm.active_runs() == []
        assert not run_queue.queued_path(tmp_path, job.run_id).exists()
        assert not run_queue.claimed_path(tmp_path, job.run_id).exists()
        deadline = time.monotonic() + 30
        while read_run(tmp_path, job.run_id).live:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # SLURM's SIGTERM does not end a submitit job: the run was asked to stop too, so it saved and
        # ended cleanly before the scheduler's SIGKILL, rather than being killed mid-batch.
        saved = load_checkpoint(checkpoint_path(tmp_path, job.run_id))
        assert (saved.status, read_run(tmp_path, job.run_id).status) == ("stopped", "stopped")
        assert saved.state.epoch >= 1
        assert _state(tmp_path, job.run_id).state == "cancelled"  # the person's cancel stays its last word
    finally:
        registry.close()


def test_a_cancel_while_the_job_loads_its_data_still_stops_the_run(tmp_path, fake_slurm, monkeypatch):  # noqa: F811
    """The job writes "running" before it loads its data; a cancel that reads "running" then sends its
    stop into that gap, which the job must obey once it trains (not train on until scancel's SIGKILL)."""
    from vae_core import worker
    from vae_core.slurm_executor import SlurmQueue, train_queued_run

    monkeypatch.setenv("FAKE_SLURM_HOLD", "1")  # the job stays pending: this test runs its call itself
    slurm = SlurmQueue(tmp_path)
    (run_id,) = slurm.queue([TrainConfig(epochs=20, **TINY)])
    job_id = _state(tmp_path, run_id).job_id
    monkeypatch.setenv("SLURM_JOB_ID", job_id)
    build = worker.training_job

    def cancelled_while_building(*args, **kwargs):
        assert _state(tmp_path, run_id).state == "running"
        slurm.cancel(run_id)
        return build(*args, **kwargs)

    monkeypatch.setattr(worker, "training_job", cancelled_while_building)

    assert train_queued_run(tmp_path, run_id) == "stopped"
    saved = load_checkpoint(checkpoint_path(tmp_path, run_id))
    assert (saved.status, saved.state.epoch) == ("stopped", 0)
    assert _state(tmp_path, run_id).state == "cancelled"  # the person's cancel stays its last word
    assert [call["args"] for call in fake_slurm.calls("scancel")] == [[job_id]]
    assert not run_queue.claimed_path(tmp_path, run_id).exists()
