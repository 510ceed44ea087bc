"""Queued runs as SLURM jobs, through submitit: one job per run of the folder's durable queue.

Each job trains exactly one run of the queue (run_queue.py) into the shared checkpoints folder, where
every page and the CLI follow it live as they follow any run of the store.

- `SlurmQueue.queue` puts a run in the folder's queue (marked for SLURM, so no local process pool
  takes it) and submits its job at once; a sweep of 24 runs is 24 jobs, submitted together.
- The job (`SlurmRun`, on a compute node) takes the run's lock, claims the run from the queue (an
  atomic rename: a second server's job of the same run finds it gone), trains it with the one job
  of jobs.py, which writes its checkpoint every epoch and its progress record a few times a second,
  and obeys the run's command file (pause, stop, lr, β).
- A job warned of its time limit or preemption (SLURM's USR2) is requeued by submitit
  (`Checkpointable.checkpoint`): the requeued job claims the run again and resumes exactly from its
  last epoch's checkpoint. A job that dies without warning (a node failure, a kill) is submitted
  again by `SlurmQueue.follow`, which asks the scheduler (sacct, through submitit's watcher) about
  every active run.
- The retry limit (the settings' `max_requeues`) counts only requeues without progress: a job that
  saved a newer epoch than the run had when it began is requeued freely (a long run cut by its time
  limit, or preempted, goes on to its end); one that saved none counts, and past the limit the run
  fails, saying so (an epoch longer than the time limit would otherwise be requeued for ever).
- Where each run is (queued here, pending with its job id, running on node X, ended with the
  scheduler's reason) is its executor state (executor_state.py), which the Runs page shows.
- `cancel` removes the run from the queue and cancels its job (submitit's `job.cancel`, scancel), a
  running one asked to stop first, so it saves before the scheduler kills it; `stop` asks a running
  job to stop at the next batch, saving, through the run's command file (as the Train page's Stop).
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import submitit
from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJob

from . import run_queue
from .config import TrainConfig, default_run_name, limits
from .errors import DataError, TrainingError, VAEStudioError
from .executor_state import ENDED_STATES, ExecutorState, read_state, state_path, states_in, update_state
from .run_commands import CommandFile, send_command
from .run_ids import new_run_id
from .safe_files import FieldError, UnreadableFile
from .slurm_settings import SlurmSettings, load_slurm_settings

SUBMITIT_FOLDER = ".slurm-jobs"  # submitit's pickles and the jobs' logs, inside the shared folder
SLURM_DEVICE = "slurm"  # a queued run's device until a node resolves its own
COMMAND_POLL_S = 0.5
FOLLOW_EVERY_S = 2.0
ORPHAN_AFTER_S = 30.0  # a run queued for SLURM with no job this long: its submitter died, submit it
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
# sacct's states (the first word: "CANCELLED by 1000") after which a job will not run again.
DIED = ("FAILED", "NODE_FAIL", "TIMEOUT", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "COMPLETED")
WAITING = ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SUSPENDED", "PREEMPTED")


class SlurmRun(submitit.helpers.Checkpointable):
    """What a run's SLURM job calls. Checkpointable: on a time limit or preemption, submitit pickles
    this same call again and requeues the job; the run's own epoch checkpoints in the folder are its
    state, so the requeued call resumes from the last of them."""

    def __init__(self, folder: str, run_id: str, upload_root: str | None = None, max_requeues: int = 3):
        self.folder, self.run_id, self.upload_root = folder, run_id, upload_root
        self.max_requeues = max_requeues

    def __call__(self) -> str:
        return train_queued_run(Path(self.folder), self.run_id, Path(self.upload_root) if self.upload_root else None)

    def checkpoint(self, *args, **kwargs):
        """On SLURM's warning (USR2: the time limit is near, or a preemption), in the job: requeue it,
        unless it is one requeue too many without progress; then the run fails (None: not requeued)."""
        folder = Path(self.folder)
        retry = requeue_counted(folder, self.run_id, self.max_requeues)
        if retry is None:
            give_up(folder, self.run_id, "its job reached its time limit or was preempted")
            return None
        requeued = update_state(
            folder,
            self.run_id,
            keep=ENDED_STATES,
            state="pending",
            node=None,
            attempts=retry,
            reason="requeued by SLURM",
        )
        if not requeued.active:
            return None  # cancelled by a person meanwhile: not brought back
        return super().checkpoint(*args, **kwargs)


def saved_epoch(folder: Path, run_id: str) -> int:
    """The epochs the run's checkpoint holds (its header alone); 0 before its first."""
    from .checkpoint_fields import parse_metadata
    from .runs import checkpoint_path
    from .safetensors_io import open_checkpoint

    path = checkpoint_path(folder, run_id)
    if not path.exists():
        return 0
    try:
        with open_checkpoint(path) as stored:
            return parse_metadata(stored.metadata).epoch
    except (VAEStudioError, FieldError, OSError):
        return 0


def requeue_counted(folder: Path, run_id: str, max_requeues: int) -> int | None:
    """The run's count of requeues without progress once it is requeued now (unchanged when its job
    saved a newer epoch than it began with); None when that would pass `max_requeues`."""
    state = _fresh(folder, ExecutorState(run_id, "slurm", "running"))
    attempts = state.attempts + (saved_epoch(folder, run_id) <= state.start_epoch)
    return attempts if attempts <= max_requeues else None


def give_up(folder: Path, run_id: str, what: str) -> ExecutorState:
    """The run leaves the queue, failed after too many requeues without a new epoch."""
    run_queue.cancel(folder, run_id)
    run_queue.release(folder, run_id)
    epoch = saved_epoch(folder, run_id)
    return update_state(
        folder,
        run_id,
        keep=ENDED_STATES,
        state="failed",
        reason=f"{what} again without saving a new epoch (still {epoch}): not requeued; "
        "raise time_min, or resume it from its checkpoint",
    )


def data_for_jobs(data: str) -> tuple[str, str | None]:
    """The data reference a run's SLURM job is given, and the one file or folder it may open: a built-in
    dataset as it is (None: nothing to open), a path as its real absolute path. A job starts in another
    directory, on another node, and opens no path but one given here (data.resolve_data_reference)."""
    from .data import dataset_names

    if data in dataset_names():
        return data, None
    real = os.path.realpath(data)
    return real, real


def node_name() -> str:
    return os.environ.get("SLURMD_NODENAME") or socket.gethostname()


def train_queued_run(folder: Path, run_id: str, upload_root: Path | None = None) -> str:
    """Train queued run `run_id` of `folder` to its end, in this process; its status at the end, or
    "busy" (another process trains it) or "gone" (it left the queue: cancelled, or ended)."""
    from .worker import training_job

    lock = run_queue.RunLock(folder, run_id)
    if not lock.acquire():
        return "busy"
    try:
        run = run_queue.claim(folder, run_id) or run_queue.claim_again(folder, run_id)
        if run is None:
            return "gone"
        # Watched from before "running" is written: a stop sent by whoever reads "running" (a person's
        # cancel, the Train page's Stop) while the job loads its data is seen as new, and obeyed at once.
        commands = CommandFile(folder, run_id)
        started = update_state(
            folder,
            run_id,
            keep=("cancelled",),  # cancelled as it claimed the run: "running" would hide that
            state="running",
            job_id=os.environ.get("SLURM_JOB_ID"),
            node=node_name(),
            start_epoch=saved_epoch(folder, run_id),
        )
        if started.state == "cancelled":
            run_queue.release(folder, run_id)
            return "gone"
        try:
            job = training_job(folder, run, upload_root)
        except VAEStudioError as error:
            run_queue.release(folder, run_id)
            update_state(folder, run_id, keep=("cancelled",), state="failed", reason=str(error).splitlines()[0][:300])
            return "failed"
        job.start()
        while True:
            for name, value in commands.new_commands():
                apply_command(job, name, value)
            if job.wait(COMMAND_POLL_S):
                break
        commands.remove()
        run_queue.release(folder, run_id)
        status = job.status if job.status in ("finished", "stopped", "failed") else "failed"
        message = job.snapshot().message if status == "failed" else None
        # A person's cancel, which stopped it, stays the run's last word
        update_state(folder, run_id, keep=("cancelled",), state=status, reason=(message or "")[:300] or None)
        return status
    finally:
        lock.release()


def apply_command(job, name: str, value) -> None:
    """A command of the run's file, as a run process obeys it (a stale or refused one is dropped)."""
    try:
        if name in ("pause", "resume", "stop"):
            getattr(job, name)()
        elif name == "lr":
            job.set_lr(value)
        elif name == "beta":
            job.set_beta(value)
    except VAEStudioError:
        pass


class SlurmQueue:
    """A server's (or the CLI's) side of the SLURM executor on checkpoints folder `folder`."""

    def __init__(
        self, folder: str | Path, settings: SlurmSettings | None = None, upload_root: str | Path | None = None
    ):
        self.folder = Path(folder).resolve()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.settings = settings or load_slurm_settings(self.folder)
        self.upload_root = str(Path(upload_root).resolve()) if upload_root else None
        self.jobs_folder = self.folder / SUBMITIT_FOLDER
        try:
            # submitit counts every time-out; ours count only those without progress (SlurmRun.checkpoint),
            # and a run makes progress at most once per epoch.
            self.executor = submitit.SlurmExecutor(
                folder=self.jobs_folder, max_num_timeout=limits().max_epochs + self.settings.max_requeues
            )
        except RuntimeError:
            raise TrainingError(
                "VAE_STUDIO_EXECUTOR=slurm, but there is no srun here: run the studio where SLURM's commands are"
            ) from None
        # The job imports this package where it stands (a folder every node sees), before the operator's setup.
        python_path = f"export PYTHONPATH={PACKAGE_ROOT}" + "${PYTHONPATH:+:$PYTHONPATH}"
        self.executor.update_parameters(
            job_name="vae-studio", setup=[python_path, *self.settings.setup], **self.settings.sbatch_parameters()
        )
        self.watcher = SlurmInfoWatcher(delay_s=int(FOLLOW_EVERY_S))
        self._follow_lock = run_queue.FileLock(self.folder / ".slurm-follow.lock")

    # -- queueing --------------------------------------------------------------------------------------
    def queue(self, configs: list[TrainConfig], names: list[str] | None = None, owner: str | None = None) -> list[str]:
        """Put each config in the queue for SLURM, then submit their jobs together; their run ids. All
        or none: TrainingError when they would pass the owner's limit of waiting runs (config.Limits),
        whichever door they came by (the app's forms, `sweep`, `experiment`)."""
        run_queue.check_queue_room(self.waiting_count(owner), owner, adding=len(configs))
        run_ids = []
        for index, config in enumerate(configs):
            run_id = new_run_id()
            name = (names[index] if names else None) or default_run_name(config)
            run = run_queue.QueuedRun(
                run_id, config, name, owner, SLURM_DEVICE, run_queue.next_order(), executor="slurm"
            )
            update_state(self.folder, run_id, state="queued here", owner=owner)
            run_queue.enqueue(self.folder, run)
            run_ids.append(run_id)
        for run_id in run_ids:
            self.submit(run_id)
        return run_ids

    def submit(self, run_id: str, **changes) -> ExecutorState:
        """Submit the job of queued (or claimed, to resume) run `run_id`; its state, pending."""
        job = self.executor.submit(SlurmRun(str(self.folder), run_id, self.upload_root, self.settings.max_requeues))
        return update_state(
            self.folder,
            run_id,
            keep=ENDED_STATES,  # cancelled as it was submitted again: its job finds nothing to claim
            state="pending",
            job_id=str(job.job_id),
            node=None,
            start_epoch=saved_epoch(self.folder, run_id),
            **changes,
        )

    # -- following the scheduler -------------------------------------------------------------------------
    def follow(self) -> dict[str, ExecutorState]:
        """Bring every active run's state in line with the scheduler's (one sacct for them all):
        running on its node, requeued, or ended; a run whose job died unfinished is submitted again
        (up to max_requeues), one whose job was cancelled outside leaves the queue. One server of the
        folder follows at a time, so a dead job is submitted again once. Returns the states."""
        states = states_in(self.folder)
        if not self._follow_lock.acquire():
            return states
        try:
            active = {run_id: s for run_id, s in states.items() if s.active}
            for state in active.values():
                if state.job_id:
                    self.watcher.register_job(state.job_id)
            if any(state.job_id for state in active.values()):
                self.watcher.update_if_long_enough("standard")  # sacct at most every FOLLOW_EVERY_S
            for run_id, state in active.items():
                states[run_id] = self._followed(state)
        finally:
            self._follow_lock.release()
        return states

    def _followed(self, state: ExecutorState) -> ExecutorState:
        run_id = state.run_id
        if not state.job_id:
            orphan = time.time() - state.updated > ORPHAN_AFTER_S
            if not (orphan and self._unfinished(run_id)):
                return state
            return self._submit_again(state, "its submitter died before submitting it", reason=None)
        info = self.watcher.get_info(state.job_id, mode="cache")
        scheduler = (info.get("State") or "").split(" ")[0].upper()
        current = _fresh(self.folder, state)  # the job may have written meanwhile
        if not current.active or current.job_id != state.job_id or not scheduler:
            return current
        if scheduler == "RUNNING" and current.state != "running":
            return update_state(
                self.folder, run_id, keep=ENDED_STATES, state="running", node=_node(info.get("NodeList"))
            )
        if scheduler in WAITING and current.state == "running":
            return update_state(
                self.folder,
                run_id,
                keep=ENDED_STATES,
                state="pending",
                node=None,
                reason=f"{scheduler.lower()} in SLURM",
            )
        if scheduler == "CANCELLED":
            self._leave_queue(run_id)
            return update_state(self.folder, run_id, keep=ENDED_STATES, state="cancelled", reason="cancelled in SLURM")
        if scheduler in DIED:
            ended = f"job {state.job_id} ended {scheduler}"
            if not self._unfinished(run_id):
                return update_state(self.folder, run_id, keep=ENDED_STATES, state="failed", reason=ended)
            retry = requeue_counted(self.folder, run_id, self.settings.max_requeues)
            if retry is None:
                return give_up(self.folder, run_id, ended)
            return self._submit_again(current, ended, reason=f"submitted again after {ended}", attempts=retry)
        return current

    def _submit_again(self, current: ExecutorState, why: str, **changes) -> ExecutorState:
        """Submit run `current.run_id`'s job (again: `why` says what happened), with its state's `changes`,
        if a job this queue submits may open the run's data. A sweep's data file is given to its jobs by
        the sweep's own queue (data_for_jobs); another process following the folder, such as the app's
        server, may give only what it allows. Such a run is left for ORPHAN_AFTER_S to a process that may
        (the sweep's, still following), then leaves the queue, failed, saying what to do."""
        run_id = current.run_id
        if self._may_give_its_data(run_id):
            return self.submit(run_id, **changes)
        waiting = f"{why}; left to a process that may give its job its data file"
        if current.reason != waiting:
            return update_state(self.folder, run_id, keep=ENDED_STATES, reason=waiting)
        if time.time() - current.updated < ORPHAN_AFTER_S:
            return current
        self._leave_queue(run_id)
        return update_state(
            self.folder,
            run_id,
            keep=ENDED_STATES,
            state="failed",
            reason=f"{why}, and no process that may give its job its data file submitted it again: queue it "
            "again with that file, or resume its checkpoint with it (vae-studio train --resume CHECKPOINT --data FILE)",
        )

    def _may_give_its_data(self, run_id: str) -> bool:
        """Whether a job of this queue could open run `run_id`'s data: the job's own check (worker.py)."""
        from .data import resolve_data_reference

        for path in (run_queue.queued_path(self.folder, run_id), run_queue.claimed_path(self.folder, run_id)):
            try:
                run = run_queue.read_queued(path)
            except UnreadableFile:
                continue
            try:
                resolve_data_reference(run.config.data, [self.upload_root] if self.upload_root else [])
                return True
            except DataError:
                return False
        return False

    def _unfinished(self, run_id: str) -> bool:
        return (
            run_queue.queued_path(self.folder, run_id).exists() or run_queue.claimed_path(self.folder, run_id).exists()
        )

    def _leave_queue(self, run_id: str) -> None:
        run_queue.cancel(self.folder, run_id)
        run_queue.release(self.folder, run_id)

    def wait(self, run_ids: list[str], on_end=None, timeout: float | None = None) -> dict[str, ExecutorState]:
        """Follow until every run of `run_ids` has ended; `on_end(state)` as each ends."""
        began, reported = time.monotonic(), set()
        while True:
            states = self.follow()
            for run_id in run_ids:
                state = states.get(run_id)
                if state is not None and not state.active and run_id not in reported:
                    reported.add(run_id)
                    if on_end is not None:
                        on_end(state)
            if len(reported) == len(run_ids):
                return {run_id: states[run_id] for run_id in run_ids}
            if timeout is not None and time.monotonic() - began > timeout:
                raise TrainingError(f"{len(run_ids) - len(reported)} SLURM runs had not ended after {timeout:.0f} s")
            time.sleep(FOLLOW_EVERY_S / 4)

    def waiting_count(self, owner: str | None) -> int:
        """How many runs of `owner` (None: the shared ones) wait: queued here, or pending in SLURM."""
        return sum(run.owner == owner for state, run in self.active_runs() if state.waiting)

    def place(self, run_id: str) -> ExecutorState | None:
        """Where run `run_id` is in SLURM's eyes; None for a run never sent there (or unreadable)."""
        try:
            return read_state(state_path(self.folder, run_id))
        except UnreadableFile:
            return None

    def active_runs(self) -> list[tuple[ExecutorState, run_queue.QueuedRun]]:
        """The runs of the folder not ended yet in SLURM's eyes, with their queue records (name,
        owner, config), oldest first: what the Runs page's queue view lists."""
        found = []
        for state in states_in(self.folder).values():
            if not state.active:
                continue
            for path in (
                run_queue.queued_path(self.folder, state.run_id),
                run_queue.claimed_path(self.folder, state.run_id),
            ):
                try:
                    found.append((state, run_queue.read_queued(path)))
                    break
                except UnreadableFile:
                    continue
        return sorted(found, key=lambda pair: pair[1].order)

    # -- commands ------------------------------------------------------------------------------------------
    def cancel(self, run_id: str) -> ExecutorState:
        """Take the run out of the queue and cancel its job (scancel), pending or running. The run is
        asked to stop too: SLURM's SIGTERM does not end a submitit job (it waits for KillWait's SIGKILL),
        the stop command has it save and end cleanly before that, even when its job was claiming the
        run as the cancel read "pending". The state is changed under its lock (update_state): a job
        writes "running" only over a state that is not "cancelled", a cancel writes over no end."""
        state = _fresh(self.folder, ExecutorState(run_id, "slurm", "queued here"))
        cancelled = update_state(
            self.folder, run_id, keep=ENDED_STATES, state="cancelled", reason="cancelled by a person"
        )
        if cancelled.state != "cancelled":
            return cancelled  # it had ended (or ended as the cancel came): its own end stays its word
        self._leave_queue(run_id)
        if state.active:  # "pending" too: its job may be claiming the run now, watching for commands
            send_command(self.folder, run_id, "stop")
        if state.job_id and state.active:
            SlurmJob(folder=self.jobs_folder, job_id=state.job_id).cancel(check=False)
        return cancelled

    def stop(self, run_id: str) -> None:
        """A running job stops at its next batch, saving; a job not started yet is cancelled."""
        state = _fresh(self.folder, ExecutorState(run_id, "slurm", "queued here"))
        if state.state == "running":
            send_command(self.folder, run_id, "stop")
        elif state.active:
            self.cancel(run_id)


def _fresh(folder: Path, fallback: ExecutorState) -> ExecutorState:
    try:
        return read_state(state_path(folder, fallback.run_id))
    except UnreadableFile:
        return fallback


def _node(node_list: str | None) -> str | None:
    return node_list if node_list and node_list.lower() not in ("none assigned", "(null)") else None
