"""All training jobs of one process, keyed by run id, with one training job per device at a time.

The app keeps one `JobRegistry` for the whole server (every browser session shares it), so a
reload or a second tab finds a run by its id, and a second start on a busy device gets a message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import threading
from pathlib import Path

from .config import TrainConfig
from .device import resolve_device
from .errors import TrainingError
from .trainer import TrainerState
from .training import TrainingJob

if TYPE_CHECKING:
    from .data import ImageDataset


class JobRegistry:
    def __init__(self, checkpoint_dir: str | Path | None = None):
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self._jobs: dict[str, TrainingJob] = {}
        self._lock = threading.Lock()

    def start(self, config: TrainConfig, dataset: ImageDataset, *, run_id: str | None = None,
              state: TrainerState | None = None) -> TrainingJob:
        """Create and start a job, unless its device is already training (TrainingError says which run)."""
        device = str(resolve_device(config.device))
        with self._lock:
            busy = self.busy_job(device)
            if busy is not None:
                raise TrainingError(
                    f"{device} is busy training run {busy.run_id} ({busy.snapshot().status}); "
                    "stop it or wait until it ends before starting another")
            if run_id is not None and run_id in self._jobs:
                raise TrainingError(f"run {run_id} already exists in this session")
            job = TrainingJob(config, dataset, run_id=run_id, state=state, checkpoint_dir=self.checkpoint_dir)
            self._jobs[job.run_id] = job
        return job.start()

    def busy_job(self, device: str) -> TrainingJob | None:
        for job in self._jobs.values():
            if str(job.trainer.device) == device and job.alive:
                return job
        return None

    def get(self, run_id: str | None) -> TrainingJob | None:
        return self._jobs.get(run_id) if run_id else None

    def jobs(self) -> list[TrainingJob]:
        return list(self._jobs.values())

    def forget(self, run_id: str) -> None:
        """Drop a finished job from memory (its checkpoint stays on disk)."""
        with self._lock:
            job = self._jobs.get(run_id)
            if job is not None and job.alive:
                raise TrainingError(f"run {run_id} is still training; stop it first")
            self._jobs.pop(run_id, None)

    def stop_all(self, timeout: float = 5.0) -> None:
        for job in self.jobs():
            job.stop()
        for job in self.jobs():
            job.wait(timeout)
