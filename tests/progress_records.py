"""A valid progress record of the run store (vae_core/runs.py), for tests to write as it is or spoil."""

import os
import socket
import time

from vae_core.runs import POINT_FIELDS, PROGRESS_FORMAT


def progress_record(run_id: str = "crafted", **changes) -> dict:
    """The record of run `run_id` trained now by this process on this host, valid as it stands (two
    epochs of five steps, one step done), with `changes` made to it."""
    now = time.time()
    record = {
        "format": PROGRESS_FORMAT,
        "run_id": run_id,
        "name": "a crafted record",
        "status": "running",
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": now,
        "heartbeat": now,
        "step": 1,
        "total_steps": 10,
        "epoch": 0,
        "epochs": 2,
        "steps_per_epoch": 5,
        "samples_per_s": 1.0,
        "config": {"data": "digits", "hidden": [16], "latent_dim": 2},
        "dataset": "digits",
        "points": {key: [1.0] for key in POINT_FIELDS},
        "epoch_metrics": [],
        "message": None,
        "commands": False,
    }
    return record | changes
