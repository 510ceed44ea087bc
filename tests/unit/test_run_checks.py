"""A new run checked by its run process before it is queued (registry.submit given no dataset;
worker.check_new_run): the Train page's Start, so a fresh server starts its first run without torch.
Refusals say what is wrong, as the server's own check does, and leave nothing queued."""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from vae_core import run_queue
from vae_core.config import TrainConfig
from vae_core.errors import ConfigError, DataError, TrainingError
from vae_core.registry import JobRegistry
from vae_core.run_process import end_run_processes

ROOT = Path(__file__).resolve().parents[2]
SMALL = dict(data="digits", hidden=(32,), latent_dim=2, batch_size=32, device="cpu", threads=1, epochs=1)


@pytest.fixture
def registry(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_STUDIO_MAX_PARAMETERS", "50000")  # read by the run process, which inherits it
    (tmp_path / "uploads").mkdir()
    made = JobRegistry(tmp_path / "runs", executor="process", upload_root=tmp_path / "uploads")
    yield made
    made.stop_all(timeout=30)
    made.close()
    end_run_processes(tmp_path / "runs")


def test_a_refused_run_says_why_and_nothing_is_queued(registry, tmp_path):
    uploads = tmp_path / "uploads"  # the server's uploads, which its run process may open
    np.save(uploads / "unlabelled.npy", np.random.default_rng(0).random((40, 8, 8)).astype(np.float32))
    refused = [
        # 64*512+512 + 512*512+512 + 2*(512*2+2) + 2*512+512 + 512*512+512 + 512*64+64 weights and biases
        (dict(hidden=(512, 512)), ConfigError, "this mlp model has 595,012 parameters, more than the limit of 50,000"),
        (dict(model="cvae", data=str(uploads / "unlabelled.npy")), TrainingError, "needs a labelled dataset"),
        (dict(data=str(tmp_path / "not_uploaded.npy")), DataError, "nor a file or folder supplied here"),
    ]
    for changes, kind, words in refused:
        with pytest.raises(kind, match=words):
            registry.submit(TrainConfig(**{**SMALL, **changes}), None, data_roots=[uploads])
    assert registry.jobs() == [] and run_queue.waiting(registry.checkpoint_dir) == []
    # The same process then checks and trains a run it accepts, on data from the same folder.
    job = registry.submit(TrainConfig(**{**SMALL, "data": str(uploads / "unlabelled.npy")}), None, data_roots=[uploads])
    assert (job.device, job.data_warnings) == ("cpu", ())
    # Trained by a process whose warm-up could not time the default run (over these limits): it lives on.
    assert job.wait(120) and job.status == "finished", (job.snapshot().status, job.snapshot().message)


SERVER_SIDE = """
import json, sys, time
from vae_core.config import TrainConfig
from vae_core.registry import JobRegistry

registry = JobRegistry(sys.argv[1], executor="process")
registry.warm_up()
config = TrainConfig(data="digits", hidden=(32,), latent_dim=2, batch_size=1, device="cpu", threads=1, epochs=20)
job = registry.submit(config, None)
deadline = time.monotonic() + 120
while job.snapshot().epoch < 1 and time.monotonic() < deadline:
    time.sleep(0.02)
seen = {"device": job.device, "epoch": job.snapshot().epoch, "torch": "torch" in sys.modules}
job.stop()
job.wait(60)
epoch, weights = job.latest_weights()  # a page asking for them: tensors now
seen["weights"] = [epoch > 0, type(next(iter(weights.values()))).__module__]
registry.close()
print(json.dumps(seen))
"""


def test_a_server_starts_and_follows_a_run_without_importing_torch(tmp_path):
    """Run in a fresh interpreter, since this one has long imported torch: the whole server side of a
    run, from its check to its first epoch's weights, needs none."""
    try:
        result = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(SERVER_SIDE), str(tmp_path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        end_run_processes(tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    seen = __import__("json").loads(result.stdout.strip().splitlines()[-1])
    assert seen == {"device": "cpu", "epoch": 1, "torch": False, "weights": [True, "torch"]}


def test_a_server_shutting_down_starts_no_new_run(tmp_path):
    registry = JobRegistry(tmp_path, executor="process")
    registry.close()
    with pytest.raises(TrainingError, match="this server is shutting down: it starts no new run"):
        registry.submit(TrainConfig(**SMALL), None)
    assert run_queue.waiting(tmp_path) == []
