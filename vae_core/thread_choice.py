"""The CPU thread count a run trains with, and in the app how it was chosen: timed on the run's
own training step (threads.py says why a rule alone cannot know), or remembered from a timing an
earlier process made on this machine (thread_memory.py)."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING

import torch

from . import thread_memory
from .threads import THREADS_ENV, app_thread_candidates, thread_override

if TYPE_CHECKING:
    from .config import TrainConfig
    from .data import ImageDataset

TIE = 0.10  # a larger count must be this much faster to win
BLOCK_STEPS, MIN_ROUNDS, MAX_ROUNDS = 3, 3, 20  # timed steps in a row at one count; rounds of a block each
HOPELESS = 3.0  # a count whose every step took this many times the other's slowest loses at once

# kind of step -> (count, each count's median seconds, when an earlier process timed it or None)
_measured: dict[Hashable, tuple[int, dict[int, float], float | None]] = {}
_measuring = threading.Lock()  # one measurement at a time: two at once would time each other


def app_run_threads(config: TrainConfig, dataset: ImageDataset, device: torch.device) -> tuple[int | None, str]:
    """The count an app run trains with on `device` (None on a GPU) and why, e.g. "measured: 1 thread
    4.7 ms, 2 threads 3.5 ms a step". A run's recorded count wins (its numbers depend on it), then
    the environment's override, then a measurement: one an earlier process made on this machine while
    idle (`refresh_timing`), or one made now. Either is kept for the rest of the process, once per
    kind of step, so a run repeated with the same seed gets the same count and the same numbers."""
    if device.type != "cpu":
        return None, ""
    if config.threads is not None:
        return config.threads, "the run's own count"
    override = thread_override()
    if override is not None:
        return override, f"set by {THREADS_ENV}"
    key = step_kind(config, dataset, device)
    if key not in _measured:  # a known count never waits for a measurement of another (a refresh)
        with _measuring:
            if key not in _measured:
                _measured[key] = _remembered_or_measured(key, config, dataset, device)
    count, medians, timed_at = _measured[key]
    if not medians:
        return count, "one core"
    timings = ", ".join(f"{n} thread{'s' * (n != 1)} {seconds * 1e3:.1f} ms" for n, seconds in medians.items())
    earlier = (
        ""
        if timed_at is None
        else time.strftime(" (timed on this machine on %d %b at %H:%M)", time.localtime(timed_at))
    )  # a sane time: thread_memory
    return count, f"measured: {timings} a step{earlier}"


def refresh_timing(
    config: TrainConfig, dataset: ImageDataset, device: torch.device, still_quiet: Callable[[], bool]
) -> bool:
    """Time the step of `config` now and remember it for the next process, if `still_quiet()` holds
    once it is timed (the app's: no run trained meanwhile); returns whether it was kept. This process
    keeps the count it chose, so that its runs stay repeatable. The app calls it once nothing has
    trained for a while, so that a timing taken at a busy moment (a browser loading the page beside
    a fresh server) does not stick."""
    if device.type != "cpu" or thread_override() is not None or len(app_thread_candidates()) == 1:
        return False
    with _measuring:
        count, medians = _measure(config, dataset, device)
        if not still_quiet():
            return False
        thread_memory.remember(repr(step_kind(config, dataset, device)), thread_memory.timed_now(count, medians))
    return True


def step_kind(config: TrainConfig, dataset: ImageDataset, device: torch.device) -> Hashable:
    """What sets the cost of a training step (not the seed, lr or β, which change no shapes)."""
    return (
        config.model,
        config.hidden,
        config.latent_dim,
        config.batch_size,
        config.precision,
        config.recon,
        config.learn_variance,
        dataset.image_shape,
        dataset.num_classes,
        str(device),
    )


def _remembered_or_measured(
    key: Hashable, config: TrainConfig, dataset: ImageDataset, device: torch.device
) -> tuple[int, dict[int, float], float | None]:
    remembered = thread_memory.recall(repr(key), app_thread_candidates())
    if remembered is not None:
        return remembered.count, remembered.seconds, remembered.at
    # Not remembered: a timing taken as a run starts (a fresh process, a browser loading the page, the
    # first touch of the data) is often disturbed; the next process gets the idle refresh's instead.
    count, medians = _measure(config, dataset, device)
    return count, medians, None


def _measure(config: TrainConfig, dataset: ImageDataset, device: torch.device) -> tuple[int, dict[int, float]]:
    """Time the run's step on a throwaway trainer of the same config: its own weights, optimiser and
    generators, so the run's are untouched."""
    from .loop import train_step
    from .trainer import Trainer

    candidates = app_thread_candidates()
    if len(candidates) == 1:
        return candidates[0], {}
    probe = Trainer(config, dataset, device=device)

    def step() -> None:
        # A short epoch (a small dataset) ended: a fresh copy, not an evaluation, whose flush would
        # raise if the losses diverged. The median drops the rebuild's cost.
        nonlocal probe
        if probe.step_in_epoch == probe.steps_per_epoch:
            probe = Trainer(config, dataset, device=device)
        train_step(probe)

    return fastest_thread_count(step, candidates)


def fastest_thread_count(
    step: Callable[[], None], candidates: Sequence[int], budget_s: float = 0.3, max_rounds: int = MAX_ROUNDS
) -> tuple[int, dict[int, float]]:
    """Time `step` on the calling thread at each count: rounds of one block of BLOCK_STEPS steps per
    count, in alternating order (so a change of load hits all alike), for about `budget_s` and at
    most `max_rounds` (>= MIN_ROUNDS) rounds, or until one count is hopeless. A block's first step,
    where the OpenMP team changes size, is not timed, nor is a first block at each count (one-time
    costs: kernel choice, allocation). Returns the fastest count and each count's median seconds a
    step. The calling thread keeps the last count set: apply the winner after."""
    seconds: dict[int, list[float]] = {count: [] for count in candidates}

    def block(count: int, timed: bool) -> None:
        torch.set_num_threads(count)
        step()
        for _ in range(BLOCK_STEPS):
            began = time.perf_counter()
            step()
            if timed:
                seconds[count].append(time.perf_counter() - began)

    for count in candidates:
        block(count, timed=False)
    deadline = time.perf_counter() + budget_s
    for round_ in range(max(MIN_ROUNDS, max_rounds)):
        if (round_ >= MIN_ROUNDS and time.perf_counter() > deadline) or (round_ and _settled(seconds)):
            break
        for count in candidates[:: 1 if round_ % 2 else -1]:
            block(count, timed=True)
    medians = {count: statistics.median(times) for count, times in seconds.items()}
    best = min(candidates)
    for count in sorted(candidates):
        if medians[count] * (1 + TIE) < medians[best]:
            best = count
    return best, medians


def _settled(seconds: dict[int, list[float]]) -> bool:
    """True when one count's fastest step is HOPELESS times slower than another's slowest (e.g. two
    threads whose cores are busy elsewhere: hundreds of milliseconds a step): no need to time on."""
    return max(min(times) for times in seconds.values()) > HOPELESS * min(max(times) for times in seconds.values())
