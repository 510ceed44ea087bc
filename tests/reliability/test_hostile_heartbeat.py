"""Issue 23, item 3: a progress record with a heartbeat from the future and pid 1 (a process that
always lives) once showed its run "running · CLI" for ever, and renaming the run was refused. The
record is unreadable now: the run is its checkpoint's, and it is renamed."""

import json
import shutil
import time

from progress_records import progress_record

from vae_core.runs import read_run, relabel_run


def test_a_heartbeat_from_the_future_keeps_no_run_running_and_it_is_renamed(tmp_path, good_checkpoint):
    shutil.copy(good_checkpoint, tmp_path / "good.safetensors")
    record = progress_record("good", name="good", pid=1, heartbeat=time.time() + 1e9)
    (tmp_path / "good.progress.json").write_text(json.dumps(record))
    assert not read_run(tmp_path, "good").live
    assert relabel_run(tmp_path, "good", name="renamed").name == "renamed"
