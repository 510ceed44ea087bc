"""A run process as its server holds it: one warm `python -m vae_core.worker` child and its reader.

The child is started before it is needed and kept for run after run; a thread reads what it sends
(snapshots, weights, the run's start and end), and commands go the other way over the child's stdin.
The child is started in a session of its own, so it outlives this server: see worker.py.

Nothing here imports torch: a fresh server starts its run process first, and the child also checks
each new run before it is queued (`check`: the data opened, the model against every limit), so a
fresh server starts its first run without importing torch or loading the data itself.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from . import errors
from .channel import Channel, ChannelClosed

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
WORKER_MODULE = "vae_core.worker"


def run_process_ids(folder: str | Path) -> list[int]:
    """The pids of this machine's run processes (`python -m vae_core.worker FOLDER`) of `folder`: they
    outlive their server by design, so whatever starts servers for a while (a test, a bench) ends them."""
    wanted = os.fsencode(str(folder))
    pids = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if WORKER_MODULE.encode() in argv and wanted in argv:
                pids.append(int(entry.name))
    return pids


def end_run_processes(folder: str | Path) -> None:
    """Kill the run processes of `folder` (what they trained stays as their last checkpoint left it)."""
    import signal

    for pid in run_process_ids(folder):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


class RunProcess:
    """A worker child and the thread that reads it. `on_message(process, message)` gets each message,
    and ("exited", return code) when the child is gone."""

    def __init__(self, folder: Path, on_message: Callable, upload_root: Path | None = None):
        command = [sys.executable, "-m", WORKER_MODULE, str(folder)]
        if upload_root is not None:
            command += ["--uploads", str(upload_root)]
        env = dict(
            os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))
        )
        # Its log: a file of its own, since a server's stderr may be a pipe that dies with the server.
        log = tempfile.NamedTemporaryFile(prefix="vae_studio_run_process_", suffix=".log", delete=False)
        self.log_path = Path(log.name)
        with log:
            self.process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env, start_new_session=True
            )
        self.channel = Channel(self.process.stdout, self.process.stdin)
        self.ready = threading.Event()
        self.run_id: str | None = None  # the run it was asked to train, until it ends
        self._checks: dict[int, list] = {}  # request id -> [answered Event, answer]
        self._check_ids = itertools.count(1)
        self._on_message = on_message
        threading.Thread(target=self._read, name=f"run-process-{self.process.pid}", daemon=True).start()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def send(self, *message) -> bool:
        try:
            self.channel.send(*message)
            return True
        except ChannelClosed:
            return False

    def _read(self) -> None:
        while True:
            try:
                message = self.channel.receive()
            except ChannelClosed:
                break
            if message[0] == "checked":
                self._answered(*message[1:])
                continue
            if message[0] == "ready":
                self.ready.set()
            self._on_message(self, message)
        for request_id in list(self._checks):
            self._answered(request_id, ("refused", "TrainingError", "the run process ended before it checked the run"))
        self.ready.set()  # nobody waits for a child that is gone
        self._on_message(self, ("exited", self.process.wait()))
        self.channel.close()

    def check(self, config, allowed: list[str], timeout_s: float) -> tuple[str, tuple[str, ...]]:
        """Ask the child to check a run before it is queued (worker.check_new_run): returns the run's
        device and its data's warnings, or raises the error the child found. The child answers while
        it warms up, as soon as it has loaded torch and the data."""
        request_id = next(self._check_ids)
        waiting = self._checks[request_id] = [threading.Event(), None]
        try:
            if not self.send("check", request_id, config, [str(root) for root in allowed]):
                raise errors.TrainingError("the run process ended before it checked the run")
            if not waiting[0].wait(timeout_s):
                raise errors.TrainingError(f"the run process did not check the run within {timeout_s:.0f} s")
        finally:
            self._checks.pop(request_id, None)
        answer = waiting[1]
        if answer[0] == "ok":
            return answer[1], tuple(answer[2])
        # Only an error class of vae_core.errors, by name: the answer names it, it does not choose code.
        kind = getattr(errors, answer[1], None)
        if not (isinstance(kind, type) and issubclass(kind, errors.VAEStudioError)):
            kind = errors.TrainingError
        raise kind(answer[2])

    def _answered(self, request_id: int, answer: tuple) -> None:
        waiting = self._checks.get(request_id)
        if waiting is not None:
            waiting[1] = answer
            waiting[0].set()

    def close(self) -> None:
        """Ask an idle child to exit (a child training a run finishes it first: worker.py)."""
        self.send("exit")
