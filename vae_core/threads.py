"""How many CPU threads PyTorch uses for a training step: measured while training, not guessed.

Why measure: on the 2-core machine this app targets, the fastest count depends on the load, and by
a lot. One epoch of the default MLP on Fashion-MNIST (batch 128, a bare training loop), seconds:

    machine                            1 thread    2 threads (PyTorch's default)
    idle                                 4.6          3.4
    another process busy on one core     4.6         10.6

Two threads pay when both cores are free; when something else runs (another process, or in the
app the UI thread drawing charts and computing projections next to the training thread), PyTorch's
OpenMP workers spin-wait on a core that the thread they wait for needs, and a step takes 2 to 10
times longer. No fixed count is right, so `ThreadTuner` times steps with each candidate count,
trains with the fastest, and measures again when the step time drifts or a while has passed.

Why this does not cost reproducibility: the thread count would normally change the low bits of
results (MKL splits small matrix products differently, e.g. the gradient of `fc_mu`), and then a
run that switched counts could not be repeated. `vae_core/__init__.py` puts MKL into conditional
numerical reproducibility, strict mode (`MKL_CBWR=AUTO,STRICT`, measured free of cost here),
which makes its results independent of the thread count; the other kernels these models use
(element-wise ops, per-row reductions, oneDNN's convolutions, fused Adam) already are. A test
trains with 1 and with 2 threads and compares the weights bit for bit. If MKL was initialised
before vae_core was imported (so the setting came too late), `results_depend_on_thread_count()`
sees it and the tuner is not used: training stays on one thread, as reproducible as before.

`VAE_STUDIO_TORCH_THREADS=<n>` fixes the count instead. GPUs are left alone: their work does not
run on these threads.

Note that `torch.set_num_threads` is partly per thread: it sets a process-wide default that threads
pick up when they first run a parallel operation, plus the calling thread's own OpenMP setting, so
a policy is applied on the thread that trains, before each step (`ThreadPolicy.apply`).
"""

from __future__ import annotations

import functools
import os
import statistics
import time
from collections import deque
from collections.abc import Callable

import torch

THREADS_ENV = "VAE_STUDIO_TORCH_THREADS"
FALLBACK_THREADS = 1  # when results would depend on the count: one thread, as reproducible as it gets


class ThreadPolicy:
    """A fixed count (None: leave PyTorch's setting alone). `ThreadTuner` is the measuring one."""

    tuned = False

    def __init__(self, count: int | None):
        self._count = count

    @property
    def count(self) -> int | None:
        """The count the next step runs with."""
        return self._count

    def apply(self) -> None:
        """Set the calling thread's count before a step. Cheap when nothing changes: the comparison
        is one call, and `torch.set_num_threads` (which resizes thread pools) runs only on change."""
        if self.count is not None and torch.get_num_threads() != self.count:
            torch.set_num_threads(self.count)

    def record(self, seconds: float, samples: int) -> None:
        """A step of `samples` images took `seconds` (a fixed policy has no use for it)."""

    def describe(self) -> str:
        return "" if self.count is None else f"{self.count} CPU thread{'s' * (self.count != 1)}"


class ThreadTuner(ThreadPolicy):
    """Trains with whichever candidate count is fastest now.

    A run starts with the largest count (PyTorch's default) for `start_after_s`: its first steps are
    slow whatever the count (the data is touched for the first time), so they would mislead a
    measurement. Measuring: each candidate runs `warm_up_steps` untimed steps (thread pools wake,
    caches refill), then steps until it has `window_steps` of them and `window_s` seconds; its score
    is the median time per image. The fastest wins; the one in force keeps its place unless another
    is `switch_margin` faster, so near-ties do not flip-flop. Training: the median of the recent
    steps is compared with the winner's score, and a change by a factor of `drift` (the load
    changed) starts a new measurement at once; otherwise the next one comes after an interval that
    doubles from `first_interval_s` up to `max_interval_s` while the winner stays the same. On an
    idle machine that costs a few slower steps a minute."""

    tuned = True

    def __init__(self, candidates: tuple[int, ...], *, clock: Callable[[], float] = time.perf_counter,
                 start_after_s: float = 0.5, warm_up_steps: int = 1, window_steps: int = 4, window_s: float = 0.05,
                 first_interval_s: float = 5.0, max_interval_s: float = 60.0, drift: float = 1.5,
                 switch_margin: float = 0.05):
        if not candidates:
            raise ValueError("a thread tuner needs at least one candidate count")
        super().__init__(candidates[-1])
        self.candidates = tuple(candidates)
        self._clock = clock
        self._start_after_s = start_after_s
        self._warm_up_steps, self._window_steps, self._window_s = warm_up_steps, window_steps, window_s
        self._first_interval_s, self._max_interval_s = first_interval_s, max_interval_s
        self._drift, self._switch_margin = drift, switch_margin
        self._interval_s = first_interval_s
        self._chosen: int | None = None  # the winner of the last measurement
        self._score = 0.0  # its seconds per image then
        self._queue: list[int] = []  # candidates still to measure in this measurement
        self._scores: dict[int, float] = {}
        self._window: list[float] = []
        self._window_seconds = 0.0
        self._untimed = 0  # warm-up steps left before the window of the candidate being measured
        self._recent: deque[float] = deque(maxlen=2 * window_steps)
        self._next_measurement_at: float | None = None  # set by the run's first step
        self.measurements = 0  # completed measurements, for tests and the curious

    @property
    def measuring(self) -> bool:
        return bool(self._queue)

    def record(self, seconds: float, samples: int) -> None:
        per_image = seconds / max(1, samples)
        if self._queue:
            self._record_measurement(seconds, per_image)
        else:
            self._record_training(per_image)

    def describe(self) -> str:
        return f"{super().describe()}, tuned to the load"

    # -- measuring ------------------------------------------------------------------------------
    def _start_measuring(self) -> None:
        # The count in force goes last, so the switch back to it (if it wins) is the cheap case.
        others = [c for c in self.candidates if c != self._chosen]
        self._queue = others + ([self._chosen] if self._chosen is not None else [])
        self._scores = {}
        self._begin_window()

    def _begin_window(self) -> None:
        self._count = self._queue[0]
        self._window, self._window_seconds, self._untimed = [], 0.0, self._warm_up_steps

    def _record_measurement(self, seconds: float, per_image: float) -> None:
        if self._untimed:
            self._untimed -= 1
            return
        self._window.append(per_image)
        self._window_seconds += seconds
        if len(self._window) < self._window_steps or self._window_seconds < self._window_s:
            return
        self._scores[self._queue.pop(0)] = statistics.median(self._window)
        if self._queue:
            self._begin_window()
        else:
            self._choose()

    def _choose(self) -> None:
        best = min(self._scores, key=self._scores.get)
        kept = self._chosen in self._scores and self._scores[self._chosen] <= self._scores[best] * (
            1 + self._switch_margin)
        winner = self._chosen if kept else best
        self._interval_s = (min(2 * self._interval_s, self._max_interval_s) if winner == self._chosen
                            else self._first_interval_s)
        self._chosen, self._score, self._count = winner, self._scores[winner], winner
        self._recent.clear()
        self._next_measurement_at = self._clock() + self._interval_s
        self.measurements += 1

    # -- training -------------------------------------------------------------------------------
    def _record_training(self, per_image: float) -> None:
        if self._next_measurement_at is None:
            self._next_measurement_at = self._clock() + self._start_after_s
        self._recent.append(per_image)
        if self._clock() >= self._next_measurement_at:
            self._start_measuring()
        elif self._chosen is not None and len(self._recent) == self._recent.maxlen:
            recent = statistics.median(self._recent)
            if not self._score / self._drift <= recent <= self._score * self._drift:
                self._interval_s = self._first_interval_s
                self._start_measuring()
            self._recent.clear()


def thread_override() -> int | None:
    """The count `VAE_STUDIO_TORCH_THREADS` fixes, if it holds a number."""
    value = os.environ.get(THREADS_ENV, "").strip()
    try:
        return max(1, int(value)) if value else None
    except ValueError:
        return None  # a malformed override must not stop training; the policy applies


def candidate_counts(cores: int) -> tuple[int, ...]:
    """1, 2, 4, ... up to the number of cores, and the number of cores itself."""
    counts = {cores}
    count = 1
    while count < cores:
        counts.add(count)
        count *= 2
    return tuple(sorted(counts))


@functools.cache
def results_depend_on_thread_count() -> bool:
    """Whether 1 and 2 threads give different bits for a product MKL splits by thread (the shape
    of fc_mu's weight gradient). True means MKL_CBWR was not in force when MKL started."""
    noise = torch.Generator().manual_seed(0)
    left, right = torch.randn(10, 128, generator=noise), torch.randn(128, 128, generator=noise)
    before = torch.get_num_threads()
    try:
        products = []
        for count in (1, 2):
            torch.set_num_threads(count)
            products.append(left @ right)
    finally:
        torch.set_num_threads(before)
    return not torch.equal(*products)


def thread_policy(device: torch.device) -> ThreadPolicy:
    """The policy for training on `device`: the override, else a tuner on a multi-core CPU whose
    results do not depend on the count, else one thread."""
    if device.type != "cpu":
        return ThreadPolicy(None)
    override = thread_override()
    if override is not None:
        return ThreadPolicy(override)
    cores = os.cpu_count() or 1
    if cores == 1 or results_depend_on_thread_count():
        return ThreadPolicy(FALLBACK_THREADS)
    return ThreadTuner(candidate_counts(cores))
