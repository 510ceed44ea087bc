"""`LatestWorker`: hands the newest of a stream of values to a thread of its own, skipping stale ones.

The thread handles one value at a time and skips any superseded before its turn. The producer (a
training thread) never waits for the slow part (a write's fsyncs, a pipe to a busy reader), and a
backlog never builds up."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class LatestWorker:
    def __init__(self, handle: Callable[[Any], None], name: str):
        self._handle = handle
        self._changed = threading.Condition()
        self._pending: Any = None
        self._busy = False
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, value: Any) -> None:
        """Replace whatever waits with `value` (never None)."""
        with self._changed:
            self._pending = value
            self._changed.notify_all()

    def flush(self) -> None:
        """Wait until the last value submitted has been handled."""
        with self._changed:
            self._changed.wait_for(lambda: self._pending is None and not self._busy)

    def close(self) -> None:
        """Handle what waits, then stop."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._pending is not None or self._closing)
                value, self._pending = self._pending, None
                if value is None:  # closing, and nothing left
                    return
                self._busy = True
            try:
                self._handle(value)
            finally:
                with self._changed:
                    self._busy = False
                    self._changed.notify_all()
