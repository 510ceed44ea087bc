"""How many CPU threads PyTorch uses for a training step: measured while training, not guessed.

Why measure: on the 2-core machines this app targets, the fastest count depends on the load, and
by a lot. One epoch of the default MLP on Fashion-MNIST (batch 128), seconds:

    machine                                       1 thread    2 threads (PyTorch's default)
    AVX-512 CPU, idle (Trainer, oneDNN layers)       1.50         1.34
    AVX-512 CPU, another process busy on one core    1.55         5.06
    AVX2 CPU, idle (a bare loop, MKL layers)         4.6          3.4
    AVX2 CPU, another process busy on one core       4.6         10.6

(`python -m bench.bench_training` measures the first two rows and the tuner against them.)
Two threads pay when both cores are free; when something else runs (another process, or in the
app the UI thread drawing charts and computing projections next to the training thread), PyTorch's
OpenMP workers spin-wait on a core that the thread they wait for needs, and a step takes 2 to 10
times longer. No fixed count is right, so `ThreadTuner` times steps with each candidate count the
machine has idle cores for, trains with the fastest, and measures again when the step time drifts,
when cores free up, or when a while has passed.

Reproducibility: the thread count can change the low bits of results (a kernel splits a sum between
threads), and a run that switched counts could then not be repeated. So the tuner is used only for
a model whose training step gives the same bits with every count, which
`thread_count_changes_results` checks on the model itself, once per shape (a step with 1 thread and
with all of them, compared bit for bit). Otherwise the count is fixed at PyTorch's default of a
thread per core: as fast as a plain script on idle cores, and the same arithmetic at every run on
the machine (set `VAE_STUDIO_TORCH_THREADS=1` on a shared machine). What it found: MKL's matrix
products split by thread (e.g. the gradient of `fc_mu`) until `vae_core/__init__.py` puts MKL into
conditional numerical reproducibility, strict mode (`MKL_CBWR=AUTO,STRICT`, measured free of cost
here); after that the MLPs agree on every CPU tried. oneDNN's convolution weight gradients agree on
an AVX2 CPU but not on an AVX-512 one, so there `conv` trains at the fixed count (one epoch of
Fashion-MNIST: 11.7 s on 1 thread, about 8 s on 2). A test trains with 1 thread, 2 threads and a count
switched at every step and compares the weights bit for bit, for every model the check lets the
tuner handle.

`VAE_STUDIO_TORCH_THREADS=<n>` fixes the count instead. GPUs are left alone: their work does not
run on these threads.

Note that `torch.set_num_threads` is partly per thread: it sets a process-wide default that threads
pick up when they first run a parallel operation, plus the calling thread's own OpenMP setting, so
a policy is applied on the thread that trains, before each step (`ThreadPolicy.apply`).

Idle thread teams on other threads: every thread that has once run a parallel operation keeps an
OpenMP team of worker threads until it ends. When the process then holds more such workers than
there are cores, libgomp (PyTorch's OpenMP on Linux) cuts the spin-wait of every team from about
300,000 iterations to 100, so the training thread's workers fall asleep between the many small
operations of a step and each one pays a wake-up: on 2 cores an epoch of the default MLP took
2.6 s instead of 1.2 s with a caller's idle team alive. Hence nothing here leaves a team on a
thread that outlives its work: the probe below runs on a short-lived thread, and a `TrainingJob`
is built `serial_on_this_thread()`. (Streamlit's script threads are short-lived; its server thread
runs no tensor code.)
"""

from __future__ import annotations

import contextlib
import os
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence

import torch

THREADS_ENV = "VAE_STUDIO_TORCH_THREADS"
FALLBACK_NOTE = "fixed: other counts change this model's results on this CPU"


class ThreadPolicy:
    """A fixed count (None: leave PyTorch's setting alone). `ThreadTuner` is the measuring one."""

    tuned = False

    def __init__(self, count: int | None, note: str = ""):
        self._count = count
        self._note = note  # why this count, for the UI

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
        if self.count is None:
            return ""
        return f"{self.count} CPU thread{'s' * (self.count != 1)}" + (f", {self._note}" if self._note else "")


class IdleCores:
    """How many cores sat idle since the previous call, machine-wide, from the kernel's CPU time
    counters (Linux's /proc/stat, in ticks of 10 ms); None where they cannot be read or too little
    time has passed to tell."""

    MIN_TICKS = 10  # below this the count is mostly rounding

    def __init__(self, path: str = "/proc/stat", cores: int | None = None):
        self._path = path
        self._cores = cores or os.cpu_count() or 1
        self._last = self._read()

    def __call__(self) -> float | None:
        now = self._read()
        last, self._last = self._last, now
        if now is None or last is None or now[1] - last[1] < self.MIN_TICKS:
            return None
        return self._cores * (now[0] - last[0]) / (now[1] - last[1])

    def _read(self) -> tuple[int, int] | None:
        """(idle ticks, all ticks) summed over the cores."""
        try:
            with open(self._path, encoding="ascii") as stat:
                fields = stat.readline().split()
        except OSError:
            return None
        if len(fields) < 5 or fields[0] != "cpu":
            return None
        ticks = [int(value) for value in fields[1:9]]  # user nice system idle iowait irq softirq steal
        return ticks[3] + ticks[4], sum(ticks)


class ThreadTuner(ThreadPolicy):
    """Trains with whichever candidate count is fastest now.

    A run starts with one thread: on a busy machine the first step with two took 90 ms here (the
    second thread waits for a core to start on), on an idle one a step with one thread is 10 to 40%
    slower than with two, so one thread is the cheap way to be wrong until the first measurement,
    `start_after_s` into the run (the very first steps are slow whatever the count: memory is
    allocated and touched for the first time).

    Measuring: the count in force first (the steps just trained serve, when there are enough of
    them), then the smaller counts, then the larger ones the machine
    has idle cores for (`IdleCores`: a count `k` more than the current one is tried when about `k`
    cores sat idle since the last look), so a busy machine never pays for trying a count it has
    no room for. A candidate runs `warm_up_steps` untimed steps when the count changes (thread pools
    wake, caches refill), then steps until it has `window_steps` of them and `window_s` seconds; its
    score is the median time per image. A challenger is cut short once `reject_after_steps` of its
    steps were all slower than the best score so far by more than `switch_margin`: it could not
    displace the count in force. The fastest wins; the one in force keeps its place unless another
    is `switch_margin` faster, so near-ties do not flip-flop.

    Training: the median of the recent steps is compared with the winner's score, and a change by a
    factor of `drift` (the load changed) starts a new measurement at once. If the last measurement
    left out a larger count for lack of idle cores, the idle cores are looked at every
    `idle_check_s`, and the measurement comes as soon as they are there. Otherwise the next one
    comes after an interval that doubles from `first_interval_s` up to `max_interval_s` while the
    winner stays the same. On an idle machine a measurement costs about one step's time."""

    tuned = True
    IDLE_SLACK = 0.25  # cores: how far below a whole free core still counts as one

    def __init__(self, candidates: tuple[int, ...], *, clock: Callable[[], float] = time.perf_counter,
                 idle_cores: Callable[[], float | None] | None = None, start_after_s: float = 0.06,
                 warm_up_steps: int = 1, window_steps: int = 4, window_s: float = 0.05, reject_after_steps: int = 2,
                 first_interval_s: float = 5.0, max_interval_s: float = 60.0, idle_check_s: float = 1.0,
                 drift: float = 1.5, switch_margin: float = 0.05):
        if not candidates:
            raise ValueError("a thread tuner needs at least one candidate count")
        super().__init__(min(candidates), note="tuned to the load")
        self.candidates = tuple(sorted(candidates))
        self._clock = clock
        self._idle_cores = idle_cores or IdleCores()
        self._start_after_s = start_after_s
        self._warm_up_steps, self._window_steps, self._window_s = warm_up_steps, window_steps, window_s
        self._reject_after_steps = reject_after_steps
        self._first_interval_s, self._max_interval_s = first_interval_s, max_interval_s
        self._idle_check_s = idle_check_s
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
        self._left_out = False  # whether the last measurement skipped a larger count for lack of cores
        self._next_idle_check_at = 0.0
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

    # -- measuring ------------------------------------------------------------------------------
    def _start_measuring(self, idle: float | None) -> None:
        current = self._count
        smaller = [c for c in reversed(self.candidates) if c < current]
        larger = [c for c in self.candidates if c > current]
        affordable = [c for c in larger if self._fits(c, idle)]
        self._left_out = len(affordable) < len(larger)
        self._scores = {}
        self._queue = smaller + affordable
        if len(self._recent) >= self._window_steps:
            # The steps just trained measured the count in force: no need to spend more on it.
            self._scores[current] = statistics.median(self._recent)
        else:
            self._queue.insert(0, current)
        if self._queue:
            self._begin_window()
        else:
            self._choose()

    def _fits(self, count: int, idle: float | None) -> bool:
        """Whether the machine had idle cores for `count` threads (unknown counts as yes)."""
        return idle is None or count - self._count <= idle + self.IDLE_SLACK

    def _begin_window(self) -> None:
        changed = self._queue[0] != self._count
        self._count = self._queue[0]
        self._window, self._window_seconds = [], 0.0
        self._untimed = self._warm_up_steps if changed else 0

    def _record_measurement(self, seconds: float, per_image: float) -> None:
        if self._untimed:
            self._untimed -= 1
            return
        self._window.append(per_image)
        self._window_seconds += seconds
        complete = len(self._window) >= self._window_steps and self._window_seconds >= self._window_s
        if not complete and not self._losing():
            return
        self._scores[self._queue.pop(0)] = statistics.median(self._window)
        if self._queue:
            self._begin_window()
        else:
            self._choose()

    def _losing(self) -> bool:
        """Whether the candidate being measured has had `reject_after_steps` steps, all slower than
        the best score so far by more than the switch margin."""
        if not self._scores or len(self._window) < self._reject_after_steps:
            return False
        return min(self._window) > min(self._scores.values()) * (1 + self._switch_margin)

    def _choose(self) -> None:
        best = min(self._scores, key=self._scores.get)
        kept = self._chosen in self._scores and self._scores[self._chosen] <= self._scores[best] * (
            1 + self._switch_margin)
        winner = self._chosen if kept else best
        self._interval_s = (min(2 * self._interval_s, self._max_interval_s) if winner == self._chosen
                            else self._first_interval_s)
        self._chosen, self._score, self._count = winner, self._scores[winner], winner
        self._recent.clear()
        now = self._clock()
        self._next_measurement_at = now + self._interval_s
        self._next_idle_check_at = now + self._idle_check_s
        self.measurements += 1

    # -- training -------------------------------------------------------------------------------
    def _record_training(self, per_image: float) -> None:
        now = self._clock()
        if self._next_measurement_at is None:
            self._next_measurement_at = now + self._start_after_s
            self._idle_cores()  # idle cores are counted from the run's first step on
        self._recent.append(per_image)
        if now >= self._next_measurement_at:
            self._start_measuring(self._idle_cores())
        elif self._left_out and now >= self._next_idle_check_at:
            self._next_idle_check_at = now + self._idle_check_s
            idle = self._idle_cores()
            if any(self._fits(c, idle) for c in self.candidates if c > self._count):
                self._interval_s = self._first_interval_s
                self._start_measuring(idle)
        elif self._chosen is not None and len(self._recent) == self._recent.maxlen:
            recent = statistics.median(self._recent)
            if not self._score / self._drift <= recent <= self._score * self._drift:
                self._interval_s = self._first_interval_s
                self._start_measuring(self._idle_cores())
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


_probed: dict[Hashable, bool] = {}
_probe_lock = threading.Lock()


def thread_count_changes_results(step: Callable[[], Sequence[torch.Tensor]], key: Hashable) -> bool:
    """Whether `step` (what a training step computes: its loss and gradients) gives other bits with
    1 thread than with each other candidate count. Cached by `key`, which names everything that
    shapes the step (model, sizes, batch).

    Runs on a thread of its own that ends with it, so its parallel operations leave no idle team on
    the caller's thread (see the module docstring)."""
    with _probe_lock:
        if key not in _probed:
            answer: list[bool] = []
            prober = threading.Thread(target=lambda: answer.append(_results_differ(step)),
                                      name="vae-thread-probe", daemon=True)
            prober.start()
            prober.join()
            _probed[key] = answer[0] if answer else True  # a probe that failed proves nothing
        return _probed[key]


def _results_differ(step: Callable[[], Sequence[torch.Tensor]]) -> bool:
    counts = candidate_counts(os.cpu_count() or 1)
    before = torch.get_num_threads()
    try:
        results = []
        for count in counts:
            torch.set_num_threads(count)
            results.append([tensor.detach().cpu() for tensor in step()])
    finally:
        torch.set_num_threads(before)
    first = results[0]
    return any(len(other) != len(first) or not all(map(torch.equal, first, other)) for other in results[1:])


@contextlib.contextmanager
def serial_on_this_thread():
    """Tensor work inside runs on the calling thread alone, creating no OpenMP team there that would
    sit idle beside a training thread's (see the module docstring). The thread's count is restored
    afterwards; a team that existed before is not touched."""
    before = torch.get_num_threads()
    if before != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def thread_policy(device: torch.device, *, results_vary: Callable[[], bool]) -> ThreadPolicy:
    """The policy for training on `device`: the override, else a tuner on a multi-core CPU when the
    count does not change the results (`results_vary()` says whether it does), else a thread per core."""
    if device.type != "cpu":
        return ThreadPolicy(None)
    override = thread_override()
    if override is not None:
        return ThreadPolicy(override)
    cores = os.cpu_count() or 1
    if cores == 1:
        return ThreadPolicy(1)
    if results_vary():
        return ThreadPolicy(cores, note=FALLBACK_NOTE)
    return ThreadTuner(candidate_counts(cores))
