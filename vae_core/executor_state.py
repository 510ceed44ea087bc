"""Where a queued run is in the eyes of its executor: `<run id>.executor.json` in the run store.

Written by whoever learns something new (the submitter, the job itself, the follower that asks the
scheduler), read by the Runs page's queue view and the CLI.

    queued here     in the folder's queue, no job yet
    pending         submitted; SLURM has not started it (job id known)
    running         on node X (job id known)
    finished, stopped, failed, cancelled   ended; `reason` says why a run failed, in the scheduler's words

Every field read back is checked (the file may be anything someone put in the folder).
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from .atomic_files import write_atomically
from .checkpoint_fields import owner_id
from .file_lock import FileLock
from .run_ids import check_run_id, is_valid_run_id
from .safe_files import FieldError, UnreadableFile, read_record

STATE_SUFFIX = ".executor.json"
STATE_FORMAT = "vae-studio-executor-state"
MAX_STATE_BYTES = 16 * 1024
STATE_LOCK_TIMEOUT_S = 10.0  # a read and a write of a 16 KiB file; longer is a stuck filesystem
STATES = ("queued here", "pending", "running", "finished", "stopped", "failed", "cancelled")
ACTIVE_STATES = ("queued here", "pending", "running")
ENDED_STATES = tuple(state for state in STATES if state not in ACTIVE_STATES)
_JOB_ID = re.compile(r"\d{1,12}(_\d{1,7})?")
_NODE = re.compile(r"[A-Za-z0-9_.,\[\]-]{1,200}")


@dataclass(frozen=True)
class ExecutorState:
    run_id: str
    executor: str  # "slurm"
    state: str
    job_id: str | None = None
    node: str | None = None
    reason: str | None = None
    attempts: int = 0  # requeues without progress (slurm_executor.py): those the retry limit counts
    updated: float = 0.0
    start_epoch: int = 0  # the run's saved epochs when its latest job began: a requeue past it made progress
    # Whose run it is (None: a shared run), kept here because a run whose job failed before writing any
    # record leaves the queue with nothing else naming its owner: the Train page says why it failed to
    # its owner alone.
    owner: str | None = None

    @property
    def active(self) -> bool:
        """Not ended yet: queued here, pending or running."""
        return self.state in ACTIVE_STATES

    @property
    def waiting(self) -> bool:
        """Not training yet: queued here, or pending in SLURM (again, after a requeue)."""
        return self.state in ("queued here", "pending")

    def text(self) -> str:
        """What the queue view shows: "pending in SLURM (job 12)", "running on node-3 (job 12)"."""
        job = f" (job {self.job_id})" if self.job_id else ""
        if self.state == "pending":
            shown = f"pending in SLURM{job}"
        elif self.state == "running":
            shown = f"running on {self.node or 'a node'}{job}"
        else:
            shown = f"{self.state}{job}"
        return f"{shown}: {self.reason}" if self.reason else shown


def state_path(folder: str | Path, run_id: str) -> Path:
    return Path(folder) / f"{check_run_id(run_id)}{STATE_SUFFIX}"


def write_state(folder: str | Path, state: ExecutorState) -> ExecutorState:
    state = replace(state, updated=time.time())
    write_atomically(state_path(folder, state.run_id), json.dumps({"format": STATE_FORMAT, **asdict(state)}).encode())
    return state


def update_state(folder: str | Path, run_id: str, *, keep: tuple[str, ...] = (), **changes) -> ExecutorState:
    """The run's state with `changes`, written (a run with no record yet starts one for SLURM), unless
    its state now is one of `keep`: then it is returned as it is. Read and written under the run's
    state lock, so of two writers (a job on a node writing "running", a person's cancel) neither
    writes over a word of the other's it has not read."""
    with FileLock(Path(folder) / f".state-{check_run_id(run_id)}.lock").held(STATE_LOCK_TIMEOUT_S):
        try:
            current = read_state(state_path(folder, run_id))
        except UnreadableFile:
            current = ExecutorState(run_id, "slurm", "queued here")
        return current if current.state in keep else write_state(folder, replace(current, **changes))


def read_state(path: str | Path) -> ExecutorState:
    """A state file, checked field by field; UnreadableFile names the file and the problem."""
    return read_record(path, MAX_STATE_BYTES, STATE_FORMAT, _state_of)


def _state_of(record: dict, name: str) -> ExecutorState:
    run_id = record.get("run_id")
    if not is_valid_run_id(run_id) or name != f"{run_id}{STATE_SUFFIX}":
        raise FieldError("its run_id is not the file's own")
    if record.get("executor") != "slurm" or record.get("state") not in STATES:
        raise FieldError("its executor or state is not one of ours")
    job_id, node, reason = record.get("job_id"), record.get("node"), record.get("reason")
    if job_id is not None and not (isinstance(job_id, str) and _JOB_ID.fullmatch(job_id)):
        raise FieldError("its job_id is not a SLURM job id")
    if node is not None and not (isinstance(node, str) and _NODE.fullmatch(node)):
        raise FieldError("its node is not a node name")
    if reason is not None and not (isinstance(reason, str) and len(reason) <= 500 and reason.isprintable()):
        raise FieldError("its reason is not a line of text")
    attempts, updated, start_epoch = record.get("attempts"), record.get("updated"), record.get("start_epoch", 0)
    if not isinstance(attempts, int) or isinstance(attempts, bool) or not 0 <= attempts <= 100:
        raise FieldError("its attempts are not a count")
    if not isinstance(start_epoch, int) or isinstance(start_epoch, bool) or not 0 <= start_epoch <= 10**6:
        raise FieldError("its start_epoch is not a count")
    if not isinstance(updated, (int, float)) or isinstance(updated, bool) or not 0 <= updated < 1e11:
        raise FieldError("its updated time is not a time")
    owner = owner_id(record.get("owner"), "its owner")
    return ExecutorState(
        run_id, "slurm", record["state"], job_id, node, reason, attempts, float(updated), start_epoch, owner
    )


def states_in(folder: str | Path) -> dict[str, ExecutorState]:
    """Every readable executor state of `folder`, by run id (an unreadable one is nobody's)."""
    folder = Path(folder)
    found = {}
    if not folder.is_dir():
        return found
    for entry in os.scandir(folder):
        run_id = entry.name.removesuffix(STATE_SUFFIX)
        if run_id != entry.name and is_valid_run_id(run_id):
            try:
                found[run_id] = read_state(entry.path)
            except UnreadableFile:
                continue
    return found
