"""A run of the store as its page shows it, whoever trains it, built into the `Snapshot` a job publishes.

Whoever trains it: the CLI, torchrun, a run process whose server was restarted, or nobody any more.
Built from the run's record (runs.RunRecord: its progress record and checkpoint header) and its
checkpoint, so one panel draws every run.

While another process trains it, its curve is the progress record's (written a few times a second,
at most runs.MAX_POINTS points, each the mean of the steps it covers), and its pictures, per-dimension
KL and epoch metrics are those of its last epoch end (the checkpoint). Once it has ended, everything
comes from the checkpoint, step by step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .history import History, StepCurves
from .run_commands import send_command
from .runs import RunRecord
from .snapshot import Snapshot

if TYPE_CHECKING:  # torch-free at import: the Train page asks whether a job is a StoredRun before torch loads
    from .checkpoint import RunCheckpoint


@dataclass(frozen=True)
class StoredRun:
    """What a page may know of a run this server does not drive. A live run process (one whose server
    is gone) takes commands through the store (run_commands.py); the CLI's and torchrun's do not."""

    run_id: str
    owner: str | None
    device: str
    pid: int | None  # of the process training it now, if one is
    host: str | None
    commands: bool  # live, and its process obeys the run's command file
    folder: str
    _snapshot: Snapshot

    def snapshot(self) -> Snapshot:
        return self._snapshot

    @property
    def live(self) -> bool:
        return self._snapshot.active

    def pause(self) -> None:
        send_command(self.folder, self.run_id, "pause")

    def resume(self) -> None:
        send_command(self.folder, self.run_id, "resume")

    def stop(self) -> None:
        send_command(self.folder, self.run_id, "stop")

    def set_lr(self, lr: float) -> None:
        send_command(self.folder, self.run_id, "lr", lr)

    def set_beta(self, beta: float) -> None:
        send_command(self.folder, self.run_id, "beta", beta)


def stored_run(
    folder, record: RunRecord, checkpoint: RunCheckpoint | None, fixed_inputs: np.ndarray | None = None
) -> StoredRun:
    progress = record.progress if record.live else None
    history = checkpoint.state.history if checkpoint is not None else History()
    config = record.config or (checkpoint.config.to_dict() if checkpoint is not None else {})
    if progress is not None:
        curves = _curves_of_points(progress.points, config)
        epoch_metrics = tuple(dict(m) for m in progress.epoch_metrics)
        per_epoch, total, samples_per_s = progress.steps_per_epoch, progress.total_steps, progress.samples_per_s
    else:
        curves = history.curves()
        epoch_metrics = tuple(dict(m) for m in history.epochs)
        per_epoch = checkpoint.state.step // max(1, checkpoint.state.epoch) if checkpoint is not None else 0
        per_epoch = _steps_per_epoch(history) or per_epoch
        total, samples_per_s = per_epoch * record.epochs, 0.0
    last_saved = history.epochs[-1] if history.epochs else {}
    latent_dim = int(config.get("latent_dim", 0))
    kl_per_dim = np.asarray(last_saved.get("kl_per_dim", np.zeros(latent_dim)), dtype=np.float32)
    steps_per_s = samples_per_s / max(1, int(config.get("batch_size", 1)))
    eta = (total - record.step) / steps_per_s if progress is not None and steps_per_s > 0 else None
    threads = config.get("threads")
    snapshot = Snapshot(
        run_id=record.run_id,
        name=record.display_name,
        version=0,
        status=record.status,
        message=None if progress is not None else progress_message(record),
        config=config,
        dataset=record.dataset,
        device=str(config.get("device", "cpu")),
        epoch=record.epoch,
        epochs=record.epochs,
        step=record.step,
        steps_per_epoch=per_epoch,
        total_steps=max(total, record.step),
        samples_per_s=samples_per_s,
        eta_s=eta,
        elapsed_s=float(curves.clock.seconds[-1]) if curves.clock is not None and len(curves.clock.seconds) else 0.0,
        lr=_last_event(history, "lr", config),
        beta=_last_event(history, "beta", config),
        curves=curves,
        kl_per_dim=kl_per_dim,
        epoch_metrics=epoch_metrics,
        events=tuple(dict(e) for e in history.events),
        frames=tuple(history.frames),
        fixed_inputs=fixed_inputs if fixed_inputs is not None else np.zeros((0, 1, 1, 1), dtype=np.uint8),
        checkpoint_path=record.checkpoint,
        weights_epoch=checkpoint.state.epoch if checkpoint is not None else 0,
        threads=f"{threads} CPU thread{'s' * (threads != 1)}" if threads else "",
    )
    return StoredRun(
        record.run_id,
        record.owner,
        snapshot.device,
        progress.pid if progress else None,
        progress.host if progress else None,
        bool(progress and progress.commands),
        str(folder),
        snapshot,
    )


def progress_message(record: RunRecord) -> str | None:
    """Why a run stopped without ending, when its record says so."""
    if record.error:
        return record.error
    if record.progress is not None and record.progress.message:
        return record.progress.message
    if record.status == "killed":
        return (
            f"its process (pid {record.progress.pid}) ended without saying so, at epoch {record.epoch}; the "
            "checkpoint of its last finished epoch is kept, and it can be resumed from the Checkpoints page"
        )
    return None


def _last_event(history: History, name: str, config: dict) -> float:
    """The lr or beta in force at the last save: its last live change, else the config's."""
    values = [event["value"] for event in history.events if event.get("name") == name]
    return float(values[-1] if values else config.get(name, 0.0))


def _steps_per_epoch(history: History) -> int:
    steps = [int(metrics["step"]) for metrics in history.epochs if "step" in metrics]
    return steps[0] if steps else 0


def _curves_of_points(points: dict, config: dict) -> StepCurves:
    """A progress record's points as curves: each point where its last step was, its losses the
    means of the steps it covers; points without a loss (a diverged step) are left out."""
    rows = [
        (s, t, r, k)
        for s, t, r, k in zip(points["step"], points["total"], points["recon"], points["kl"])
        if None not in (s, t, r, k)
    ]
    step = np.array([row[0] for row in rows], dtype=np.int64)
    losses = np.array([row[1:] for row in rows], dtype=np.float32).reshape(-1, 3)
    return StepCurves(
        step=step,
        total=losses[:, 0],
        recon=losses[:, 1],
        kl=losses[:, 2],
        beta=np.full(len(step), float(config.get("beta", 1.0)), dtype=np.float32),
        lr=np.full(len(step), float(config.get("lr", 1e-3)), dtype=np.float32),
    )
