"""How many CPU threads a training step uses: the run's own count, an override, or the load's choice.

A run's count (`TrainConfig.threads`: `--threads`, the form, a resume; recorded with every run, whose
float sums depend on it) wins, then `VAE_STUDIO_TORCH_THREADS`, then `run_threads`. OpenMP threads
spin-wait, so threads on busy cores crawl (a busy 2-core machine: 2 epochs in 13.1 s on 2 threads, 6.3 s
on 1), while on free ones more are up to 1.5x faster, or not, by CPU and model. So with one core free a
step takes one thread; with more, 1 and one per free core are timed on the run's step and the timing is
remembered with all it depends on (step, CPU, torch, load). Apply the count with own_threads.use_threads."""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import platform
import re
import statistics
import time
from collections.abc import Callable, Sequence

import torch

from .atomic_files import write_atomically
from .config import TrainConfig
from .data import ImageDataset
from .loop import train_step
from .safe_files import UnreadableFile, read_json_file
from .trainer import Trainer
from .user_cache import user_cache_dir

THREADS_ENV, FILE_NAME = "VAE_STUDIO_TORCH_THREADS", "thread_timings.json"
LOAD_SAMPLE_S, SAME_LOAD = 0.1, 0.25  # the load is read this long; a timing holds within this many cores of it
TIE = 0.10  # more threads must be this much faster to win: fewer suffer less from a burst of load
BLOCK_STEPS, MIN_ROUNDS, MAX_ROUNDS, BUDGET_S = 3, 3, 20, 0.3  # timed steps in a row; rounds; seconds
MAX_FILE_BYTES, MAX_KINDS = 1 << 16, 64  # 64 kinds of step take about 12 kB
# Part of every timing's kind: raised when how a step is timed changes, so older timings are taken again.
# 2: a run process's job threads no longer time beside an idle OpenMP team (worker.training_job), which
# had made every count above 1 look slow there.
TIMING_METHOD = 2
log = logging.getLogger(__name__)


def thread_override() -> int | None:
    """The count `VAE_STUDIO_TORCH_THREADS` fixes, if it holds a whole number (a malformed one is none)."""
    value = os.environ.get(THREADS_ENV, "").strip()
    return max(1, int(value)) if re.fullmatch(r"-?[0-9]{1,4}", value) else None


def run_threads(config: TrainConfig, dataset: ImageDataset, device: torch.device) -> tuple[int | None, str]:
    """The count a run trains with on `device` (None on a GPU) and why, e.g. "measured: 1 thread
    4.7 ms, 2 threads 3.5 ms a step; 0.1 of 2 cores busy elsewhere"."""
    if device.type != "cpu":
        return None, ""
    if config.threads is not None:
        return config.threads, "the run's own count"
    if thread_override() is not None:
        return thread_override(), f"set by {THREADS_ENV}"
    cores = _cores()
    busy = min(float(cores), busy_elsewhere()) if cores > 1 else 0.0  # /proc/stat counts in 10 ms ticks
    free, load = max(1, min(cores, int(cores - busy + 0.5))), f"{busy:.1f} of {cores} cores busy elsewhere"
    if free == 1:
        return 1, load
    kind = _kind(config, dataset, free)
    timings, how = remembered(), "remembered"
    timing = timings.pop(kind, None)
    if timing is None or abs(timing[0] - busy) > SAME_LOAD:
        timing, how = [busy, *time_counts(_probe_step(config, dataset, device), (1, free)).values()], "measured"
        try:  # written whole or not at all, the newest last
            user_cache_dir().mkdir(parents=True, exist_ok=True)
            kept = dict(list({**timings, kind: timing}.items())[-MAX_KINDS:])
            write_atomically(user_cache_dir() / FILE_NAME, json.dumps(kept, indent=1).encode())
        except OSError as error:  # a read-only home: the next run times again
            log.info("thread timings not kept: %s", error)
    _, one, all_free = timing
    times = f"1 thread {one * 1e3:.1f} ms, {free} threads {all_free * 1e3:.1f} ms a step"
    return (free if all_free * (1 + TIE) < one else 1), f"{how}: {times}; {load}"


def timed_before(config: TrainConfig, dataset: ImageDataset, device: torch.device) -> bool:
    """Whether this kind of step has a timing remembered with every core free (at any load): then a
    warm-up need not read the load (LOAD_SAMPLE_S) only to find it. The run itself still reads it."""
    cores = _cores()
    return device.type != "cpu" or cores == 1 or _kind(config, dataset, cores) in remembered()


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _kind(config: TrainConfig, dataset: ImageDataset, free: int) -> str:
    """What a timing holds for: its kind of step (not the seed, lr or β), on its machine, at its free cores."""
    shapes = (config.model, config.hidden, config.latent_dim, config.batch_size, config.precision, config.recon)
    return repr(
        (*shapes, config.learn_variance, dataset.image_shape, dataset.num_classes, machine_key(), free, TIMING_METHOD)
    )


def busy_elsewhere(window_s: float = LOAD_SAMPLE_S) -> float:
    """Cores other programs keep busy now: the busy time of this process's CPUs over `window_s`
    (/proc/stat) less this process's own; where that cannot be read, the 1-minute load average."""
    try:
        before, own, began = _busy_seconds(), time.process_time(), time.perf_counter()
        time.sleep(window_s)
        return max(0.0, (_busy_seconds() - before - (time.process_time() - own)) / (time.perf_counter() - began))
    except (OSError, ValueError, AttributeError):
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def _busy_seconds() -> float:  # a CPU's line in /proc/stat: cpuN user nice system idle iowait irq softirq steal
    cpus = {f"cpu{n}" for n in os.sched_getaffinity(0)}  # niced work counts: it still stalls a thread team
    with open("/proc/stat", encoding="ascii") as stat:
        rows = [row for row in map(str.split, stat) if row[0] in cpus]
    return sum(int(n) for row in rows for n in (*row[1:4], *row[6:9])) / os.sysconf("SC_CLK_TCK")


def machine_key() -> str:
    """The CPU model, the vector extensions PyTorch uses on it, and torch's version."""
    model = platform.processor()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
        model = next((line.partition(":")[2].strip() for line in info if line.startswith("model name")), model)
    return f"{model} | {torch.backends.cpu.get_cpu_capability()} | torch {torch.__version__}"


def remembered() -> dict[str, list[float]]:
    """The cache file's timings: kind -> [cores busy elsewhere, seconds a step on 1 thread, on 1 per free
    core]. A file that is no JSON (a FIFO, too large, too deep) is ignored, one line logged; so is an entry
    of another form (a load in [0, 1024] cores, times in (0, 60) s)."""
    try:
        stored = read_json_file(user_cache_dir() / FILE_NAME, MAX_FILE_BYTES)
    except UnreadableFile as error:
        if os.path.lexists(user_cache_dir() / FILE_NAME):
            log.warning("thread timings ignored: %s", error)
        return {}
    return {
        kind: entry
        for kind, entry in (stored.items() if isinstance(stored, dict) else ())
        if isinstance(entry, list) and len(entry) == 3 and all(type(x) is float for x in entry)
        if 0 <= entry[0] <= 1024 and 0 < entry[1] < 60 and 0 < entry[2] < 60
    }


def _probe_step(config: TrainConfig, dataset: ImageDataset, device: torch.device) -> Callable[[], None]:
    """A step of the run's config on throwaway trainers (their own weights, optimiser and generators:
    the run's are untouched), a new one when a short epoch ends (the median drops its cost)."""
    trainers = (Trainer(config, dataset, device=device) for _ in itertools.count())
    probes = (trainer for trainer in trainers for _ in range(trainer.steps_per_epoch))
    return lambda: train_step(next(probes))


def time_counts(step: Callable[[], None], counts: Sequence[int], budget_s: float = BUDGET_S) -> dict[int, float]:
    """Each count's median seconds of `step` on the calling thread (which keeps the last count set):
    rounds of a block of steps at each count in alternating order, so a change of load hits all alike;
    untimed: a block's first step (the team resized), the first round (one-time costs). MIN_ROUNDS timed
    rounds, then more until `budget_s` is spent, at most MAX_ROUNDS."""
    seconds: dict[int, list[float]] = {count: [] for count in counts}
    for round_ in range(MAX_ROUNDS + 1):
        for count in counts[:: 1 if round_ % 2 else -1]:
            torch.set_num_threads(count)
            for block_step in range(BLOCK_STEPS + 1):
                began = time.perf_counter()
                step()
                if round_ and block_step:
                    seconds[count].append(time.perf_counter() - began)
        if round_ == 0:
            deadline = time.perf_counter() + budget_s
        elif round_ >= MIN_ROUNDS and time.perf_counter() > deadline:
            break
    return {count: statistics.median(times) for count, times in seconds.items()}
