"""Thread counts timed on this machine, remembered between processes (thread_choice.py times them).

Why: timing a step at each count takes 0.3-0.7 s of CPU, and a fresh app server would pay it before
its first run could start, beside the browser that is loading the page. A count timed by an earlier
server on the same machine is as good, so it is used instead. Only timings taken once a server has
been idle a while are kept (`thread_choice.refresh_timing`): one taken as a process starts is often
disturbed (measured: a bench's first job timed 2 threads at 7.6 ms a step against 5.0 ms on one,
where two threads train 1.4x faster), and kept it would slow every server after it.

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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .atomic_files import write_atomically
from .user_cache import user_cache_dir

log = logging.getLogger(__name__)
FILE_NAME = "thread_counts.json"
MAX_KINDS = 64  # kinds of step kept; the oldest timings go first
MAX_FILE_BYTES = 1 << 20  # a file this large is not ours (64 kinds take about 16 kB)
LATEST_ALLOWED_S = 86_400.0  # a timing "taken" more than a day ahead of the clock is not believed
# Counts whose steps took this many times as long as each other timed a busy machine, not its cores
# (one more thread is worth at most 2x on idle cores): fine for the process that timed them (the
# slow count loses either way), not a choice for the processes after it.
BUSY_SPREAD = 3.0


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
    return " | ".join(
        [
            _cpu_model(),
            platform.machine(),
            torch.backends.cpu.get_cpu_capability(),
            f"{cores} cores",
            f"torch {torch.__version__}",
        ]
    )


def _read() -> dict[str, Timing]:
    """The file's well-formed timings if they were taken on this machine, else {}."""
    try:
        with open(timings_file(), "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
        stored = json.loads(data) if len(data) <= MAX_FILE_BYTES else None
    except (OSError, ValueError):
        return {}
    if not isinstance(stored, dict) or stored.get("machine") != machine_key():
        return {}
    kinds = stored.get("kinds")
    if not isinstance(kinds, dict):
        return {}
    parsed = {kind: _parse(entry) for kind, entry in kinds.items() if isinstance(kind, str)}
    return {kind: timing for kind, timing in parsed.items() if timing is not None}


def _parse(entry) -> Timing | None:
    """A stored timing if it is well formed: a count among its timed counts, times of a step in
    (0, 60) s, and a moment that is a real time not far in the future."""
    try:
        count, at = int(entry["count"]), float(entry["at"])
        seconds = {int(n): float(s) for n, s in entry["seconds"].items()}
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
        return None
    if count not in seconds or not all(0 < s < 60 for s in seconds.values()) or not _plausible(seconds):
        return None
    if not 0 < at < time.time() + LATEST_ALLOWED_S:  # also rejects NaN
        return None
    return Timing(count, seconds, at)


def _plausible(seconds: dict[int, float]) -> bool:
    return max(seconds.values()) <= BUSY_SPREAD * min(seconds.values())


def recall(kind: str, candidates: Sequence[int]) -> Timing | None:
    """The timing remembered for this kind of step on this machine, if it chose among `candidates`
    (the counts this process would time: the cores it may use can differ from the timing's)."""
    timing = _read().get(kind)
    return timing if timing is not None and sorted(timing.seconds) == sorted(candidates) else None


def remember(kind: str, timing: Timing) -> None:
    """Keep `timing` for this kind of step (at most MAX_KINDS kinds, the newest; malformed entries
    are dropped), unless it was taken on a busy machine (BUSY_SPREAD). Two processes writing at once
    may lose one's entry, never tear the file."""
    if not _plausible(timing.seconds):
        return
    kinds = {**_read(), kind: timing}
    newest = sorted(kinds.items(), key=lambda item: item[1].at, reverse=True)[:MAX_KINDS]
    document = {
        "machine": machine_key(),
        "kinds": {
            name: {"count": t.count, "seconds": {str(n): s for n, s in t.seconds.items()}, "at": t.at}
            for name, t in newest
        },
    }
    try:
        timings_file().parent.mkdir(parents=True, exist_ok=True)
        write_atomically(timings_file(), json.dumps(document, indent=1).encode())
    except OSError as error:  # a read-only home: the next process times again
        log.info("thread timings not kept: %s", error)


def timed_now(count: int, seconds: dict[int, float]) -> Timing:
    return Timing(count, seconds, time.time())
