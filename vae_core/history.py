"""What a run remembers: losses by step, metrics by epoch, hyperparameter changes, pictures and clock.

The clock is the wall time at which its steps ended. A history grows by appends from the training
thread; `curves()` gives readers read-only NumPy arrays.

The step rows are float32, as the losses are computed, from the training step to the file and back
to the chart: a run of 8 M steps keeps 190 MB of rows, not 380."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

STEP_FIELDS = ("total", "recon", "kl", "beta", "lr")
MAX_FRAMES = 120  # epochs of pictures kept; beyond it every other one is dropped (first and last stay)
# The latent means of the first test images are kept with each frame, so the scatter can be played
# over the epochs. Float16 and a bound on the values per frame keep 120 frames under 8 MB.
TRACKED_IMAGES = 1000
TRACKED_VALUES = 32_768  # per frame: all 1,000 images up to a 32-dimensional latent, fewer beyond
TRACKED_DTYPE = np.float16
# (step, seconds) points of a run's clock: one per flush (a few a second), thinned like the frames,
# so a checkpoint's metadata keeps at most ~20 kB of them however long the run.
MAX_CLOCK_POINTS = 1000
# float32 holds every whole number up to 2**24 exactly: rows of a run past 16.7 M steps are kept in
# float64, so that its step numbers stay exact.
MAX_FLOAT32_STEP = 1 << 24


def kept_rows(rows: np.ndarray, *, copy: bool = True) -> np.ndarray:
    """Step rows (step, then STEP_FIELDS) as a history keeps them: float32 while every step number fits
    it exactly, float64 beyond. A copy, unless `copy` is False and the rows are of that type already."""
    rows = np.asarray(rows)
    exact = not rows.size or float(np.abs(rows[:, 0]).max()) <= MAX_FLOAT32_STEP
    dtype = np.float32 if exact else np.float64
    return np.array(rows, dtype=dtype) if copy else np.asarray(rows, dtype=dtype)


def tracked_count(latent_dim: int) -> int:
    """At most how many test images' means a frame keeps for a latent of `latent_dim` dimensions."""
    return max(1, min(TRACKED_IMAGES, TRACKED_VALUES // max(1, latent_dim)))


@dataclass(frozen=True)
class RunClock:
    """A run's wall time at some of its steps: the seconds it had trained when each step ended,
    counted from its start, pauses included, and across a resume (the time a saved run waits on
    disk is not counted). Between the steps it saw, time is interpolated."""

    steps: np.ndarray
    seconds: np.ndarray

    @classmethod
    def from_points(cls, steps: Sequence, seconds: Sequence) -> RunClock | None:
        """The clock of (step, seconds) points; points with a None are skipped; None below two points."""
        pairs = [(s, t) for s, t in zip(steps, seconds) if s is not None and t is not None]
        if len(pairs) < 2:
            return None
        steps_known, seconds_known = np.asarray(pairs, dtype=np.float64).T
        return cls(steps_known, seconds_known)

    def at(self, steps: np.ndarray) -> np.ndarray:
        """Seconds at `steps`, interpolated; NaN outside what the clock saw (steps trained before it
        was kept, e.g. by a version that kept none)."""
        return np.interp(steps, self.steps, self.seconds, left=np.nan, right=np.nan)


@dataclass(frozen=True)
class StepCurves:
    """Per-step training curves, all the same length, and the run's clock (None when unknown)."""

    step: np.ndarray  # int64, global step (1-based: the step that produced the value)
    total: np.ndarray
    recon: np.ndarray
    kl: np.ndarray
    beta: np.ndarray  # the KL weight in force (after annealing)
    lr: np.ndarray
    clock: RunClock | None = None

    def __len__(self) -> int:
        return int(self.step.shape[0])


@dataclass(frozen=True)
class Frame:
    """What one epoch leaves to look at: reconstructions of the fixed test images, decodings of fixed
    z, and the latent means of the first test images (for the scatter played over the epochs)."""

    epoch: int
    reconstructions: np.ndarray  # uint8, N x C x H x W
    samples: np.ndarray  # uint8, M x C x H x W
    # float16, K x latent_dim: the means of the first K test images (the same K every epoch of a
    # run); None in frames saved before they were kept
    latent_means: np.ndarray | None = None


@dataclass
class History:
    """Mutable record owned by the training thread."""

    steps: list[np.ndarray] = field(default_factory=list)  # chunks of kept_rows, shape (n, 1 + len(STEP_FIELDS))
    epochs: list[dict] = field(default_factory=list)  # per-epoch test metrics
    events: list[dict] = field(default_factory=list)  # {"step", "name", "value"}: lr/beta changes, resumes
    frames: list[Frame] = field(default_factory=list)
    clock: list[tuple[int, float]] = field(default_factory=list)  # (step, seconds): see RunClock
    # The curves of the last step matrix asked for, with that matrix: a page drawing a saved run of
    # 8 M steps asks on every rerun.
    _curves_of: tuple[np.ndarray, tuple, StepCurves] | None = field(default=None, init=False, repr=False, compare=False)

    def add_steps(self, rows: np.ndarray) -> None:
        if rows.size:
            self.steps.append(kept_rows(rows))  # a copy: rows once kept are never written to (curves() views them)

    def add_frame(self, frame: Frame) -> None:
        self.frames = _bounded([*self.frames, frame], MAX_FRAMES)

    def add_time(self, step: int, seconds: float) -> None:
        """Note that the run had trained `seconds` when step `step` ended (a later time for the last
        step noted replaces its earlier one)."""
        point = (int(step), round(float(seconds), 3))  # milliseconds: enough, and short in JSON
        if self.clock and self.clock[-1][0] >= point[0]:
            self.clock[-1] = (self.clock[-1][0], max(self.clock[-1][1], point[1]))
        else:
            self.clock = _bounded([*self.clock, point], MAX_CLOCK_POINTS)

    @property
    def steps_per_epoch(self) -> int | None:
        """Steps in one of the run's epochs, as the end of its first says; None before one ended."""
        return self.epochs[0]["step"] if self.epochs else None

    @property
    def seconds_trained(self) -> float:
        """The clock's time at the last step it noted; where a resumed run's clock goes on from."""
        return self.clock[-1][1] if self.clock else 0.0

    def step_matrix(self) -> np.ndarray:
        if not self.steps:
            return np.zeros((0, 1 + len(STEP_FIELDS)), dtype=np.float32)
        if len(self.steps) > 1:
            self.steps = [np.concatenate(self.steps)]  # compact, so later freezes stay cheap
        return self.steps[0]

    def curves(self) -> StepCurves:
        """The step rows as curves: the values are read-only views of the rows (float32), not copies;
        only the step numbers are made (int64)."""
        matrix, clock_points = self.step_matrix(), tuple(self.clock)
        memo = self._curves_of
        if memo is not None and memo[0] is matrix and memo[1] == clock_points:
            return memo[2]
        columns = {name: _read_only(matrix[:, i + 1]) for i, name in enumerate(STEP_FIELDS)}
        curves = StepCurves(step=_read_only(matrix[:, 0].astype(np.int64)), **columns, clock=self.run_clock())
        self._curves_of = (matrix, clock_points, curves)
        return curves

    def run_clock(self) -> RunClock | None:
        """The clock as a RunClock (a copy), None before it has two points."""
        return RunClock.from_points(*zip(*self.clock)) if len(self.clock) >= 2 else None

    def truncate(self, step: int) -> None:
        """Forget what came after `step` (a resume from an earlier checkpoint)."""
        matrix = self.step_matrix()
        self.steps = [matrix[matrix[:, 0] <= step]]
        self.epochs = [e for e in self.epochs if e["step"] <= step]
        self.events = [e for e in self.events if e["step"] <= step]
        self.clock = [point for point in self.clock if point[0] <= step]


def _read_only(column: np.ndarray) -> np.ndarray:
    """A float32 (or int64) view of `column` that no reader can write through."""
    view = column.view() if column.dtype in (np.float32, np.int64) else column.astype(np.float32)
    view.flags.writeable = False
    return view


def _bounded(items: list, limit: int) -> list:
    """`items`, with every other one of its middle dropped once there are more than `limit`: memory
    stays bounded and what is kept still spans the whole run (the first and last always stay)."""
    if len(items) <= limit:
        return items
    return [items[0], *items[1:-1:2], items[-1]]
