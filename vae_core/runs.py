"""The run store: the runs of a checkpoints folder, listed from what their files say.

Runs are named distinctly, relabelled (name, notes), and followed live while another process trains
them.

A run is `<run id>.safetensors` (its checkpoint, rewritten at every epoch end) and, while a process
outside the app trains it (the CLI, later torchrun), `<run id>.progress.json` beside it: a light
record rewritten a few times a second (step, epoch, recent loss points, samples/s, pid, heartbeat),
as TensorBoard follows an event file. Listing reads only the checkpoints' headers (no tensor is
loaded) and caches them by size and modification time, so a page may list a folder every second.

Run ids are file stems that pass run_ids.check_run_id; nothing read from a file (an id, a name, a
path) chooses where a file is written: the folder is the caller's, the file name the checked id.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import functools
import json
import math
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .atomic_files import write_atomically
from .checkpoint_fields import (
    MAX_NAME_CHARS,
    MAX_NOTES_CHARS,
    MAX_SHORT_TEXT,
    parse_config,
    past_time,
    printable_text,
    text,
)
from .errors import CheckpointError, ConfigError, TrainingError, VAEStudioError
from .latest_worker import LatestWorker
from .run_ids import check_run_id, is_valid_run_id
from .run_index import FileIndex
from .safe_files import FieldError, UnreadableFile, opened_regular_file, read_record

CHECKPOINTS_ENV = "VAE_STUDIO_CHECKPOINTS"  # the app's folder, and the CLI's default one
CHECKPOINT_SUFFIX = ".safetensors"
PROGRESS_SUFFIX = ".progress.json"
PROGRESS_FORMAT = "vae-studio-progress"
PROGRESS_INTERVAL_S = 0.5  # the writer's pace: live enough for a chart, cheap for the trainer
STALE_AFTER_S = 120.0  # no heartbeat for this long (an epoch's evaluation included): no sign of life
MAX_PROGRESS_BYTES = 1 << 20
MAX_REMEMBERED_RECORDS = 200_000
QUIET_FOLDER_NS = 1_000_000_000
SUMMARY_FORMAT = 2  # the shape of what run_index keeps of a file: raise it when a summary gains a field
MAX_PID = 1 << 22  # Linux's largest pid_max
MAX_POINTS = 600  # loss points a record keeps; older ones are merged in pairs as the run grows
# A point's wall time is the run's clock (history.RunClock) at its step: a resumed run's goes on.
POINT_FIELDS = ("step", "wall", "total", "recon", "kl")
ENDED_STATUSES = ("finished", "stopped", "failed")
# What the store may say of a run: a file's statuses, plus what it infers about a record's writer.
KILLED, STALE = "killed", "stale"
_TIMESTAMPED_ID = re.compile(r"\d{8}-\d{6}-")


def default_checkpoint_dir() -> Path:
    """The app's checkpoints folder, where `train` writes and `runs` looks by default, so a run the CLI
    trains shows up in the app: $VAE_STUDIO_CHECKPOINTS; else, when vae_core sits in the source
    checkout that `make run` serves (app.py beside it), that checkout's `checkpoints`; else
    `checkpoints` in the current folder."""
    configured = os.environ.get(CHECKPOINTS_ENV)
    if configured:
        return Path(configured)
    checkout = Path(__file__).resolve().parents[1]
    return checkout / "checkpoints" if (checkout / "app.py").is_file() else Path("checkpoints")


def checkpoint_path(folder: str | Path, run_id: str) -> Path:
    return Path(folder) / f"{check_run_id(run_id)}{CHECKPOINT_SUFFIX}"


def progress_path(checkpoint: str | Path) -> Path:
    """The progress record beside a checkpoint: `<stem>.progress.json`."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.name.removesuffix(CHECKPOINT_SUFFIX) + PROGRESS_SUFFIX)


# -- the progress record ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """A progress record as read back and checked. `points` maps each of POINT_FIELDS to a list."""

    run_id: str
    name: str
    status: str
    pid: int
    host: str
    started: float  # Unix time the writing process began
    heartbeat: float  # Unix time of the last write
    step: int
    total_steps: int
    epoch: int
    epochs: int
    steps_per_epoch: int
    samples_per_s: float
    config: dict
    dataset: str
    points: dict[str, list[float]]
    epoch_metrics: tuple[dict, ...]
    message: str | None = None
    commands: bool = False  # its process obeys the run's command file (run_commands.py): a run process

    def liveness(self, now: float | None = None) -> str:
        """The record's status, or KILLED (its process is gone without saying it ended) or STALE (no
        heartbeat for STALE_AFTER_S) for one that still says it trains."""
        if self.status in ENDED_STATUSES:
            return self.status
        if self.host == socket.gethostname() and not process_alive(self.pid):
            return KILLED
        if (now if now is not None else time.time()) - self.heartbeat > STALE_AFTER_S:
            return STALE
        return self.status


def process_alive(pid: int) -> bool:
    """Whether process `pid` of this machine still runs (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError, ValueError):
        return False
    except PermissionError:
        return True  # it exists; another user's
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True  # no /proc (macOS): the signal said it exists


class ProgressWriter:
    """Keeps `<checkpoint stem>.progress.json` up to date for a trainer that this process drives.

    Make it once the trainer exists; call `update(trainer)` after each flush of the loop (it writes
    at most every PROGRESS_INTERVAL_S), `epoch_end(trainer)` after each epoch and `close(trainer, status)`
    when the run ends. Writes are atomic, so a reader sees the previous record or the new one, never
    half of one; a failed write is skipped (the training matters more than its progress record)."""

    def __init__(
        self,
        checkpoint: str | Path,
        trainer,
        *,
        run_id: str,
        name: str,
        dataset: str,
        commands: bool = False,
        clock=time.time,
    ):
        self.path = progress_path(checkpoint)
        self.run_id, self.dataset, self.commands = run_id, dataset, commands
        self.name = printable_text(name, MAX_NAME_CHARS)  # as the checkpoint stores it
        self._clock = clock
        self._started = clock()
        self._last_write = -math.inf
        self._last_step = int(trainer.step)
        self._rate_window = (self._started, self._last_step)  # (time, step) samples/s is measured from
        self._samples_per_s = 0.0
        self._points = _earlier_points(trainer.history)
        self._file = LatestWorker(
            functools.partial(_write_dropping_failures, self.path), name=f"progress-{self.path.name}"
        )

    def update(self, trainer, *, force: bool = False, status: str = "running") -> None:
        """A new point, and the record written if PROGRESS_INTERVAL_S has passed (a paused run calls it too,
        with status "paused": its heartbeat goes on, so it is not taken for stale)."""
        self._add_point(trainer)
        if force or self._clock() - self._last_write >= PROGRESS_INTERVAL_S:
            self._write(trainer, status)

    def epoch_end(self, trainer, metrics: dict | None = None) -> None:
        self.update(trainer, force=True)

    def close(self, trainer, status: str, message: str | None = None) -> None:
        """The last record, on disk when this returns."""
        self._add_point(trainer)
        self._write(trainer, status, message)
        self._file.close()

    def flush(self) -> None:
        """Wait until the last record handed over is on disk."""
        self._file.flush()

    def _add_point(self, trainer) -> None:
        """One point per call: the mean losses of the steps flushed since the last one."""
        rows = _rows_after(trainer.history, self._last_step)
        if not len(rows):
            return
        now = self._clock()
        self._last_step = int(rows[-1][0])
        _append_point(self._points, float(rows[-1][0]), trainer.history.seconds_trained, rows)
        began, first_step = self._rate_window
        if now > began and self._last_step > first_step:
            rate = (self._last_step - first_step) * trainer.config.batch_size / (now - began)
            self._samples_per_s = rate if self._samples_per_s == 0 else 0.7 * self._samples_per_s + 0.3 * rate
            self._rate_window = (now, self._last_step)

    def _write(self, trainer, status: str, message: str | None = None) -> None:
        now = self._clock()
        record = {
            "format": PROGRESS_FORMAT,
            "run_id": self.run_id,
            "name": self.name,
            "status": status,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": self._started,
            "heartbeat": now,
            "step": int(trainer.step),
            "total_steps": int(trainer.total_steps),
            "epoch": int(trainer.epoch),
            "epochs": int(trainer.config.epochs),
            "steps_per_epoch": int(trainer.steps_per_epoch),
            "samples_per_s": self._samples_per_s,
            "config": trainer.config.to_dict(),
            "dataset": self.dataset,
            "points": self._points,
            "epoch_metrics": [{k: v for k, v in m.items() if k != "kl_per_dim"} for m in trainer.history.epochs],
            "message": message,
            "commands": self.commands,
        }
        self._file.submit(json.dumps(_finite(record)).encode())
        self._last_write = now


def _write_dropping_failures(path: Path, data: bytes) -> None:
    """A progress record's write: atomic, on the writer's own thread (its fsyncs, ~11 ms here, would be
    2-4% of a training thread writing every 0.5 s); a failed write is dropped, since the next replaces
    it and the checkpoint, not its progress record, is what must not be lost."""
    with contextlib.suppress(OSError):
        write_atomically(path, data)


def _rows_after(history, step: int | None):
    """The history's step rows after `step` (all of them when None), reading chunks from the end,
    so each call costs what was added since the last one."""
    import numpy as np

    chunks = []
    for chunk in reversed(history.steps):  # chunks of rows in step order
        if not len(chunk):
            continue
        if step is not None and chunk[-1, 0] <= step:
            break
        chunks.append(chunk if step is None else chunk[chunk[:, 0] > step])
        if step is not None and chunk[0, 0] <= step + 1:
            break
    return np.concatenate(chunks[::-1]) if chunks else np.zeros((0, 6))


def _earlier_points(history) -> dict[str, list[float | None]]:
    """The curve a resumed run already has, in at most MAX_POINTS / 2 points, at the times its clock
    says (None where it has none: a file saved before runs kept one)."""
    import numpy as np

    points: dict[str, list] = {key: [] for key in POINT_FIELDS}
    rows, clock = _rows_after(history, None), history.run_clock()
    for bucket in np.array_split(rows, min(len(rows), MAX_POINTS // 2)) if len(rows) else ():
        step = float(bucket[-1][0])
        seconds = float(clock.at(step)) if clock is not None else math.nan
        _append_point(points, step, seconds if math.isfinite(seconds) else None, bucket)
    return points


def _append_point(points: dict[str, list], step: float, wall: float | None, rows) -> None:
    """A point for `rows` of the history (step, total, recon, kl, ...): their mean losses at `step`.
    Past MAX_POINTS, neighbours are merged two by two, so a long run keeps its whole shape."""
    points["step"].append(step)
    points["wall"].append(wall)
    for index, key in enumerate(("total", "recon", "kl")):
        points[key].append(float(rows[:, 1 + index].mean()))
    if len(points["step"]) > MAX_POINTS:
        for key, values in points.items():
            points[key] = _merged_pairs(values, later=key in ("step", "wall"))


def _merged_pairs(values: list, later: bool) -> list:
    """Neighbours merged two by two (an odd last one stays as it is): a step or a time keeps the
    later of the two, a loss their mean; a missing value (None) yields to the other."""

    def merge(a, b):
        if a is None or b is None:
            return b if a is None else a
        return b if later else (a + b) / 2

    merged = [merge(a, b) for a, b in zip(values[0:-1:2], values[1::2])]
    return merged + values[len(merged) * 2 :]


def _finite(value):
    """JSON without NaN or infinity (a diverging loss), which strict readers refuse."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def read_progress(path: str | Path) -> Progress:
    """A progress record, read by the one safe reader (regular files only, bounded size and nesting)
    and checked field by field; CheckpointError names the file and the problem."""
    try:
        return read_record(path, MAX_PROGRESS_BYTES, PROGRESS_FORMAT, _parse_progress)
    except UnreadableFile as error:
        raise CheckpointError(str(error)) from None


@functools.lru_cache(maxsize=256)
def _cached_progress(path: str, version: tuple[int, int, int]) -> Progress:
    """read_progress, once per version of the file (inode, mtime, size: each atomic write makes a new
    inode): a page lists the folder every second."""
    return read_progress(path)


def _progress_of(index, path: str, version: tuple[int, int, int]) -> Progress:
    """A progress record as a listing needs it. An ended run's never changes again: the index keeps it
    without its curve's points (its checkpoint has the curve), so a folder of thousands of ended runs
    is listed without reading their records; a live one is read whenever it changes."""
    known = index.known(path, version)
    if known is not None:
        return Progress(
            **{**known, "points": {key: [] for key in POINT_FIELDS}, "epoch_metrics": tuple(known["epoch_metrics"])}
        )
    progress = _cached_progress(path, version)
    if progress.status in ENDED_STATUSES:
        light = dataclasses.asdict(progress)
        del light["points"]
        index.remember(path, version, light)
    return progress


def _parse_progress(record: dict, name: str) -> Progress:
    if not is_valid_run_id(record.get("run_id")):
        raise FieldError("its run_id is not a valid run id")
    counts = {
        key: _count(record.get(key), key)
        for key in ("pid", "step", "total_steps", "epoch", "epochs", "steps_per_epoch")
    }
    if not 0 < counts["pid"] <= MAX_PID:
        raise FieldError(f"pid must be a process id, from 1 to {MAX_PID:,}")
    for key in ("started", "heartbeat"):
        past_time(record.get(key), key)
    points = record.get("points")
    if not isinstance(points, dict) or set(points) != set(POINT_FIELDS):
        raise FieldError(f"points must hold exactly {', '.join(POINT_FIELDS)}")
    lengths = {len(values) if isinstance(values, list) else -1 for values in points.values()}
    if len(lengths) != 1 or lengths.pop() not in range(0, 2 * MAX_POINTS + 1):
        raise FieldError(f"points must be lists of one length, at most {2 * MAX_POINTS}")
    metrics = record.get("epoch_metrics")
    if (
        not isinstance(metrics, list)
        or len(metrics) > counts["epochs"]
        or not all(isinstance(m, dict) and len(m) <= 32 for m in metrics)
    ):
        raise FieldError("epoch_metrics must be a list of at most one object per epoch")
    for m in metrics:  # the charts place each epoch's markers by them
        _count(m.get("epoch"), "epoch_metrics.epoch"), _count(m.get("step"), "epoch_metrics.step")
    return Progress(
        run_id=record["run_id"],
        name=text(record.get("name"), "name", MAX_NAME_CHARS),
        status=_one_of(record.get("status"), "status", ("running", "paused", *ENDED_STATUSES)),
        host=text(record.get("host"), "host", MAX_SHORT_TEXT),
        started=_number(record.get("started"), "started"),
        heartbeat=_number(record.get("heartbeat"), "heartbeat"),
        samples_per_s=_number(record.get("samples_per_s"), "samples_per_s"),
        config=parse_config(record.get("config")).to_dict(),
        dataset=text(record.get("dataset"), "dataset", MAX_SHORT_TEXT),
        points={key: [_number(v, f"points.{key}", allow_none=True) for v in values] for key, values in points.items()},
        epoch_metrics=tuple(
            {text(str(k), "an epoch metric's name", 40): _metric(v, k) for k, v in m.items()} for m in metrics
        ),
        message=None if record.get("message") is None else text(record["message"], "message", MAX_NOTES_CHARS),
        commands=record.get("commands") is True,
        **counts,
    )


def _count(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 2**53:
        raise FieldError(f"{where} must be a whole number of at least 0")
    return value


def _number(value: Any, where: str, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise FieldError(f"{where} must be a finite number")
    return float(value)


def _metric(value: Any, key: str) -> int | float | None:
    """An epoch metric as written: a count stays an int (epoch, step, active units)."""
    _number(value, f"epoch_metrics.{key}", allow_none=True)
    return value


def _one_of(value: Any, where: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise FieldError(f"{where} must be one of {', '.join(choices)}")
    return value


# -- listing ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRecord:
    """One run of a folder as a table or a picker shows it. `name` is the stored name, `display_name`
    the name made distinct within the listing; `status` may be KILLED or STALE (see Progress.liveness);
    `live` is True while another process is seen training it."""

    run_id: str
    name: str
    display_name: str
    status: str
    live: bool
    epoch: int
    epochs: int
    step: int
    metrics: dict  # the last epoch's test metrics (kl_per_dim left out)
    config: dict
    dataset: str
    notes: str
    created: str
    mtime: float  # of the newest of its files
    checkpoint: str | None  # its .safetensors, None until its first epoch ends
    progress: Progress | None = None
    changes: tuple = ()  # (name, value) of each live change of lr or β, in order (from its checkpoint)
    imported_from: dict | None = None
    error: str | None = None  # why its checkpoint could not be read (then most fields are empty)
    owner: str | None = None  # its checkpoint's owner id; None for a shared run (and a CLI run's record)

    @property
    def test_neg_elbo(self) -> float | None:
        return self.metrics.get("test_neg_elbo")

    def in_force(self, name: str) -> float | None:
        """The lr or β the run trains with now: its last live change, else its config's."""
        values = [value for key, value in self.changes if key == name]
        return values[-1] if values else self.config.get(name)

    def live_changes(self) -> str:
        """Its live changes of lr and β in a few words ("β 1→4, lr 0.001→0.005"), "" when none."""
        return ", ".join(
            f"{label} {moved}" for label, name in (("β", "beta"), ("lr", "lr")) if (moved := self.changed(name))
        )

    def changed(self, name: str) -> str | None:
        """How a live change moved lr or β ("1→4", "1→4→2"), None when it never changed."""
        values = [value for key, value in self.changes if key == name]
        if not values:
            return None
        first = self.config.get(name)
        return "→".join(f"{value:g}" for value in ([first] if first is not None else []) + values)

    def as_json(self) -> dict:
        """What `vae-studio runs` prints for it."""
        return {
            "run_id": self.run_id,
            "name": self.display_name,
            "stored_name": self.name,
            "status": self.status,
            "live": self.live,
            "epoch": self.epoch,
            "epochs": self.epochs,
            "step": self.step,
            "test_neg_elbo": self.test_neg_elbo,
            "test_recon": self.metrics.get("test_recon"),
            "test_kl": self.metrics.get("test_kl"),
            "active_units": self.metrics.get("active_units"),
            "samples_per_s": self.progress.samples_per_s if self.live else None,
            "model": self.config.get("model"),
            "dataset": self.dataset,
            "config": self.config,
            "notes": self.notes,
            "created": self.created,
            "mtime": self.mtime,
            "checkpoint": self.checkpoint,
            "error": self.error,
        }


def _checkpoint_summary(path: str) -> dict:
    """What a checkpoint's header says (no tensor is read), or {"error": why it cannot be read}; kept
    per version of the file by run_index.FileIndex."""
    from .checkpoint_fields import parse_metadata
    from .safetensors_io import open_checkpoint

    try:
        with open_checkpoint(path) as stored:
            meta = parse_metadata(stored.metadata)
    except FieldError as error:
        return {"error": f"{Path(path).name}: {error}"}
    except VAEStudioError as error:
        return {"error": str(error)}
    last = meta.epochs[-1] if meta.epochs else {}
    return {
        "name": meta.name or "",
        "notes": meta.notes,
        "status": meta.status,
        "created": meta.created,
        "epoch": meta.epoch,
        "epochs": meta.config.epochs,
        "step": meta.step,
        "config": meta.config.to_dict(),
        "dataset": meta.dataset_name,
        "imported_from": meta.imported_from,
        "owner": meta.owner,
        "metrics": {k: v for k, v in last.items() if k != "kl_per_dim"},
        "lr": meta.lr,
        "beta": meta.beta,
        "changes": [[e["name"], e["value"]] for e in meta.events if e.get("name") in ("lr", "beta")][-64:],
    }


def read_run(
    folder: str | Path, run_id: str, *, now: float | None = None, index: FileIndex | None = None
) -> RunRecord | None:
    """One run of `folder` (its checkpoint header and its progress record), None if it has neither.
    A listing passes its `index`, so the headers it has to parse are indexed in one transaction."""
    folder, run_id = Path(folder), check_run_id(run_id)
    if index is None:
        with FileIndex(folder, SUMMARY_FORMAT) as index:
            return read_run(folder, run_id, now=now, index=index)
    ckpt, record = checkpoint_path(folder, run_id), progress_path(checkpoint_path(folder, run_id))
    summary, error, mtime = None, None, 0.0
    try:
        info = ckpt.stat()
        mtime = info.st_mtime
        summary = index.summary(str(ckpt), (info.st_ino, info.st_mtime_ns, info.st_size), _checkpoint_summary)
        if "error" in summary:
            summary, error = None, summary["error"]
    except FileNotFoundError:
        ckpt = None
    except OSError:
        error = f"{ckpt.name}: cannot be read"
    progress = None
    try:
        info = record.stat()
        progress = _progress_of(index, str(record), (info.st_ino, info.st_mtime_ns, info.st_size))
        mtime = max(mtime, info.st_mtime)
    except FileNotFoundError:
        pass
    except CheckpointError as exc:
        error = error or str(exc)
    except OSError:
        error = error or f"{record.name}: cannot be read"
    if summary is None and progress is None:
        if ckpt is None and error is None:
            return None
        return RunRecord(
            run_id,
            run_id,
            run_id,
            "unreadable",
            False,
            0,
            0,
            0,
            {},
            {},
            "",
            "",
            "",
            mtime,
            str(ckpt) if ckpt else None,
            error=error,
        )
    return _record(run_id, summary, progress, ckpt, mtime, error, now)


def _record(
    run_id: str,
    summary: dict | None,
    progress: Progress | None,
    ckpt: Path | None,
    mtime: float,
    error: str | None,
    now: float | None,
) -> RunRecord:
    live_status = progress.liveness(now) if progress is not None else None
    live = live_status in ("running", "paused")
    # A checkpoint is at most as new as the record of the process writing it: while it trains, or when
    # it died, the record says more; once it ended well, the checkpoint saved at its end says as much.
    use_progress = progress is not None and (
        summary is None or live or live_status in (KILLED, STALE) or progress.step >= summary["step"]
    )
    if summary is not None:
        base = dict(summary)
    else:
        base = {"name": "", "notes": "", "created": "", "imported_from": None, "status": progress.status}
    if use_progress:
        base.update(
            epoch=progress.epoch,
            epochs=progress.epochs,
            step=progress.step,
            config=progress.config,
            dataset=progress.dataset,
            status=live_status,
            metrics=dict(progress.epoch_metrics[-1]) if progress.epoch_metrics else base.get("metrics", {}),
        )
        base["name"] = base["name"] or progress.name
    name = base["name"] or run_id
    return RunRecord(
        run_id=run_id,
        name=name,
        display_name=name,
        status=base["status"],
        live=live,
        epoch=base["epoch"],
        epochs=base["epochs"],
        step=base["step"],
        metrics=base["metrics"],
        config=base["config"],
        dataset=base["dataset"],
        notes=base["notes"],
        created=base["created"],
        mtime=mtime,
        checkpoint=str(ckpt) if ckpt is not None else None,
        progress=progress,
        imported_from=base["imported_from"],
        error=error,
        owner=base.get("owner"),
        changes=tuple(tuple(change) for change in base.get("changes", ())),
    )


def creation_order(run_id: str) -> tuple[str, str]:
    """Runs sort by creation: ids made by run_ids.new_run_id begin with their creation time; other
    ids come after them, by id."""
    return (run_id[:15] if _TIMESTAMPED_ID.match(run_id) else "~", run_id)


# (folder, run id) -> (the versions of its two files, its record): an ended run's record depends on its
# files alone, so a listing of 50,000 runs rebuilds only those whose files changed.
_ended_records: dict[tuple[str, str], tuple[tuple, RunRecord]] = {}
_ended_records_lock = threading.Lock()
# folder -> (its modification time, its listing) while every run in it has ended
_unchanged_listings: dict[str, tuple[int, list[RunRecord]]] = {}


def _file_versions(folder: Path) -> dict[str, list]:
    """run id -> [checkpoint version, progress version] (None: no such file; "?" when it cannot be
    stat-ed), from one pass over the folder."""
    versions: dict[str, list] = {}
    for entry in os.scandir(folder):
        for slot, suffix in enumerate((CHECKPOINT_SUFFIX, PROGRESS_SUFFIX)):
            run_id = entry.name.removesuffix(suffix)
            if run_id != entry.name and is_valid_run_id(run_id):
                try:
                    info = entry.stat()
                    version = (info.st_ino, info.st_mtime_ns, info.st_size)
                except OSError:
                    version = "?"
                versions.setdefault(run_id, [None, None])[slot] = version
    return versions


def list_runs(folder: str | Path | None = None, *, now: float | None = None) -> list[RunRecord]:
    """Every run of `folder` (default: default_checkpoint_dir()) in creation order, with display
    names made distinct."""
    folder = Path(folder) if folder is not None else default_checkpoint_dir()
    began = time.time_ns()
    try:
        folder_version = os.stat(folder).st_mtime_ns  # every file of the store is written by a rename into it
    except OSError:
        return []
    with _ended_records_lock:
        listed = _unchanged_listings.get(str(folder))
    if listed is not None and listed[0] == folder_version:
        return list(listed[1])  # no file added, replaced or removed, and no record depends on the time
    versions, records = _file_versions(folder), []
    with FileIndex(folder, SUMMARY_FORMAT) as index:
        for run_id in sorted(versions, key=creation_order):
            key, seen = (str(folder), run_id), tuple(versions[run_id])
            with _ended_records_lock:
                cached = _ended_records.get(key)
            if cached is not None and cached[0] == seen and "?" not in seen:
                records.append(cached[1])
                continue
            record = read_run(folder, run_id, now=now, index=index)
            if record is None:
                continue
            records.append(record)
            if record.progress is None or record.progress.status in ENDED_STATUSES:  # nothing time-dependent
                with _ended_records_lock:
                    if len(_ended_records) >= MAX_REMEMBERED_RECORDS:
                        _ended_records.clear()
                    _ended_records[key] = (seen, record)
    named = with_distinct_names(records)
    with _ended_records_lock:
        # Kept only when the folder was quiet for a while before this listing: file times are coarse
        # (a few ms), so a change within the same tick as the last one would not move them.
        if began - folder_version > QUIET_FOLDER_NS and all(
            record.progress is None or record.progress.status in ENDED_STATUSES for record in records
        ):
            _unchanged_listings[str(folder)] = (folder_version, named)
        else:
            _unchanged_listings.pop(str(folder), None)
    return named


def settled_listing_version(folder: str | Path) -> int | None:
    """The folder's modification time when its last listing is one that nothing but a change to the
    folder can make stale (every run in it had ended, and it had been quiet a while), else None."""
    with _ended_records_lock:
        listed = _unchanged_listings.get(str(Path(folder)))
    return listed[0] if listed is not None else None


def live_runs(folder: str | Path, *, now: float | None = None) -> list[RunRecord]:
    """The runs of `folder` that a process trains now, without listing the rest: only progress records
    are looked at, and an ended run's is known from the index without being read (a page's sidebar
    asks this on every page of every tab)."""
    folder = Path(folder)
    try:
        folder_version = os.stat(folder).st_mtime_ns
    except OSError:
        return []
    with _ended_records_lock:
        listed = _unchanged_listings.get(str(folder))
    if listed is not None and listed[0] == folder_version:
        return []  # the folder is as it was when every run in it had ended
    found = []
    with FileIndex(folder, SUMMARY_FORMAT) as index:
        for entry in os.scandir(folder):
            run_id = entry.name.removesuffix(PROGRESS_SUFFIX)
            if run_id == entry.name or not is_valid_run_id(run_id):
                continue
            try:
                info = entry.stat()
                if index.known(entry.path, (info.st_ino, info.st_mtime_ns, info.st_size)) is not None:
                    continue  # an ended run's record, as the index keeps it
            except OSError:
                continue
            record = read_run(folder, run_id, now=now, index=index)
            if record is not None and record.live:
                found.append(record)
    return sorted(found, key=lambda record: creation_order(record.run_id))


def with_distinct_names(records: list[RunRecord]) -> list[RunRecord]:
    """The records with display names made distinct among each owner's runs (everyone's, when not
    served), in the order given (creation order): the first "mlp z10" stays so, the next becomes
    "mlp z10 (2)". Per owner, as the registry names new runs: another person's runs never number mine."""
    by_owner: dict[str | None, list[int]] = {}
    for index, record in enumerate(records):
        by_owner.setdefault(record.owner, []).append(index)
    names = [""] * len(records)
    for indices in by_owner.values():
        for index, name in zip(indices, distinct_names([records[i].name for i in indices])):
            names[index] = name
    # Not dataclasses.replace: it looks the fields up again for every record (50,000 runs of one name
    # took 1.5 s); a new record from the old one's fields is the same thing, 5 times faster.
    return [
        record if record.display_name == name else RunRecord(**{**vars(record), "display_name": name})
        for record, name in zip(records, names)
    ]


def distinct_names(names: list[str]) -> list[str]:
    """Each name, or `name (2)`, `name (3)`... whichever no earlier one took."""
    taken: set[str] = set()
    next_number: dict[str, int] = {}  # per name, where to look next: 5,000 runs of one name stay linear
    result = []
    for name in names:
        candidate, number = name, next_number.get(name, 2)
        if candidate in taken:
            candidate = f"{name} ({number})"
            while candidate in taken:
                number += 1
                candidate = f"{name} ({number})"
            number += 1
        next_number[name] = number
        taken.add(candidate)
        result.append(candidate)
    return result


# -- relabelling --------------------------------------------------------------------------------------


def checked_name(name: Any) -> str:
    """A run name as typed, made one printable line; ConfigError when it is empty or too long."""
    cleaned = printable_text(name or "", MAX_NAME_CHARS + 1)
    if not cleaned:
        raise ConfigError("a run's name cannot be empty")
    if len(cleaned) > MAX_NAME_CHARS:
        raise ConfigError(f"a run's name is at most {MAX_NAME_CHARS} characters")
    return cleaned


def checked_notes(notes: Any) -> str:
    cleaned = printable_text(notes or "", MAX_NOTES_CHARS + 1, multiline=True)
    if len(cleaned) > MAX_NOTES_CHARS:
        raise ConfigError(f"notes are at most {MAX_NOTES_CHARS:,} characters")
    return cleaned


def relabel_run(folder: str | Path, run_id: str, *, name: str | None = None, notes: str | None = None) -> RunRecord:
    """Give a saved run a new name and/or notes, rewriting its checkpoint atomically.

    Refused (TrainingError) while another process trains it, since its next save would undo the
    change; a run that the app itself trains is renamed through its job instead."""
    from .checkpoint import checkpoint_bytes, load_checkpoint

    folder = Path(folder)
    path = checkpoint_path(folder, run_id)
    record = read_run(folder, run_id)
    if record is None or record.checkpoint is None:
        raise CheckpointError(f"run {run_id} has no checkpoint yet; it can be renamed once its first epoch ends")
    if record.live:
        raise TrainingError(
            f"run {record.name} is training in another process (pid {record.progress.pid}); rename it when it has ended"
        )
    checkpoint = load_checkpoint(path)
    changes = {}
    if name is not None:
        changes["name"] = checked_name(name)
    if notes is not None:
        changes["notes"] = checked_notes(notes)
    try:
        write_atomically(path, checkpoint_bytes(replace(checkpoint, **changes)))
    except OSError as error:
        raise CheckpointError(f"could not rewrite {path.name}: {error.strerror or error}") from None
    return read_run(folder, run_id)


# -- the `runs` command -------------------------------------------------------------------------------


def add_runs_command(commands) -> None:
    """`vae-studio runs [DIR]` on the CLI's subcommands."""
    runs = commands.add_parser(
        "runs",
        help="list the runs of a checkpoints folder (JSON list on the last line)",
        description="List the runs of a folder: name, status, epoch, final test metrics. "
        "Runs another process is training show as running (from their "
        "progress record), or killed/stale when it stopped without ending.",
    )
    runs.add_argument(
        "dir", nargs="?", default=None, help=f"checkpoints folder (default: ${CHECKPOINTS_ENV}, else ./checkpoints)"
    )


class EncodedJSON(str):
    """A command's result already encoded as its JSON line (the CLI prints it as it is)."""


MAX_REMEMBERED_OUTPUT_BYTES = 256 << 20


def cmd_runs(args: argparse.Namespace) -> EncodedJSON | PrintedOutput:
    """Print a line per run, then (returned) the JSON list. A folder in which nothing changed since
    the last `runs` while every run had ended gets what was printed then, copied from the user's cache
    file to standard output: a process of its own lists 50,000 runs about as fast as one."""
    import sys

    folder = Path(args.dir) if args.dir else default_checkpoint_dir()
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is not a folder")
    remembered = FileIndex(folder, SUMMARY_FORMAT).path.with_suffix(".runs-printed")
    version = os.stat(folder).st_mtime_ns
    if _print_remembered_output(remembered, version):
        return PrintedOutput()
    records = list_runs(folder)
    lines = "".join(
        f"{record.run_id:<24} {record.status:<9} epoch {record.epoch:>3}/{record.epochs:<4} "
        f"−ELBO {_score(record.test_neg_elbo):>8}  {record.display_name}\n"
        for record in records
    )
    json_list = _json_list([record.as_json() for record in records])
    if settled_listing_version(folder) == version:
        try:
            write_atomically(remembered, f"{version}\n".encode() + (lines + json_list + "\n").encode())
        except OSError:
            pass  # a cache that cannot be written is only slower
    sys.stdout.write(lines)
    return EncodedJSON(json_list)


class PrintedOutput:
    """A command's whole output, its JSON line included, already written to standard output."""


def _score(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "–"


def _json_list(items: list[dict]) -> str:
    """Strict JSON: a diverged loss (NaN, infinity) is null."""
    try:
        return json.dumps(items, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(items))


def _print_remembered_output(path: Path, version: int) -> bool:
    """Copy what `runs` printed for this version of the folder to standard output, if it was
    remembered; False, having printed nothing, if not. The copy is file to file (os.sendfile): the
    output of 50,000 runs is 48 MB, which decoding and printing as text made take twice the time of
    one run's. The file is the user's own cache, opened by the one safe reader."""
    import sys

    header = f"{version}\n".encode()
    try:
        with opened_regular_file(path, MAX_REMEMBERED_OUTPUT_BYTES) as (descriptor, size):
            if os.pread(descriptor, len(header), 0) != header:
                return False
            sys.stdout.flush()
            try:
                out = sys.stdout.fileno()
            except (AttributeError, OSError, ValueError):  # a stream with no file under it (a test's capture)
                sys.stdout.write(os.pread(descriptor, size, len(header)).decode(errors="replace"))
                return True
            _copy_between_files(descriptor, out, len(header), size)
    except UnreadableFile:
        return False
    return True


def _copy_between_files(source: int, target: int, start: int, end: int) -> None:
    """Bytes start..end of descriptor `source` written to descriptor `target`, in the kernel where it can."""
    while start < end:
        try:
            sent = os.sendfile(target, source, start, end - start)
        except OSError as error:
            if error.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
            sent = os.write(target, os.pread(source, min(end - start, 1 << 20), start))
        if sent == 0:
            return  # the file shrank under us: what it holds has been copied
        start += sent
