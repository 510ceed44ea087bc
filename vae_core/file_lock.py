"""An flock on a file of the run store: held by one process at a time, across every server, run process
and SLURM job on the folder (on a cluster's shared filesystem too: Linux's NFS client carries flocks to
the server). The kernel releases it when its process dies, so a kill never leaves a stale lock."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import TrainingError

POLL_S = 0.01


class FileLock:
    """An flock on file `path`: taken at once or not (`acquire`), or waited for (`held`)."""

    def __init__(self, path: Path):
        self.path = path
        self._descriptor: int | None = None

    def acquire(self) -> bool:
        """Take the lock if no process holds it; True when this one now does."""
        if self._descriptor is not None:
            return True
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(descriptor)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False  # another process holds it
            # Said, not taken for "held": on a filesystem without locks that would wait for ever.
            raise TrainingError(
                f"cannot lock {self.path.name}: {error.strerror} (does the folder's filesystem support locks?)"
            ) from error
        self._descriptor = descriptor
        return True

    def release(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)  # closing the descriptor drops the flock
            self._descriptor = None

    def held_by_a_process(self) -> bool:
        """Whether some process (this one included) holds the lock now."""
        if self._descriptor is not None:
            return True
        if self.acquire():
            self.release()
            return False
        return True

    @contextlib.contextmanager
    def held(self, timeout_s: float) -> Iterator[None]:
        """Hold the lock for a short read-and-write, waiting up to timeout_s for another process to
        finish its own; TrainingError past that (a holder's writes take milliseconds, so a wait that
        long means a stuck filesystem, which is said rather than waited on for ever)."""
        deadline = time.monotonic() + timeout_s
        while not self.acquire():
            if time.monotonic() > deadline:
                raise TrainingError(f"{self.path.name} stayed locked by another process for over {timeout_s:g} s")
            time.sleep(POLL_S)
        try:
            yield
        finally:
            self.release()
