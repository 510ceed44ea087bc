"""How many CPU threads a training step uses.

- A run that names its count (`TrainConfig.threads`: a resumed run, `--threads`, the Train form)
  uses it: the count changes the float sums a step computes, so it makes a run repeatable.
- `VAE_STUDIO_TORCH_THREADS=<n>` overrides the choices below, e.g. 1 on a machine shared with other work.
- The CLI keeps PyTorch's default, a thread per core: a script that has the machine to itself.
- The app measures (`app_thread_candidates`, `fastest_thread_count`): one thread per core, or one
  core left to the rest of the process, whichever runs the run's own step faster on this machine
  now. The Streamlit server and the pages run beside the training thread, and PyTorch's OpenMP
  workers spin-wait for each other, so a step whose threads share their cores with other work can
  get many times slower (on a 2-core machine shared with other processes, one Fashion-MNIST epoch:
  1 thread 3.1 s, 2 threads 88 s), while on idle cores the second thread makes a step up to 1.5
  times faster. Which wins depends on the CPU, the model and the load, so it is timed, not assumed;
  on a near tie the smaller count wins, as it suffers less when the UI wants a core.
- GPUs are left alone: their work does not run on these threads.

`torch.set_num_threads` is partly per thread (the calling thread's OpenMP setting): a count is
applied on the thread that trains (`use_threads`).

Idle thread teams: a thread that has run a parallel operation keeps its OpenMP workers until it
ends; with more workers than cores libgomp cuts every team's spin-wait short, and a training step's
workers sleep between its many small operations (an epoch twice as long on an idle 2-core machine).
So a job trains on a thread of its own, and the app's other tensor work runs on short-lived threads.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Callable, Sequence

import torch

THREADS_ENV = "VAE_STUDIO_TORCH_THREADS"
TIE = 0.10  # a larger count must be this much faster to win
UNTIMED_CALLS, MIN_ROUNDS, MAX_ROUNDS = 2, 3, 40  # calls per count before timing; timed rounds
HOPELESS = 3.0  # a count whose every step took this many times the other's slowest loses at once


def thread_override() -> int | None:
    """The count `VAE_STUDIO_TORCH_THREADS` fixes, if it holds a whole number."""
    value = os.environ.get(THREADS_ENV, "").strip()
    try:
        return max(1, int(value)) if value else None
    except ValueError:
        return None  # a malformed override must not stop training; the rule applies


def app_thread_candidates(cores: int | None = None) -> tuple[int, ...]:
    """The counts the app chooses from: one per core, and one core left to the UI (at least one)."""
    cores = cores or os.cpu_count() or 1
    return tuple(sorted({max(1, cores - 1), cores}))


def fastest_thread_count(step: Callable[[], None], candidates: Sequence[int], budget_s: float = 0.3,
                         max_rounds: int = MAX_ROUNDS) -> tuple[int, dict[int, float]]:
    """Time `step` on the calling thread at each count, in alternating order (so a change of load
    hits all alike), after UNTIMED_CALLS calls at each, for about `budget_s` and at most
    `max_rounds` (>= MIN_ROUNDS) rounds, or until one count is hopeless; returns
    the fastest count and each count's median seconds a step. The calling thread keeps the last
    count set: apply the winner after."""
    seconds: dict[int, list[float]] = {count: [] for count in candidates}
    for _ in range(UNTIMED_CALLS):  # the first calls pay one-time costs (kernel choice, allocation, caches)
        for count in candidates:
            torch.set_num_threads(count)
            step()
    deadline = time.perf_counter() + budget_s
    for round_ in range(max(MIN_ROUNDS, max_rounds)):
        if round_ >= MIN_ROUNDS and time.perf_counter() > deadline or round_ and _settled(seconds):
            break
        for count in candidates[::1 if round_ % 2 else -1]:
            torch.set_num_threads(count)
            began = time.perf_counter()
            step()
            seconds[count].append(time.perf_counter() - began)
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


def use_threads(count: int | None, device: torch.device) -> str:
    """Apply `count` (None: keep PyTorch's setting) on the calling thread for work on `device`;
    returns what the UI shows, e.g. "1 CPU thread" (empty on a GPU)."""
    if device.type != "cpu":
        return ""
    if count is not None and torch.get_num_threads() != count:
        torch.set_num_threads(count)
    count = torch.get_num_threads()
    return f"{count} CPU thread{'s' * (count != 1)}"
