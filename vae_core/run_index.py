"""What each file of a run folder says, kept by file version so that no file is parsed twice.

The checkpoints' headers, and the progress records of ended runs (which never change again). In this
process's memory, and across processes in an SQLite index in the user's cache (one per folder), so
`vae-studio runs` on a folder of 5,000 runs, a process of its own every time, does not reopen 5,000
files. The files stay the truth: an entry is used only while its file has the same inode, modification
time and size, a missing, stale or damaged index is rebuilt from the files as they are listed, and a
file dropped into the folder appears at the next listing.

The index lives in the user's cache rather than in the checkpoints folder: it holds only what this
user's processes wrote, so nothing another user could craft is ever read back from it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from .user_cache import user_cache_dir

Version = tuple[int, int, int]  # inode, mtime in ns, size
_memory: dict[tuple[int, str], tuple[Version, dict]] = {}  # (format, path) -> (version, summary), this process's
_memory_lock = threading.Lock()
MAX_MEMORY_ENTRIES = 200_000  # the headers of the largest folders listed, ~2 KB each


class FileIndex:
    """Summaries of a folder's files by version. Use as a context manager around one listing: new
    summaries are written in one transaction when it ends."""

    def __init__(self, folder: str | Path, summary_format: int):
        """`summary_format` names the shape of the summaries kept: a new shape starts a new index."""
        real = os.path.realpath(os.fspath(folder))
        name = f"{hashlib.sha256(real.encode()).hexdigest()[:24]}-{summary_format}.sqlite"
        self.path = user_cache_dir() / "run-index" / name
        self.format = summary_format
        self._db: sqlite3.Connection | None = None
        self._pending: list[tuple] = []
        self._all: dict[str, tuple[Version, str]] | None = None

    def __enter__(self) -> FileIndex:
        return self

    def __exit__(self, *exc) -> None:
        self._write_pending()
        if self._db is not None:
            self._db.close()
            self._db = None

    def summary(self, path: str, version: Version, parse: Callable[[str], dict]) -> dict:
        """The summary of the file at `path` in this version: known, or parsed and remembered."""
        summary = self.known(path, version)
        if summary is None:
            summary = parse(path)
            self.remember(path, version, summary)
        return summary

    def known(self, path: str, version: Version) -> dict | None:
        """What this process or the index remembers of `path` in this version, without reading it."""
        with _memory_lock:
            known = _memory.get((self.format, path))
        if known is not None and known[0] == version:
            return known[1]
        summary = self._indexed(path, version)
        if summary is not None:
            self._keep_in_memory(path, version, summary)
        return summary

    def remember(self, path: str, version: Version, summary: dict) -> None:
        """Keep `summary` (JSON-able) for `path` in this version, here and, when the listing ends, in the index."""
        self._pending.append((os.path.basename(path), *version, json.dumps(summary)))
        self._keep_in_memory(path, version, summary)

    def _keep_in_memory(self, path: str, version: Version, summary: dict) -> None:
        with _memory_lock:
            if len(_memory) >= MAX_MEMORY_ENTRIES:
                _memory.clear()
            _memory[(self.format, path)] = (version, summary)

    def _connection(self) -> sqlite3.Connection | None:
        if self._db is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(self.path, timeout=5, check_same_thread=False)
                # A cache: a crash may lose its last entries, never the files' truth.
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=OFF")
                self._db.execute(
                    "CREATE TABLE IF NOT EXISTS headers (name TEXT PRIMARY KEY, inode INTEGER, "
                    "mtime_ns INTEGER, size INTEGER, summary TEXT)"
                )
            except (OSError, sqlite3.Error):
                self._discard()
        return self._db

    def _indexed(self, path: str, version: Version) -> dict | None:
        rows = self._rows()
        row = rows.get(os.path.basename(path))
        if row is None or row[0] != version:
            return None
        try:
            summary = json.loads(row[1])
        except ValueError:
            return None
        return summary if isinstance(summary, dict) else None

    def _rows(self) -> dict[str, tuple[Version, str]]:
        """The whole index, read in one query the first time a listing needs it (one query for 5,000
        files costs what a few dozen single look-ups do)."""
        if self._all is None:
            self._all = {}
            db = self._connection()
            if db is not None:
                try:
                    self._all = {
                        name: ((inode, mtime_ns, size), summary)
                        for name, inode, mtime_ns, size, summary in db.execute(
                            "SELECT name, inode, mtime_ns, size, summary FROM headers"
                        )
                    }
                except sqlite3.Error:
                    self._discard()
        return self._all

    def _write_pending(self) -> None:
        if not self._pending:
            return
        db = self._connection()
        if db is None:
            return
        try:
            with db:
                db.executemany("INSERT OR REPLACE INTO headers VALUES (?, ?, ?, ?, ?)", self._pending)
        except sqlite3.Error:
            self._discard()
        self._pending = []

    def _discard(self) -> None:
        """A damaged or unwritable index: dropped (and rebuilt by the next listing that can write it)."""
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
        self._db = None
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                os.unlink(f"{self.path}{suffix}")
