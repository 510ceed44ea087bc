"""Issue 23, item 3: a progress record with a heartbeat from the future and pid 1 (a process that
always lives) once showed its run "running · CLI" for ever, and renaming the run was refused. The
record is unreadable now: the run is its checkpoint's, and it is renamed."""

import json
import shutil
import socket
import time

from vae_core.runs import POINT_FIELDS, PROGRESS_FORMAT, read_run, relabel_run


def test_a_heartbeat_from_the_future_keeps_no_run_running_and_it_is_renamed(tmp_path, good_checkpoint):
    shutil.copy(good_checkpoint, tmp_path / "good.safetensors")
    now = time.time()
    record = {
        "format": PROGRESS_FORMAT,
        "run_id": "good",
        "name": "good",
        "status": "running",
        "pid": 1,
        "host": socket.gethostname(),
        "started": now,
        "heartbeat": now + 1e9,
        "step": 1,
        "total_steps": 10,
        "epoch": 0,
        "epochs": 2,
        "steps_per_epoch": 10,
        "samples_per_s": 1.0,
        "config": {"data": "digits"},
        "dataset": "digits",
        "points": {key: [] for key in POINT_FIELDS},
        "epoch_metrics": [],
    }
    (tmp_path / "good.progress.json").write_text(json.dumps(record))
    assert not read_run(tmp_path, "good").live
    assert relabel_run(tmp_path, "good", name="renamed").name == "renamed"
