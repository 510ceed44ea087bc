"""`Snapshot`: what a reader may know of a run at one moment, whoever trains it.

A job training on a thread publishes them (jobs.py), a run process sends them to its server over the
pipe (worker.py, executors.py), and a run of the store is read into one (stored_runs.py). numpy
only, no torch: a fresh server follows its first run before it has imported torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .history import Frame, StepCurves
from .run_status import ACTIVE


@dataclass(frozen=True)
class Snapshot:
    """What a reader may know about a job at one moment. Never mutated after it is published."""

    run_id: str
    name: str
    version: int
    status: str
    message: str | None
    config: dict
    dataset: str
    device: str
    epoch: int  # completed epochs
    epochs: int
    step: int
    steps_per_epoch: int
    total_steps: int
    samples_per_s: float
    eta_s: float | None
    elapsed_s: float
    lr: float
    beta: float  # the user's beta; the curve `curves.beta` holds the annealed value in force
    curves: StepCurves
    kl_per_dim: np.ndarray
    epoch_metrics: tuple[dict, ...]
    events: tuple[dict, ...]
    frames: tuple[Frame, ...]
    fixed_inputs: np.ndarray  # uint8 images whose reconstructions the frames show
    checkpoint_path: str | None
    weights_epoch: int = 0  # epoch of the weights `TrainingJob.latest_weights()` returns
    threads: str = ""  # e.g. "1 CPU thread"; empty on a GPU

    @property
    def progress(self) -> float:
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0

    @property
    def active(self) -> bool:
        """Not ended yet: queued, starting, running or paused."""
        return self.status in ACTIVE
