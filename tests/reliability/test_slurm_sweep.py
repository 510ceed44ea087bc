"""`vae-studio sweep --executor slurm` on a fake SLURM (tests/fake_slurm.py): 4 runs become 4 jobs
submitted at once, the store shows them training live, one job warned of its time limit (SLURM's
USR2, as `scancel --signal` sends it) is requeued by submitit and resumes from its last epoch's
checkpoint to the weights of a run never interrupted, and the sweep ends listed with its results."""

import json
import os
import subprocess
import sys
import time

import torch

from tests.fake_slurm import fake_slurm  # noqa: F401  (the fixture)
from vae_core.checkpoint import load_checkpoint
from vae_core.config import TrainConfig
from vae_core.errors import CheckpointError
from vae_core.executor_state import read_state, state_path, states_in
from vae_core.runs import checkpoint_path, list_runs, progress_path, read_progress
from vae_core.slurm_executor import SlurmQueue
from vae_core.sweep import list_sweeps

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY_FLAGS = ["--data", "digits", "--hidden", "16", "--latent-dim", "2", "--batch-size", "16", "--threads", "1"]


def _progress(folder) -> dict:
    found = {}
    for run_id in states_in(folder):
        try:
            found[run_id] = read_progress(progress_path(checkpoint_path(folder, run_id)))
        except CheckpointError:
            continue
    return found


def test_a_sweep_of_four_runs_becomes_four_jobs_followed_live_one_requeued_exactly(tmp_path, fake_slurm):  # noqa: F811
    folder = tmp_path / "checkpoints"
    command = [sys.executable, "-m", "vae_core", "sweep", *TINY_FLAGS, "--device", "cpu", "--epochs", "2", "8"]
    command += ["--seed", "1", "2", "--out-dir", str(folder), "--executor", "slurm"]
    sweep = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while len(states_in(folder)) < 4 or any(s.job_id is None for s in states_in(folder).values()):
            assert time.monotonic() < deadline and sweep.poll() is None
            time.sleep(0.02)
        submitted = fake_slurm.calls("sbatch")
        assert len(submitted) == 4  # all four at once: none had ended, as its state says
        assert all(state.state in ("pending", "running") for state in states_in(folder).values())

        # Follow them live: a reader of the store sees a run's progress grow.
        seen: dict[str, set[int]] = {}
        warned = None
        while sweep.poll() is None:
            progress = _progress(folder)
            for run_id, record in progress.items():
                seen.setdefault(run_id, set()).add(record.step)
            if warned is None:  # the first long run past its first epoch gets a time-limit warning
                for run_id, state in states_in(folder).items():
                    long_run = run_id in progress and progress[run_id].config["epochs"] == 8
                    if long_run and state.state == "running" and checkpoint_path(folder, run_id).exists():
                        warned = (run_id, state.job_id)
                        subprocess.check_call(["scancel", state.job_id, "--signal", "USR2"])
                        break
            assert time.monotonic() < deadline + 120
            time.sleep(0.05)
        out, err = sweep.communicate()
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert sweep.returncode == 0, err[-2000:]

    assert any(len(steps) >= 3 for steps in seen.values())  # progress records changed while the runs trained
    results = json.loads(out.strip().splitlines()[-1])
    assert [result["sweep"] for result in results] == [
        {"epochs": epochs, "seed": seed} for epochs in ("2", "8") for seed in ("1", "2")
    ]
    assert [result["status"] for result in results] == ["finished"] * 4
    assert [result["epochs"] for result in results] == [2, 2, 8, 8]
    assert all(result["test_neg_elbo"] is not None for result in results)
    listed = {record.run_id: record for record in list_runs(folder)}
    assert all(listed[result["run_id"]].status == "finished" for result in results)
    (sweep_record,) = list_sweeps(folder)
    assert [run.run_id for run in sweep_record.runs] == [result["run_id"] for result in results]

    # The warned job: requeued by submitit (scontrol requeue), the same job id, its run resumed.
    run_id, job_id = warned
    assert fake_slurm.job(job_id)["runs"] == 2
    assert [call["args"] for call in fake_slurm.calls("scontrol")] == [["requeue", job_id]]
    assert len(fake_slurm.calls("sbatch")) == 4
    state = read_state(state_path(folder, run_id))
    assert (state.state, state.job_id) == ("finished", job_id)

    # Its weights are those of the same run never interrupted.
    seed = next(result["sweep"]["seed"] for result in results if result["run_id"] == run_id)
    reference_folder = tmp_path / "reference"
    reference = SlurmQueue(reference_folder)
    config = TrainConfig(data="digits", hidden=(16,), latent_dim=2, batch_size=16, threads=1, device="cpu")
    (reference_id,) = reference.queue([config.replace(epochs=8, seed=int(seed))])
    assert reference.wait([reference_id], timeout=90)[reference_id].state == "finished"
    resumed = load_checkpoint(checkpoint_path(folder, run_id)).state.model_state
    uninterrupted = load_checkpoint(checkpoint_path(reference_folder, reference_id)).state.model_state
    for key in uninterrupted:
        assert torch.equal(resumed[key], uninterrupted[key]), key


def test_a_sweep_on_slurm_of_a_data_file_trains_on_that_file(tmp_path, fake_slurm, monkeypatch, capsys):  # noqa: F811
    """The jobs open no path they were not given (data.resolve_data_reference), and start in a directory
    of their own: the sweep gives them its data file, by its real path, as the experiment command does."""
    import numpy as np

    from vae_core.cli import main

    pixels = np.random.default_rng(0).integers(0, 256, size=(40, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "own.npz", x=pixels)
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "checkpoints"
    argv = ["sweep", "--data", "own.npz", "--hidden", "16", "--latent-dim", "2", "--batch-size", "8"]
    argv += ["--threads", "1", "--device", "cpu", "--epochs", "1", "--seed", "1", "2"]
    assert main([*argv, "--out-dir", str(folder), "--executor", "slurm"]) == 0
    results = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    assert [(result["status"], result.get("error")) for result in results] == [("finished", None)] * 2
    assert len(fake_slurm.calls("sbatch")) == 2
    for result in results:
        checkpoint = load_checkpoint(result["checkpoint"])
        assert (checkpoint.config.data, checkpoint.state.epoch) == (str(tmp_path.resolve() / "own.npz"), 1)


def test_a_sweep_on_slurm_over_two_data_files_is_refused_in_one_line(tmp_path, fake_slurm, capsys):  # noqa: F811
    from vae_core.cli import main

    argv = ["sweep", "--data", str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "--executor", "slurm"]
    assert main([*argv, "--out-dir", str(tmp_path / "checkpoints")]) != 0
    assert capsys.readouterr().err.strip() == (
        "error: a sweep on SLURM reads one data file or folder: run one sweep per file"
    )
    assert fake_slurm.calls("sbatch") == []
