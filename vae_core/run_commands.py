"""Commands for a run through the store (`<run id>.commands.json`), for a process whose server is gone.

A restarted server (or another one on the folder) pauses, resumes, stops or retunes the run by writing
the file, which the process polls while it trains (worker.py). The server that started a process talks
to it over its pipe instead; this file is for everyone else.

The file holds the last MAX_COMMANDS commands, each with a sequence number; the process applies those
numbered past the last it saw, and ignores the ones there before it began.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from .atomic_files import write_atomically
from .config import check_beta, check_lr
from .errors import ConfigError, TrainingError
from .run_ids import check_run_id
from .safe_files import UnreadableFile, read_record

COMMANDS_SUFFIX = ".commands.json"
COMMANDS_FORMAT = "vae-studio-run-commands"
COMMAND_NAMES = ("pause", "resume", "stop", "lr", "beta")
MAX_COMMANDS = 32
MAX_COMMANDS_BYTES = 16 * 1024


def commands_path(folder: str | Path, run_id: str) -> Path:
    return Path(folder) / f"{check_run_id(run_id)}{COMMANDS_SUFFIX}"


def read_commands(path: str | Path) -> list[tuple[int, str, float | None]]:
    """(sequence number, name, value) of each command in the file, checked; [] when there is none or
    it is unreadable (a command that cannot be read is not obeyed)."""
    try:
        return read_record(path, MAX_COMMANDS_BYTES, COMMANDS_FORMAT, _commands_in)
    except UnreadableFile:
        return []


def _commands_in(record: dict, name: str) -> list[tuple[int, str, float | None]]:
    entries = record.get("commands")
    commands = []
    for entry in entries[:MAX_COMMANDS] if isinstance(entries, list) else []:
        try:
            commands.append(_checked(entry))
        except (ConfigError, TypeError, ValueError, KeyError):
            continue
    return commands


def _checked(entry: dict) -> tuple[int, str, float | None]:
    seq, name, value = entry["seq"], entry["name"], entry.get("value")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 < seq < 2**53 or name not in COMMAND_NAMES:
        raise ValueError("not a command")
    if name == "lr":
        value = check_lr(value)
    elif name == "beta":
        value = check_beta(value)
    else:
        value = None
    return seq, name, value


def send_command(folder: str | Path, run_id: str, name: str, value: float | None = None) -> None:
    """Append a command for run `run_id`'s process; TrainingError for a command it would refuse."""
    if name not in COMMAND_NAMES:
        raise TrainingError(f"{name!r} is not a command: use one of {', '.join(COMMAND_NAMES)}")
    path = commands_path(folder, run_id)
    value = check_lr(value) if name == "lr" else check_beta(value) if name == "beta" else None
    # Writers take a lock, so two servers sending at once keep both commands.
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        commands = read_commands(path)
        seq = max((command[0] for command in commands), default=0) + 1
        commands = [*commands, (seq, name, value)][-MAX_COMMANDS:]
        record = {"format": COMMANDS_FORMAT, "commands": [{"seq": s, "name": n, "value": v} for s, n, v in commands]}
        write_atomically(path, json.dumps(record).encode())


class CommandFile:
    """The process's side: new commands since it began, read only when the file changed."""

    def __init__(self, folder: str | Path, run_id: str):
        self.path = commands_path(folder, run_id)
        self._version = None
        self._seen = max((command[0] for command in read_commands(self.path)), default=0)

    def new_commands(self) -> list[tuple[str, float | None]]:
        try:
            info = os.stat(self.path)
        except OSError:
            return []
        version = (info.st_ino, info.st_mtime_ns, info.st_size)
        if version == self._version:
            return []
        self._version = version
        fresh = [command for command in read_commands(self.path) if command[0] > self._seen]
        if fresh:
            self._seen = fresh[-1][0]
        return [(name, value) for _, name, value in fresh]

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        self.path.with_name(f".{self.path.name}.lock").unlink(missing_ok=True)
