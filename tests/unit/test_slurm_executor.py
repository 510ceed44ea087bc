"""The SLURM executor (vae_core/slurm_executor.py) on a fake SLURM (tests/fake_slurm.py): settings
read and checked, a job killed mid-run submitted again and resumed to the weights of a run never
interrupted, two runs training at once, and cancel reaching the job."""

import json
import os
import signal
import time

import numpy as np
import pytest
import torch

from tests.fake_slurm import fake_slurm  # noqa: F401  (the fixture)
from vae_core import run_queue
from vae_core.checkpoint import load_checkpoint
from vae_core.checkpoint_fields import OWNER_ID_LENGTH
from vae_core.config import TrainConfig
from vae_core.errors import CheckpointError, ConfigError
from vae_core.executor_state import ENDED_STATES, read_state, state_path, update_state
from vae_core.run_commands import send_command
from vae_core.runs import checkpoint_path, progress_path, read_progress, read_run
from vae_core.safe_files import UnreadableFile
from vae_core.slurm_executor import SlurmQueue, data_for_jobs, saved_epoch
from vae_core.slurm_settings import executor_setting, load_slurm_settings

TINY = dict(data="digits", hidden=(16,), latent_dim=2, batch_size=16, device="cpu", threads=1)


def test_the_executor_setting_is_local_by_default_and_refuses_anything_else(monkeypatch):
    monkeypatch.delenv("VAE_STUDIO_EXECUTOR", raising=False)
    assert executor_setting() == "process"
    assert executor_setting("slurm") == "slurm"
    assert executor_setting("local") == "process"
    with pytest.raises(ConfigError) as refused:
        executor_setting("cloud")
    assert str(refused.value) == "VAE_STUDIO_EXECUTOR='cloud' is not an executor: use local (the default) or slurm"


def test_settings_come_from_the_file_beside_the_folder_and_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("VAE_STUDIO_SLURM_CONFIG", raising=False)
    (tmp_path / "slurm.toml").write_text(
        '[slurm]\npartition = "gpu"\naccount = "vae-lab"\ntime_min = 120\ngpus_per_run = 1\n'
        'sbatch = { constraint = "a100" }\nsetup = ["module load cuda"]\n'
    )
    monkeypatch.setenv("VAE_STUDIO_SLURM_TIME_MIN", "30")
    settings = load_slurm_settings(tmp_path / "checkpoints")
    assert settings.sbatch_parameters() == {
        "time": 30,
        "cpus_per_task": 2,
        "mem": "8GB",
        "signal_delay_s": 90,
        "gpus_per_node": 1,
        "partition": "gpu",
        "account": "vae-lab",
        "additional_parameters": {"constraint": "a100"},
    }
    assert settings.setup == ("module load cuda",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gpus_per_run = 99", "gpus_per_run must be a whole number from 0 to 16"),
        ('partition = "gpu; rm -rf /"', "partition must be a name of letters, digits, '_', '.' or '-' (at most 64)"),
        (
            "nodes = 4",
            "unknown field 'nodes'; known: account, cpus_per_run, gpus_per_run, max_requeues, mem_gb, "
            "partition, qos, sbatch, setup, signal_delay_s, time_min",
        ),
        ("time_min = ", "Invalid value (at end of document)"),
    ],
)
def test_a_bad_settings_file_is_one_line_naming_the_field(tmp_path, monkeypatch, text, message):
    path = tmp_path / "cluster.toml"
    path.write_text(text)
    monkeypatch.setenv("VAE_STUDIO_SLURM_CONFIG", str(path))
    with pytest.raises(ConfigError) as refused:
        load_slurm_settings(tmp_path)
    assert str(refused.value) == f"SLURM settings {path}: {message}"


def test_the_settings_file_is_read_by_the_safe_reader(tmp_path, monkeypatch):
    fifo = tmp_path / "slurm.toml"
    os.mkfifo(fifo)  # a plain open would block forever
    monkeypatch.setenv("VAE_STUDIO_SLURM_CONFIG", str(fifo))
    with pytest.raises(ConfigError, match="slurm.toml: not a regular file"):
        load_slurm_settings(tmp_path)


def _weights(folder, run_id):
    return load_checkpoint(checkpoint_path(folder, run_id)).state.model_state


def _progress_status(folder, run_id) -> str | None:
    try:
        return read_progress(progress_path(checkpoint_path(folder, run_id))).status
    except CheckpointError:  # no record yet
        return None


def _wait_until(condition, what: str, timeout: float = 120.0) -> None:
    """Wait on a condition, not a time: a loaded machine starts jobs seconds later than an idle one."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not {what} after {timeout:.0f} s"
        time.sleep(0.02)


def _followed(slurm, run_ids):
    time.sleep(0.05)
    states = slurm.follow()
    return [states[run_id] for run_id in run_ids]


def test_a_job_killed_mid_run_is_submitted_again_and_ends_as_if_never_interrupted(tmp_path, fake_slurm):  # noqa: F811
    folder = tmp_path / "checkpoints"
    slurm = SlurmQueue(folder)
    config = TrainConfig(epochs=4, seed=3, **TINY)
    killed, uninterrupted = slurm.queue([config, config], names=["killed", "uninterrupted"])
    assert len(fake_slurm.calls("sbatch")) == 2  # both submitted before either trains
    # Two runs of one queue train at the same time: each is held (paused) in its training loop as soon as
    # its job trains, so neither can end before the other's job has started too, however slow the machine.
    for run_id in (killed, uninterrupted):
        _wait_until(lambda: read_state(state_path(folder, run_id)).state == "running", "running")
        send_command(folder, run_id, "pause")  # its job watches its command file from before "running"
    _wait_until(
        lambda: _progress_status(folder, killed) == _progress_status(folder, uninterrupted) == "paused",
        "both held in their training loops at once",
    )

    send_command(folder, killed, "resume")
    _wait_until(lambda: checkpoint_path(folder, killed).exists(), "past its first epoch")  # kill it in the second
    assert saved_epoch(folder, killed) < config.epochs  # not ended yet: the kill lands mid-run
    job_id = read_state(state_path(folder, killed)).job_id
    os.kill(fake_slurm.job(job_id)["step_pid"], signal.SIGKILL)
    send_command(folder, uninterrupted, "resume")

    _wait_until(
        lambda: all(state.state == "finished" for state in _followed(slurm, [killed, uninterrupted])), "both finished"
    )
    states = slurm.follow()

    assert fake_slurm.job(job_id)["state"] == "FAILED"
    assert states[killed].state == "finished"
    assert states[killed].attempts == 0  # it had saved a new epoch: a requeue with progress is not counted
    assert states[killed].job_id != job_id
    assert states[killed].reason is None  # "submitted again after job ... ended FAILED" while it waited
    assert states[uninterrupted].state == "finished"
    assert len(fake_slurm.calls("sbatch")) == 3
    resumed, reference = _weights(folder, killed), _weights(folder, uninterrupted)
    assert resumed.keys() == reference.keys()
    for key in reference:
        assert torch.equal(resumed[key], reference[key]), key
    assert not run_queue.claimed_path(folder, killed).exists()


def test_cancel_reaches_the_job_and_leaves_nothing_queued(tmp_path, fake_slurm):  # noqa: F811
    folder = tmp_path / "checkpoints"
    slurm = SlurmQueue(folder)
    (run_id,) = slurm.queue([TrainConfig(epochs=200, **TINY)])
    job_id = read_state(state_path(folder, run_id)).job_id

    state = slurm.cancel(run_id)

    assert (state.state, state.job_id, state.reason) == ("cancelled", job_id, "cancelled by a person")
    assert [call["args"] for call in fake_slurm.calls("scancel")] == [[job_id]]
    assert fake_slurm.job(job_id)["state"] == "CANCELLED"
    assert not run_queue.queued_path(folder, run_id).exists()
    assert not run_queue.claimed_path(folder, run_id).exists()
    assert slurm.follow()[run_id].state == "cancelled"  # following the scheduler does not bring it back


def test_a_job_that_fails_before_writing_any_record_leaves_why_and_whose_in_its_state(tmp_path, fake_slurm):  # noqa: F811
    """What the Train page tells the run's owner (app_pages/train.py, slurm_end): its only trace."""
    folder = tmp_path / "checkpoints"
    alice = "0a" * (OWNER_ID_LENGTH // 2)
    slurm = SlurmQueue(folder)
    (run_id,) = slurm.queue([TrainConfig(**{**TINY, "data": str(tmp_path / "gone.npz")})], owner=alice)
    _wait_until(lambda: not read_state(state_path(folder, run_id)).active, "ended")
    state = read_state(state_path(folder, run_id))
    assert (state.state, state.owner) == ("failed", alice), state
    assert state.reason.startswith("the data this refers to is neither a built-in dataset"), state.reason
    assert read_run(folder, run_id) is None  # no checkpoint, no progress record
    assert not run_queue.queued_path(folder, run_id).exists() and not run_queue.claimed_path(folder, run_id).exists()


def test_a_dead_job_is_submitted_again_only_by_a_queue_that_may_give_it_its_data(tmp_path, fake_slurm, monkeypatch):  # noqa: F811
    """A sweep's data file is given to its jobs by the sweep's own queue. Another process following the
    folder (the app's server, whose jobs may open only its uploads) leaves such a run whose job died to
    the sweep's queue, and after ORPHAN_AFTER_S with nobody taking it fails it saying what to do, instead
    of submitting a job that cannot open its data; a built-in dataset's run it submits again at once."""
    from vae_core import slurm_executor

    monkeypatch.setenv("FAKE_SLURM_HOLD", "1")  # pending until the node "fails" below
    folder = tmp_path / "checkpoints"
    data = tmp_path / "digits.npz"
    np.savez(data, x=np.zeros((64, 8, 8), dtype=np.uint8), y=np.arange(64) % 10)
    reference, allowed = data_for_jobs(str(data))
    on_file = TrainConfig(**{**TINY, "data": reference})
    sweeps = SlurmQueue(folder, upload_root=allowed)
    servers = SlurmQueue(folder, upload_root=tmp_path / "uploads")

    def node_fails(run_id: str) -> str:
        job_id = read_state(state_path(folder, run_id)).job_id
        _set_fake_job_state(fake_slurm, job_id, "NODE_FAIL")
        return job_id

    sweeps_run, built_in = sweeps.queue([on_file, TrainConfig(**TINY)])
    dead = {run_id: node_fails(run_id) for run_id in (sweeps_run, built_in)}
    states = servers.follow()
    assert (states[built_in].state, states[built_in].reason) == (
        "pending",
        f"submitted again after job {dead[built_in]} ended NODE_FAIL",
    )
    left = states[sweeps_run]
    assert (left.state, left.job_id) == ("pending", dead[sweeps_run])  # neither submitted nor ended
    assert (
        left.reason == f"job {dead[sweeps_run]} ended NODE_FAIL; left to a process that may give its job its data file"
    )
    again = sweeps.follow()[sweeps_run]  # the sweep's own queue may give the file
    assert (again.state, again.reason) == ("pending", f"submitted again after job {dead[sweeps_run]} ended NODE_FAIL")
    assert len(fake_slurm.calls("sbatch")) == 4  # 2 at first, then one each

    (abandoned,) = sweeps.queue([on_file])  # and the sweep's process is gone
    job_id = node_fails(abandoned)
    assert servers.follow()[abandoned].state == "pending"
    monkeypatch.setattr(slurm_executor, "ORPHAN_AFTER_S", 0.0)  # nobody took it in time
    failed = servers.follow()[abandoned]
    assert failed.state == "failed" and failed.reason.startswith(
        f"job {job_id} ended NODE_FAIL, and no process that may give its job its data file submitted it again"
    ), failed
    assert not run_queue.queued_path(folder, abandoned).exists()
    assert len(fake_slurm.calls("sbatch")) == 5


def _set_fake_job_state(fake_slurm, job_id: str, state: str) -> None:  # noqa: F811
    path = fake_slurm.directory / "jobs" / f"{job_id}.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "state": state}))


def test_a_runs_state_names_its_owner_to_its_end_and_a_forged_owner_is_refused(tmp_path, fake_slurm):  # noqa: F811
    """The owner rides in the state (the Train page tells a job's early failure to its owner alone),
    and is read back checked like every field."""
    folder = tmp_path / "checkpoints"
    alice = "0a" * (OWNER_ID_LENGTH // 2)
    (run_id,) = SlurmQueue(folder).queue([TrainConfig(epochs=200, **TINY)], owner=alice)
    assert read_state(state_path(folder, run_id)).owner == alice
    assert SlurmQueue(folder).cancel(run_id).owner == alice
    path = state_path(folder, run_id)
    path.write_text(json.dumps({**json.loads(path.read_text()), "owner": "../../someone"}))
    with pytest.raises(UnreadableFile, match="its owner"):
        read_state(path)


def test_a_job_claiming_a_run_as_it_is_cancelled_leaves_it_cancelled(tmp_path, fake_slurm, monkeypatch):  # noqa: F811
    """The race of a cancel that read "pending" while the job claimed the run: the job sees "cancelled"
    once it watches for commands and leaves, rather than writing "running" over it and training until
    SLURM's SIGKILL; the cancel sends a stop too, for a job already past that check."""
    from vae_core.run_commands import commands_path, read_commands
    from vae_core.slurm_executor import train_queued_run

    monkeypatch.setenv("FAKE_SLURM_HOLD", "1")  # the job itself never starts: this test plays it
    folder = tmp_path / "checkpoints"
    slurm = SlurmQueue(folder)
    (run_id,) = slurm.queue([TrainConfig(epochs=200, **TINY)])
    update_state(folder, run_id, state="cancelled", reason="cancelled by a person")  # as cancel() does first

    assert train_queued_run(folder, run_id) == "gone"
    state = read_state(state_path(folder, run_id))
    assert (state.state, state.reason) == ("cancelled", "cancelled by a person")
    assert not run_queue.claimed_path(folder, run_id).exists() and read_run(folder, run_id) is None

    (pending,) = slurm.queue([TrainConfig(epochs=200, **TINY)])
    slurm.cancel(pending)
    assert [name for _, name, _ in read_commands(commands_path(folder, pending))] == ["stop"]


def test_the_app_registry_sends_its_runs_to_slurm_and_lists_where_they_are(tmp_path, fake_slurm, digits):  # noqa: F811
    from vae_core.registry import JobRegistry

    registry = JobRegistry(tmp_path, executor="slurm")
    try:
        job = registry.submit(TrainConfig(epochs=200, **TINY), digits, name="on the cluster")
        ((state, run),) = registry.slurm.active_runs()
        assert (run.run_id, run.name, run.executor) == (job.run_id, "on the cluster", "slurm")
        assert state.text() in (
            f"pending in SLURM (job {state.job_id})",
            f"running on fake-node-1 (job {state.job_id})",
        )
        assert registry.queued() == []  # no local process pool takes it
        registry.cancel(job.run_id)
        assert registry.slurm.active_runs() == []
        assert [call["args"] for call in fake_slurm.calls("scancel")] == [[state.job_id]]
    finally:
        registry.close()


def test_a_cancel_landing_just_before_the_job_writes_running_leaves_it_cancelled(tmp_path, fake_slurm, monkeypatch):  # noqa: F811
    """The narrowest race: the job has claimed the run and found it not cancelled, and the cancel lands
    before its "running". Read and written apart, "running" hid the cancel; the job then trained until
    the cancel's stop and ended "stopped". Written under the state's lock, only if not cancelled, it
    leaves at once and the run stays cancelled."""
    from vae_core import slurm_executor

    monkeypatch.setenv("FAKE_SLURM_HOLD", "1")  # the job itself never starts: this test plays it
    folder = tmp_path / "checkpoints"
    slurm = SlurmQueue(folder)
    (run_id,) = slurm.queue([TrainConfig(epochs=200, **TINY)])
    write = slurm_executor.update_state

    def cancelled_just_before(folder_, run_id_, **changes):
        if changes.get("state") == "running":
            slurm.cancel(run_id)
        return write(folder_, run_id_, **changes)

    monkeypatch.setattr(slurm_executor, "update_state", cancelled_just_before)
    assert slurm_executor.train_queued_run(folder, run_id) == "gone"
    state = read_state(state_path(folder, run_id))
    assert (state.state, state.reason) == ("cancelled", "cancelled by a person")
    assert not run_queue.claimed_path(folder, run_id).exists() and read_run(folder, run_id) is None


def test_an_end_is_never_written_over(tmp_path):
    """A cancel (or the scheduler's view) arriving after the run ended keeps the end its job wrote."""
    run_id = "20261207-000000-abcdef"
    update_state(tmp_path, run_id, state="finished")
    kept = update_state(tmp_path, run_id, keep=ENDED_STATES, state="cancelled", reason="cancelled by a person")
    assert (kept.state, kept.reason) == ("finished", None)
    assert read_state(state_path(tmp_path, run_id)).state == "finished"
    assert update_state(tmp_path, run_id, state="failed").state == "failed"  # without keep, as before
