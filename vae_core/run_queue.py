"""The durable queue of a checkpoints folder: runs waiting for their device, one small file each.

So the queue outlives the server that filled it, and every server on the folder sees the same one.

- A waiting run is `<run id>.queued.json`: its config, name, owner, device and place (`order`).
- The process that trains it first takes the device's lock (`.device-<device>.lock`, an flock the
  kernel drops when that process dies, however it dies), then renames the file to
  `<run id>.claimed.json`. A rename is atomic, so of two servers asking for the same run one wins,
  and none trains it twice. The claimed file is deleted when the run has ended.
- A claimed file whose device lock nobody holds belongs to a run whose process died (a kill, a power
  cut): `recover_interrupted` puts it back at the head of the queue, and it resumes from the last
  checkpoint it saved (an exact resume: no finished epoch is lost).

Nothing read from these files chooses where a file is written: names come from the checked run id.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from .atomic_files import write_atomically
from .checkpoint_fields import is_valid_owner, parse_config
from .config import TrainConfig
from .errors import TrainingError
from .file_lock import FileLock
from .run_ids import check_run_id, is_valid_run_id
from .safe_files import FieldError, UnreadableFile, read_record

QUEUED_SUFFIX = ".queued.json"
CLAIMED_SUFFIX = ".claimed.json"
QUEUE_FORMAT = "vae-studio-queued-run"
MAX_QUEUE_RECORD_BYTES = 64 * 1024
MAX_ATTEMPTS = 3  # a run interrupted this often (its process killed each time) is left for a person to resume
EXECUTORS = ("local", "slurm")
_DEVICE_NAME = re.compile(r"[a-z]+(:\d{1,3})?")


def check_queue_room(waiting: int, owner: str | None, adding: int = 1) -> None:
    """config.Limits.max_queued_per_person: TrainingError when `adding` more runs of `owner` (None: the
    shared ones) would wait beyond it, `waiting` of theirs waiting already (here or pending in SLURM)."""
    from .config import limits

    most = limits().max_queued_per_person
    if waiting + adding <= most:
        return
    whose = " for you" if owner else ""
    if adding == 1:
        problem = f"{most} runs already wait in the queue{whose}"
    else:
        problem = f"{adding} more runs would pass the limit of {most} waiting in the queue{whose} ({waiting} wait)"
    raise TrainingError(f"{problem} (VAE_STUDIO_MAX_QUEUED_PER_PERSON): let some finish, or cancel some first")


@dataclass(frozen=True)
class QueuedRun:
    run_id: str
    config: TrainConfig
    name: str
    owner: str | None
    device: str  # resolved when it was queued: "cpu", "cuda:0", ...
    order: float  # smaller starts first
    attempts: int = 0  # times a process began it and died
    executor: str = "local"  # where it trains: "local" (a device lock of this machine) or "slurm" (a job)

    def to_json(self) -> dict:
        return {
            "format": QUEUE_FORMAT,
            "run_id": self.run_id,
            "config": self.config.to_dict(),
            "name": self.name,
            "owner": self.owner,
            "device": self.device,
            "order": self.order,
            "attempts": self.attempts,
            "executor": self.executor,
        }


def queued_path(folder: str | Path, run_id: str) -> Path:
    return Path(folder) / f"{check_run_id(run_id)}{QUEUED_SUFFIX}"


def claimed_path(folder: str | Path, run_id: str) -> Path:
    return Path(folder) / f"{check_run_id(run_id)}{CLAIMED_SUFFIX}"


def enqueue(folder: str | Path, run: QueuedRun) -> None:
    """Write `run` into the queue; TrainingError when that run id is already queued or training."""
    if claimed_path(folder, run.run_id).exists():
        raise TrainingError(f"run {run.run_id} is already training")
    try:
        write_atomically(queued_path(folder, run.run_id), _encode(run), overwrite=False)
    except FileExistsError:
        raise TrainingError(f"run {run.run_id} is already queued") from None


def _encode(run: QueuedRun) -> bytes:
    import json

    return json.dumps(run.to_json()).encode()


def read_queued(path: str | Path) -> QueuedRun:
    """A queue file, checked field by field; UnreadableFile names the file and the problem."""
    return read_record(path, MAX_QUEUE_RECORD_BYTES, QUEUE_FORMAT, _queued_of)


def _queued_of(record: dict, name: str) -> QueuedRun:
    run_id, owner, device = record.get("run_id"), record.get("owner"), record.get("device")
    if not is_valid_run_id(run_id) or not name.startswith(run_id + "."):
        raise FieldError("its run_id is not the file's own")
    if owner is not None and not is_valid_owner(owner):
        raise FieldError("its owner is not an owner id")
    if not isinstance(device, str) or not _DEVICE_NAME.fullmatch(device):
        raise FieldError("its device is not a device name")
    order, attempts, run_name = record.get("order"), record.get("attempts", 0), record.get("name")
    if not isinstance(order, (int, float)) or isinstance(order, bool) or not -1e12 < order < 1e12:
        raise FieldError("its order is not a number")
    if not isinstance(attempts, int) or isinstance(attempts, bool) or not 0 <= attempts <= MAX_ATTEMPTS:
        raise FieldError(f"its attempts are not a count from 0 to {MAX_ATTEMPTS}")
    if not isinstance(run_name, str) or not 0 < len(run_name) <= 200:
        raise FieldError("its name is not text")
    executor = record.get("executor", "local")
    if executor not in EXECUTORS:
        raise FieldError(f"its executor is not one of {', '.join(EXECUTORS)}")
    config = parse_config(record.get("config"))  # a config its own checks refuse is a FieldError too
    return QueuedRun(run_id, config, run_name, owner, device, float(order), attempts, executor)


def waiting(folder: str | Path, device: str | None = None, executor: str = "local") -> list[QueuedRun]:
    """The runs waiting in `folder` for `executor` (for `device`, or for any), next first. An
    unreadable queue file is skipped: it is nobody's run until a person looks at it."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    runs = []
    for entry in os.scandir(folder):
        if entry.name.endswith(QUEUED_SUFFIX) and is_valid_run_id(entry.name.removesuffix(QUEUED_SUFFIX)):
            try:
                run = read_queued(entry.path)
            except UnreadableFile:
                continue
            if (device is None or run.device == device) and run.executor == executor:
                runs.append(run)
    return sorted(runs, key=lambda run: (run.order, run.run_id))


def claim(folder: str | Path, run_id: str) -> QueuedRun | None:
    """Take a waiting run out of the queue to train it (the caller holds its device's lock); None when
    it is no longer waiting (another process took it, or it was cancelled) or its file is unreadable."""
    source, target = queued_path(folder, run_id), claimed_path(folder, run_id)
    try:
        os.rename(source, target)
    except FileNotFoundError:
        return None
    try:
        return read_queued(target)
    except UnreadableFile:
        target.unlink(missing_ok=True)
        return None


def claim_again(folder: str | Path, run_id: str) -> QueuedRun | None:
    """The claim of a run whose earlier job died (a SLURM job requeued or submitted again), taken by
    the caller, which holds the run's RunLock: the run with one more attempt, or None when it has no
    claim left (it ended, or was cancelled) or its attempts are spent."""
    path = claimed_path(folder, run_id)
    try:
        run = read_queued(path)
    except UnreadableFile:
        return None
    if run.attempts + 1 > MAX_ATTEMPTS:
        return None
    run = _with(run, attempts=run.attempts + 1)
    try:
        write_atomically(path, _encode(run))
    except OSError:
        return None
    return run


def release(folder: str | Path, run_id: str) -> None:
    """The run has ended: it leaves the queue for good."""
    claimed_path(folder, run_id).unlink(missing_ok=True)


def cancel(folder: str | Path, run_id: str) -> bool:
    """Take a waiting run out of the queue; False when it was not waiting (already started or gone)."""
    try:
        queued_path(folder, run_id).unlink()
        return True
    except FileNotFoundError:
        return False


def reorder(folder: str | Path, run_ids: list[str]) -> None:
    """Give the waiting runs `run_ids` the places of their order in that list (the others keep theirs)."""
    current = {run.run_id: run for run in waiting(folder)}
    orders = sorted(current[run_id].order for run_id in run_ids if run_id in current)
    for run_id, order in zip([r for r in run_ids if r in current], orders):
        run = current[run_id]
        if run.order != order:
            with contextlib.suppress(OSError):
                write_atomically(queued_path(folder, run_id), _encode(_with(run, order=order)))


def _with(run: QueuedRun, **changes) -> QueuedRun:
    from dataclasses import replace

    return replace(run, **changes)


def next_order() -> float:
    """The place of a run queued now: after every run queued before it, on any server of the folder."""
    return time.time()


class DeviceLock(FileLock):
    """One training process per device of a machine, across every server and worker on the folder."""

    def __init__(self, folder: str | Path, device: str):
        if not _DEVICE_NAME.fullmatch(device):
            raise TrainingError(f"{device!r} is not a device name")
        super().__init__(Path(folder) / f".device-{device.replace(':', '-')}.lock")


class RunLock(FileLock):
    """Held by the one process training run `run_id` wherever it runs (a SLURM job on any node of a
    shared folder): a second job of the same run finds it held and leaves the run alone."""

    def __init__(self, folder: str | Path, run_id: str):
        super().__init__(Path(folder) / f".run-{check_run_id(run_id)}.lock")


def recover_interrupted(folder: str | Path) -> list[str]:
    """Put each run whose training process died back at the head of the queue, to resume from its
    last checkpoint; after MAX_ATTEMPTS deaths it is left out (its files stay, and a person may resume
    it). Returns the run ids requeued."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    requeued = []
    for entry in os.scandir(folder):
        run_id = entry.name.removesuffix(CLAIMED_SUFFIX)
        if run_id == entry.name or not is_valid_run_id(run_id):
            continue
        try:
            run = read_queued(entry.path)
        except UnreadableFile:
            continue
        if run.executor != "local" or DeviceLock(folder, run.device).held_by_a_process():
            continue  # its process (or another on that device) is alive; a SLURM job's is followed by its scheduler
        path = claimed_path(folder, run_id)
        if run.attempts + 1 >= MAX_ATTEMPTS:
            path.unlink(missing_ok=True)
            continue
        head = min((r.order for r in waiting(folder, run.device)), default=run.order)
        try:
            write_atomically(path, _encode(_with(run, order=min(head, run.order) - 1, attempts=run.attempts + 1)))
            os.rename(path, queued_path(folder, run_id))
        except OSError:
            continue
        requeued.append(run_id)
    return requeued
