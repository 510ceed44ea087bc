"""vae_core/file_lock.py: one holder at a time, across open files (and so across processes); a wait for
it is bounded and says which lock it waited for."""

import errno
import fcntl
import threading
import time

import pytest

from vae_core.errors import TrainingError
from vae_core.file_lock import FileLock


def test_a_held_lock_is_waited_for_then_taken(tmp_path):
    path = tmp_path / ".state-x.lock"
    holder = FileLock(path)
    assert holder.acquire()
    threading.Timer(0.2, holder.release).start()
    began = time.monotonic()
    with FileLock(path).held(timeout_s=5):
        waited = time.monotonic() - began
        assert FileLock(path).held_by_a_process()
    assert 0.15 < waited < 5
    assert not FileLock(path).held_by_a_process()  # released on leaving


def test_a_wait_past_its_timeout_says_which_lock(tmp_path):
    path = tmp_path / ".state-x.lock"
    holder = FileLock(path)
    assert holder.acquire()
    try:
        said = r"^\.state-x\.lock stayed locked by another process for over 0\.1 s$"
        with pytest.raises(TrainingError, match=said), FileLock(path).held(timeout_s=0.1):
            pass
    finally:
        holder.release()


def test_a_filesystem_without_locks_is_said_not_waited_on(tmp_path, monkeypatch):
    """ENOLCK (an NFS mount without its lock service) is no holder to wait for: it is said at once."""

    def no_locks(descriptor, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    said = r"^cannot lock \.run-x\.lock: No locks available \(does the folder's filesystem support locks\?\)$"
    with pytest.raises(TrainingError, match=said):
        FileLock(tmp_path / ".run-x.lock").acquire()
