"""Nothing is lost when the server dies: SIGKILL the server (a registry host, as the app keeps one)
while a run trains and two more wait, start another on the folder, and all three finish, with every
epoch of their history and, for the run that was training, the final weights of a run that was never
interrupted. Twice: once with the run's process surviving its server, once killed with it."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vae_core.checkpoint import load_checkpoint
from vae_core.config import TrainConfig
from vae_core.data import load_dataset
from vae_core.jobs import TrainingJob
from vae_core.run_process import end_run_processes, run_process_ids

HOST = Path(__file__).with_name("registry_host.py")
ROOT = Path(__file__).resolve().parents[2]
SMALL = dict(data="digits", hidden=(32,), latent_dim=2, batch_size=32, device="cpu", threads=1)
RUNS = [dict(SMALL, epochs=14, seed=0), dict(SMALL, epochs=2, seed=1), dict(SMALL, epochs=2, seed=2)]


def _host(folder: Path, configs: list) -> tuple[subprocess.Popen, list[str]]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = subprocess.Popen(
        [sys.executable, str(HOST), str(folder), json.dumps(configs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
        start_new_session=True,
    )
    run_ids = []
    for line in process.stdout:
        if line.strip() == "submitted":
            return process, run_ids
        run_ids.append(line.strip())
    raise AssertionError(f"the host ended before submitting (exit {process.wait()})")


def _progress(folder: Path, run_id: str) -> dict | None:
    try:
        return json.loads((folder / f"{run_id}.progress.json").read_bytes())
    except (OSError, ValueError):
        return None


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"not reached within {timeout} s: {what}")


def _uninterrupted(values: dict) -> TrainingJob:
    config = TrainConfig(**values)
    job = TrainingJob(config, load_dataset(config.data, seed=config.seed)).start()
    assert job.wait(120)
    return job


@pytest.fixture(scope="module")
def reference():
    """The first run trained without interruption, on a thread of this process."""
    return _uninterrupted(RUNS[0])


@pytest.mark.parametrize("kill_the_run_process_too", [False, True], ids=["server-only", "server-and-run"])
def test_a_killed_server_loses_no_run_and_no_epoch(tmp_path, reference, kill_the_run_process_too):
    first, restarted = None, None
    try:
        first, run_ids = _host(tmp_path, RUNS)
        assert len(run_ids) == 3
        _wait_for(lambda: (_progress(tmp_path, run_ids[0]) or {}).get("epoch", 0) >= 3, 120, "epoch 3 of the first run")
        assert len(list(tmp_path.glob("*.queued.json"))) == 2  # the two others wait, on disk
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        if kill_the_run_process_too:
            end_run_processes(tmp_path)
            _wait_for(lambda: not run_process_ids(tmp_path), 10, "the run process gone")
            interrupted_at = load_checkpoint(tmp_path / f"{run_ids[0]}.safetensors").state.epoch
            assert 3 <= interrupted_at < RUNS[0]["epochs"]
        else:
            # The run process outlives its server and goes on training.
            epoch = _progress(tmp_path, run_ids[0])["epoch"]
            _wait_for(lambda: _progress(tmp_path, run_ids[0])["epoch"] > epoch, 60, "the orphaned run going on")
        restarted, _ = _host(tmp_path, [])
        _wait_for(
            lambda: all((_progress(tmp_path, run_id) or {}).get("status") == "finished" for run_id in run_ids),
            240,
            "all three runs finished",
        )
        _wait_for(
            lambda: not list(tmp_path.glob("*.queued.json")) and not list(tmp_path.glob("*.claimed.json")),
            30,
            "the queue empty",
        )
        for run_id, values in zip(run_ids, RUNS):
            saved = load_checkpoint(tmp_path / f"{run_id}.safetensors")
            assert saved.status == "finished" and saved.state.epoch == values["epochs"]
            assert [metrics["epoch"] for metrics in saved.state.history.epochs] == list(range(1, values["epochs"] + 1))
            assert len(saved.state.history.frames) == values["epochs"]
        saved = load_checkpoint(tmp_path / f"{run_ids[0]}.safetensors")
        _, expected = reference.latest_weights()
        assert all(torch.equal(saved.state.model_state[key], value) for key, value in expected.items())
        expected_elbo = [m["test_neg_elbo"] for m in reference.snapshot().epoch_metrics]
        assert [m["test_neg_elbo"] for m in saved.state.history.epochs] == expected_elbo
    finally:
        for host in (first, restarted):
            if host is not None and host.poll() is None:
                os.killpg(host.pid, signal.SIGKILL)
                host.wait()
        end_run_processes(tmp_path)
