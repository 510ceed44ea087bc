"""All training jobs of one process, keyed by run id: one trains per device while the others wait.

The others wait in that device's first-in-first-out queue and start, in order, as the device frees.

Why one at a time: two runs on one device share its cores (or its GPU) and each takes about twice
as long, so running them one after the other gives the first result sooner and the last no later.

The app keeps one `JobRegistry` for the whole server (every browser session shares it), so a
reload or a second tab finds a run by its id, and its queue.

Two executors: "process" (the app's), where each run trains in a process of its own
(executors.py, worker.py) and the queue lives in the checkpoints folder (run_queue.py), so it
survives this server and is shared with every other server on the folder; and "thread", where runs
train on threads of this process and the queue is in memory (tests that step a job, scripts).
A supervising thread of the process executor keeps this server's view in step with the folder's
queue once a second: runs queued by another server appear, runs another server started leave, and
a run whose process died with its server is put back at the head of the queue to resume.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from . import run_queue
from .config import TrainConfig, default_run_name
from .errors import TrainingError
from .run_status import ACTIVE

if TYPE_CHECKING:  # the rest is imported where it is used: a fresh server starts its run process before torch
    from .data import ImageDataset
    from .executors import ProcessJob
    from .jobs import TrainingJob
    from .trainer import TrainerState


EXECUTORS = ("process", "thread", "slurm")
SUPERVISE_EVERY_S = 1.0
CHECK_IN_RUN_PROCESS_TIMEOUT_S = 120.0  # a fresh run process loads torch and the data first (a few seconds)


class JobRegistry:
    def __init__(
        self,
        checkpoint_dir: str | Path | None = None,
        *,
        executor: str = "thread",
        upload_root: str | Path | None = None,
    ):
        from .slurm_settings import executor_setting

        executor = executor_setting(executor)  # "local" is "process"; anything unknown: one line
        if executor != "thread" and not checkpoint_dir:
            raise TrainingError("runs in processes of their own need a checkpoints folder, their run store")
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.executor = executor
        self.upload_root = Path(upload_root) if upload_root else None
        self._jobs: dict[str, TrainingJob] = {}
        self._queues: dict[str, list[TrainingJob]] = {}  # device -> jobs waiting for it, next first
        self._lock = threading.RLock()
        self._processes: dict[str, object] = {}  # device -> its warm RunProcess (process executor)
        self._closed = threading.Event()
        self.slurm = None  # slurm_executor.SlurmQueue: runs queued here train as SLURM jobs
        if executor == "process":
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            threading.Thread(target=self._supervise, name="run-supervisor", daemon=True).start()
        elif executor == "slurm":
            from .slurm_executor import SlurmQueue

            self.slurm = SlurmQueue(self.checkpoint_dir, upload_root=self.upload_root)
            threading.Thread(target=self._supervise, name="slurm-follower", daemon=True).start()

    def submit(
        self,
        config: TrainConfig,
        dataset: ImageDataset | None,
        *,
        run_id: str | None = None,
        name: str | None = None,
        state: TrainerState | None = None,
        owner: str | None = None,
        data_roots=(),
    ) -> TrainingJob:
        """A new job: it starts now if its device is free, else it waits its turn (status "queued").
        Its name is `name` or one made from its config, kept distinct from the other jobs' names;
        `owner` (an owner id, or None for a shared run) is kept in its checkpoints.

        The process executor may be given no dataset: the run process then opens the data (a built-in
        dataset, or a file in `data_roots`, the person's uploads) and checks the run against every
        limit before it is queued (worker.check_new_run), so a fresh server starts its first run
        without importing torch. The job's `data_warnings` are its data's warnings either way."""
        checked = None  # (device, warnings), found by the run process: outside the lock, it may take seconds
        if self.executor == "process" and dataset is None:
            with self._lock:
                process = self._process_for("cpu")  # the warm one (warm_up): a check needs no particular device
            if process is None:
                raise TrainingError("this server is shutting down: it starts no new run")
            checked = process.check(config, list(data_roots), CHECK_IN_RUN_PROCESS_TIMEOUT_S)
        with self._lock:
            if run_id is not None and run_id in self._jobs:
                raise TrainingError(f"run {run_id} already exists in this session")
            if self.slurm is None:  # SlurmQueue.queue counts the runs pending in SLURM
                run_queue.check_queue_room(sum(job.owner == owner for job in self.queued()), owner)
            # Named before the job exists, so its first snapshot and record carry the name.
            name = distinct_name(
                " ".join((name or "").split()) or default_run_name(config), self._names_taken(but=run_id, owner=owner)
            )
            if self.executor == "slurm":  # a job of the cluster: the pages follow its record in the store
                from .trainer import check_trainable

                check_trainable(config, dataset)
                (run_id,) = self.slurm.queue([config], names=[name], owner=owner)
                return self._process_job(config, dataset, run_id=run_id, name=name, owner=owner)
            if self.executor == "thread":
                from .jobs import TrainingJob

                job = TrainingJob(
                    config,
                    dataset,
                    run_id=run_id,
                    name=name,
                    state=state,
                    checkpoint_dir=self.checkpoint_dir,
                    on_end=self._job_ended,
                    owner=owner,
                )
            else:  # its state is its checkpoint in the folder, which its process resumes from
                job = self._checked_process_job(config, dataset, checked, run_id=run_id, name=name, owner=owner)
            if self.executor == "process":
                run_queue.enqueue(
                    self.checkpoint_dir,
                    run_queue.QueuedRun(job.run_id, config, job.name, owner, str(job.device), run_queue.next_order()),
                )
            self._jobs[job.run_id] = job
            device = str(job.device)
            self._queues.setdefault(device, []).append(job)
            self._start_next(device)
        return job

    def _names_taken(self, but: str | None, owner: str | None) -> set[str]:
        """The names the owner's other runs show: this server's jobs and the folder's runs (as its
        listing names them), so a new run's name is the one every page and the CLI show, and a resumed
        run keeps its own. Served, only the person's own runs count: a name made distinct against
        everyone's would tell them how many identical runs others have."""
        from .runs import list_runs

        taken = {job.name for job in self._jobs.values() if job.run_id != but and job.owner == owner}
        if self.checkpoint_dir is None:
            return taken
        return taken | {
            record.display_name
            for record in list_runs(self.checkpoint_dir)
            if record.run_id != but and record.owner == owner
        }

    def _checked_process_job(self, config: TrainConfig, dataset, checked, **labels) -> ProcessJob:
        """The job of a run checked by the run process (`checked`: its device and data warnings), or
        checked here on `dataset`."""
        if checked is not None:
            device, warnings = checked
            return self._process_job(config, None, device=device, data_warnings=warnings, **labels)
        from .trainer import check_trainable

        check_trainable(config, dataset)
        return self._process_job(config, dataset, data_warnings=tuple(dataset.warnings), **labels)

    def _process_job(self, config: TrainConfig, dataset, **labels) -> ProcessJob:
        from .executors import ProcessJob

        return ProcessJob(
            config,
            dataset,
            checkpoint_dir=self.checkpoint_dir,
            on_end=self._job_ended,
            data_roots=[self.upload_root] if self.upload_root else [],
            **labels,
        )

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
            if self.executor == "process":
                run_queue.reorder(self.checkpoint_dir, [job.run_id for job in jobs])
            return target + 1

    def cancel(self, run_id: str) -> None:
        """Take a queued job out of its queue; it ends "cancelled", never having trained. A SLURM
        run's job is cancelled, pending or running (scancel)."""
        if self.slurm is not None:
            self.slurm.cancel(run_id)
            return
        with self._lock:
            jobs = self._queue_of(run_id)
            job = next(job for job in jobs if job.run_id == run_id)
            jobs.remove(job)
            if self.executor == "process":
                run_queue.cancel(self.checkpoint_dir, run_id)
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
            if self.executor == "process":
                run_queue.cancel(self.checkpoint_dir, job.run_id)
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
            jobs = self._queues.get(str(ended.device), [])
            if ended in jobs:
                jobs.remove(ended)  # cancelled, or taken by another server, while waiting
            self._start_next(str(ended.device))

    def _start_next(self, device: str) -> None:
        """Start the first job waiting for `device` if nothing of this server trains on it."""
        with self._lock:
            jobs = self._queues.get(device, [])
            while jobs and self.busy_job(device) is None:
                job = jobs[0]
                if job.status != "queued":
                    jobs.pop(0)
                    continue
                if self.executor == "thread":
                    jobs.pop(0).start()
                    return
                process = self._process_for(device)
                if process is None or not process.ready.is_set() or process.run_id is not None:
                    return  # warming up: the supervisor starts the job once the process is ready
                jobs.pop(0)
                job.start(process)
                return

    # -- the process executor -----------------------------------------------------------------------
    def _process_for(self, device: str):
        """This server's warm run process for `device`, started if there is none (or it died)."""
        from .run_process import RunProcess

        process = self._processes.get(device)
        if (process is None or not process.alive) and not self._closed.is_set():
            process = self._processes[device] = RunProcess(
                self.checkpoint_dir, self._on_process_message, self.upload_root
            )
        return process

    def warm_up(self, device: str = "cpu") -> None:
        """Start the run process of `device` now, so the first Start finds it warm."""
        if self.executor == "process":
            with self._lock:
                self._process_for(device)

    def warming_up(self, device: str) -> bool:
        """Whether this server's run process for `device` is still starting (torch, the data, the first
        optimiser): a run next in line on it waits for that, not for another run."""
        process = self._processes.get(device)  # only the process executor has any
        return process is not None and process.alive and not process.ready.is_set()

    def wait_for_run_process(self, timeout_s: float, device: str = "cpu") -> bool:
        """Wait (up to timeout_s) until the run process of `device` is warm (or gone); False when it
        was not by then, or when this server has no run process for `device`."""
        process = self._processes.get(device)
        return process is not None and process.ready.wait(timeout_s)

    def _on_process_message(self, process, message: tuple) -> None:
        kind = message[0]
        if kind == "ready":
            device = next((d for d, p in self._processes.items() if p is process), None)
            if device is not None:
                self._start_next(device)
            return
        if kind == "exited":
            run_id = process.run_id
            if run_id is not None:
                run_queue.release(self.checkpoint_dir, run_id)  # it died: no claim is left behind
        else:
            run_id = message[1].run_id if kind == "snapshot" else message[1]
            message = (kind, *message[2:]) if kind != "snapshot" else message
        job = self._jobs.get(run_id) if run_id else None
        if job is not None:  # a ProcessJob: only the process executor has run processes
            if kind == "not started" and message[1] == "busy":
                with self._lock:  # back at the head of its queue; the supervisor tries again
                    job.received(*message)
                    self._queues.setdefault(str(job.device), []).insert(0, job)
                    if process.run_id == run_id:
                        process.run_id = None
                return
            if kind in ("ended", "not started") and process.run_id == run_id:
                process.run_id = None
            job.received(*message)
            if kind == "not started" and message[1] == "gone":
                with self._lock:  # another server's process trains it: the pages follow its record in the folder
                    if self._jobs.get(run_id) is job:
                        del self._jobs[run_id]

    def _supervise(self) -> None:
        while not self._closed.wait(SUPERVISE_EVERY_S):
            try:
                self.sync_with_store()
            except Exception as error:  # never the end of supervision; the next tick tries again
                import sys

                print(f"VAE Studio: supervising runs failed: {type(error).__name__}: {error}", file=sys.stderr)

    def sync_with_store(self) -> None:
        if self.slurm is not None:
            self.slurm.follow()  # the scheduler's word on each run: running where, requeued, ended
            return
        self._sync_local_queue()

    def _sync_local_queue(self) -> None:
        """This server's queue made the folder's: runs queued by another server join it in their
        order, runs no longer waiting there leave it, a run whose process died is requeued to resume,
        and each device's next run starts when nothing trains on it."""
        run_queue.recover_interrupted(self.checkpoint_dir)
        with self._lock:  # a submit meanwhile would find its queue file missing from a listing made before
            waiting = run_queue.waiting(self.checkpoint_dir)
            order = {run.run_id: index for index, run in enumerate(waiting)}
            for run in waiting:
                known = self._jobs.get(run.run_id)
                if known is None or known.status not in ACTIVE:  # queued by another server, or requeued
                    self._jobs[run.run_id] = self._process_job(
                        run.config, None, run_id=run.run_id, name=run.name, owner=run.owner, device=run.device
                    )
            for jobs in self._queues.values():
                for job in [job for job in jobs if job.run_id not in order]:
                    jobs.remove(job)  # started or cancelled by another server: the store's record shows it
                    if job.status == "queued":
                        self._jobs.pop(job.run_id, None)
            for run in waiting:
                job = self._jobs[run.run_id]
                jobs = self._queues.setdefault(str(job.device), [])
                if job.status == "queued" and job not in jobs:
                    jobs.append(job)
            for device, jobs in self._queues.items():
                jobs.sort(key=lambda job: order[job.run_id])
                self._start_next(device)

    def close(self) -> None:
        """Stop supervising and let the idle run processes go (one training a run finishes it)."""
        self._closed.set()
        for process in list(self._processes.values()):
            process.close()


def distinct_name(name: str, taken: set[str]) -> str:
    """`name`, or `name (2)`, `name (3)`... whichever is not taken."""
    candidate, number = name, 2
    while candidate in taken:
        candidate, number = f"{name} ({number})", number + 1
    return candidate
