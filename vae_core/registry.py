"""All training jobs of one process, keyed by run id: one job trains per device, the others wait
in that device's first-in-first-out queue and start, in order, as the device frees.

Why one at a time: two runs on one device share its cores (or its GPU) and each takes about twice
as long, so running them one after the other gives the first result sooner and the last no later.

The app keeps one `JobRegistry` for the whole server (every browser session shares it), so a
reload or a second tab finds a run by its id, and its queue.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from .config import TrainConfig
from .errors import TrainingError
from .jobs import ACTIVE, TrainingJob
from .trainer import TrainerState

if TYPE_CHECKING:
    from .data import ImageDataset


class JobRegistry:
    def __init__(self, checkpoint_dir: str | Path | None = None):
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self._jobs: dict[str, TrainingJob] = {}
        self._queues: dict[str, list[TrainingJob]] = {}  # device -> jobs waiting for it, next first
        self._lock = threading.RLock()

    def submit(self, config: TrainConfig, dataset: ImageDataset, *, run_id: str | None = None,
               name: str | None = None, state: TrainerState | None = None, owner: str | None = None) -> TrainingJob:
        """A new job: it starts now if its device is free, else it waits its turn (status "queued").
        Its name is `name` or one made from its config, kept distinct from the other jobs' names;
        `owner` (an owner id, or None for a shared run) is kept in its checkpoints."""
        with self._lock:
            if run_id is not None and run_id in self._jobs:
                raise TrainingError(f"run {run_id} already exists in this session")
            job = TrainingJob(config, dataset, run_id=run_id, name=name, state=state,
                              checkpoint_dir=self.checkpoint_dir, on_end=self._job_ended, owner=owner)
            job.name = distinct_name(job.name, {other.name for other in self._jobs.values()})
            self._jobs[job.run_id] = job
            device = str(job.device)
            if self.busy_job(device) is None and not self._queues.get(device):
                job.start()
            else:
                self._queues.setdefault(device, []).append(job)
        return job

    start = submit  # the app's Start button: train now, or as soon as the device is free

    def busy_job(self, device: str) -> TrainingJob | None:
        """The job training on `device` now, if any."""
        return next((job for job in self._jobs.values() if str(job.device) == device and job.alive), None)

    def queued(self, device: str | None = None) -> list[TrainingJob]:
        """Jobs waiting, in the order they will start (on `device`, or on every device)."""
        with self._lock:
            queues = [self._queues.get(device, [])] if device is not None else list(self._queues.values())
            return [job for jobs in queues for job in jobs]

    def position(self, run_id: str) -> int | None:
        """1 for the next job to start on its device, 2 for the one after...; None when not queued."""
        with self._lock:
            for jobs in self._queues.values():
                for index, job in enumerate(jobs):
                    if job.run_id == run_id:
                        return index + 1
        return None

    def move(self, run_id: str, offset: int) -> int:
        """Move a queued job `offset` places later (negative: earlier) in its device's queue, within
        its ends. Returns its new position."""
        with self._lock:
            jobs = self._queue_of(run_id)
            index = next(i for i, job in enumerate(jobs) if job.run_id == run_id)
            target = min(max(index + offset, 0), len(jobs) - 1)
            jobs.insert(target, jobs.pop(index))
            return target + 1

    def cancel(self, run_id: str) -> None:
        """Take a queued job out of its queue; it ends "cancelled", never having trained."""
        with self._lock:
            jobs = self._queue_of(run_id)
            job = next(job for job in jobs if job.run_id == run_id)
            jobs.remove(job)
            job.stop()

    def get(self, run_id: str | None) -> TrainingJob | None:
        return self._jobs.get(run_id) if run_id else None

    def jobs(self) -> list[TrainingJob]:
        """Every job this process knows, queued ones included, in the order they were submitted."""
        return list(self._jobs.values())

    def forget(self, run_id: str) -> None:
        """Drop an ended job from memory (its checkpoint stays on disk)."""
        with self._lock:
            job = self._jobs.get(run_id)
            if job is not None and job.status in ACTIVE:
                raise TrainingError(f"run {job.name} has not ended; stop or cancel it first")
            self._jobs.pop(run_id, None)

    def stop_all(self, timeout: float = 5.0) -> None:
        """Cancel every queued job, then stop the ones training and wait for them."""
        with self._lock:
            waiting = [job for jobs in self._queues.values() for job in jobs]
            self._queues.clear()
        for job in waiting:
            job.stop()
        for job in self.jobs():
            job.stop()
        for job in self.jobs():
            job.wait(timeout)

    def _queue_of(self, run_id: str) -> list[TrainingJob]:
        for jobs in self._queues.values():
            if any(job.run_id == run_id for job in jobs):
                return jobs
        job = self._jobs.get(run_id)
        status = f"it is {job.status}" if job is not None else "there is no such run"
        raise TrainingError(f"run {run_id} is not waiting in a queue: {status}")

    def _job_ended(self, ended: TrainingJob) -> None:
        """On the ended job's thread: start the next job waiting for its device."""
        with self._lock:
            device = str(ended.device)
            jobs = self._queues.get(device, [])
            while jobs and self.busy_job(device) is None:
                job = jobs.pop(0)
                if job.status == "queued":
                    job.start()
                    return


def distinct_name(name: str, taken: set[str]) -> str:
    """`name`, or `name (2)`, `name (3)`... whichever is not taken."""
    candidate, number = name, 2
    while candidate in taken:
        candidate, number = f"{name} ({number})", number + 1
    return candidate
