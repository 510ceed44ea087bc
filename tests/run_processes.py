"""The run processes a test started: they outlive their server by design (vae_core/worker.py), so a
test that starts a server on a folder ends the folder's run processes when it is done."""

import contextlib
import os
import signal
from pathlib import Path


def run_process_ids(checkpoints: Path) -> list[int]:
    """The pids of the run processes (`python -m vae_core.worker FOLDER`) of the folder `checkpoints`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"vae_core.worker" in argv and str(checkpoints).encode() in argv:
                pids.append(int(entry.name))
    return pids


def end_run_processes(checkpoints: Path) -> None:
    """Kill the run processes of `checkpoints`."""
    for pid in run_process_ids(checkpoints):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
