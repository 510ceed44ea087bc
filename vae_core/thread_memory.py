"""Thread counts timed on this machine, remembered between processes (thread_choice.py times them).

Why: timing a step at each count takes 0.3-0.7 s of CPU, and a fresh app server would pay it before
its first run could start, beside the browser that is loading the page. A count timed by an earlier
server on the same machine is as good, so it is used instead; and a server whose CPU has been idle
for a while times the default run's step again (`thread_choice.refresh_timing`), so a timing taken
while the machine was busy does not stick.

A timing is only valid where it was taken: it is kept under a key naming the machine (the CPU model,
the vector extensions PyTorch uses on it, the cores this process may run on) and the torch version,
and a file holding another key is ignored (and replaced by the next timing). The file is a cache:
one that cannot be read, or that holds anything unexpected, is ignored, never an error; one that
cannot be written is skipped."""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from .atomic_files import write_atomically
from .user_cache import user_cache_dir

log = logging.getLogger(__name__)
FILE_NAME = "thread_counts.json"
MAX_KINDS = 64  # kinds of step kept; the oldest timings go first


@dataclass(frozen=True)
class Timing:
    count: int  # the faster count
    seconds: dict[int, float]  # each count's median seconds a step
    at: float  # when it was timed (time.time())


def timings_file() -> Path:
    return user_cache_dir() / FILE_NAME


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_key() -> str:
    """What a timing depends on besides the step itself: the same key, the same fastest count."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return " | ".join([_cpu_model(), platform.machine(), torch.backends.cpu.get_cpu_capability(),
                       f"{cores} cores", f"torch {torch.__version__}"])


def _read() -> dict:
    """The file's timings if they were taken on this machine, else {}."""
    try:
        stored = json.loads(timings_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(stored, dict) or stored.get("machine") != machine_key():
        return {}
    kinds = stored.get("kinds")
    return kinds if isinstance(kinds, dict) else {}


def _parse(entry, candidates: Sequence[int]) -> Timing | None:
    """A stored timing, if it is well formed and chose among `candidates` (the cores may differ)."""
    try:
        count, seconds, at = int(entry["count"]), entry["seconds"], float(entry["at"])
        seconds = {int(n): float(s) for n, s in seconds.items()}
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    if count not in candidates or sorted(seconds) != sorted(candidates):
        return None
    if not all(0 < s < 60 for s in seconds.values()):
        return None
    return Timing(count, seconds, at)


def recall(kind: str, candidates: Sequence[int]) -> Timing | None:
    """The timing remembered for this kind of step on this machine, or None."""
    return _parse(_read().get(kind), candidates)


def remember(kind: str, timing: Timing) -> None:
    """Keep `timing` for this kind of step (at most MAX_KINDS kinds, the newest)."""
    kinds = _read()
    kinds[kind] = {"count": timing.count, "seconds": {str(n): s for n, s in timing.seconds.items()}, "at": timing.at}
    newest = sorted(kinds.items(), key=lambda item: _timed_at(item[1]), reverse=True)[:MAX_KINDS]
    document = {"machine": machine_key(), "kinds": dict(newest)}
    try:
        timings_file().parent.mkdir(parents=True, exist_ok=True)
        write_atomically(timings_file(), json.dumps(document, indent=1).encode())
    except OSError as error:  # a read-only home: the next process times again
        log.info("thread timings not kept: %s", error)


def _timed_at(entry) -> float:
    try:
        return float(entry["at"])
    except (KeyError, TypeError, ValueError):
        return 0.0


def timed_now(count: int, seconds: dict[int, float]) -> Timing:
    return Timing(count, seconds, time.time())
