"""`TrainingJob`: a `Trainer` in a background thread, safe to drive from any other thread.

Commands (pause, resume, stop, new lr or beta, save) go through a queue that the loop reads at
batch boundaries. What readers see is an immutable `Snapshot`, rebuilt a few times a second and
swapped in with one assignment, so a reader never blocks the loop and never sees half an update.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .config import TrainConfig
from .errors import TrainingError, VAEStudioError
from .history import Frame, StepCurves
from .run_ids import new_run_id
from .threads import serial_on_this_thread
from .trainer import Divergence, Trainer, TrainerState, to_uint8

PUBLISH_INTERVAL_S = 0.25
FLUSH_EVERY_STEPS = 50

STATUSES = ("starting", "running", "paused", "finished", "stopped", "failed")

if TYPE_CHECKING:
    from .data import ImageDataset


@dataclass(frozen=True)
class Snapshot:
    """What a reader may know about a job at one moment. Never mutated after it is published."""

    run_id: str
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
    weights_epoch: int = field(default=0)  # epoch of the weights `TrainingJob.latest_weights()` returns
    threads: str = ""  # e.g. "2 CPU threads, tuned to the load"; empty on a GPU

    @property
    def progress(self) -> float:
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0

    @property
    def active(self) -> bool:
        """Still able to train: starting, running or paused."""
        return self.status in ("starting", "running", "paused")


class TrainingJob:
    """A training run in a daemon thread. Create, `start()`, then send commands and read snapshots."""

    def __init__(self, config: TrainConfig, dataset: ImageDataset, *, run_id: str | None = None,
                 state: TrainerState | None = None, checkpoint_dir: str | Path | None = None,
                 saver: Callable[["TrainingJob", Path], None] | None = None):
        self.run_id = run_id or new_run_id()
        self.config = config
        self.dataset = dataset
        self.checkpoint_path = Path(checkpoint_dir) / f"{self.run_id}.safetensors" if checkpoint_dir else None
        self._saver = saver
        self._commands: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=f"train-{self.run_id}", daemon=True)
        self._weights_lock = threading.Lock()
        self._status = "starting"
        self._message: str | None = None
        self._samples_per_s = 0.0
        self._elapsed = 0.0
        self._version = 0
        # Tensor work on the caller's thread runs serially: a thread team left there would halve the
        # training thread's speed on 2 cores for as long as the caller lives (vae_core/threads.py).
        with serial_on_this_thread():
            self.trainer = Trainer(config, dataset, state=state)
            self._weights = (self.trainer.epoch, self._cpu_weights())
            self._fixed_inputs = to_uint8(self.trainer.fixed_x)
            self._snapshot = self._build_snapshot()

    # -- commands (any thread) -------------------------------------------------------------------
    def start(self) -> "TrainingJob":
        self._thread.start()
        return self

    def pause(self) -> None:
        self._commands.put(("pause", None))

    def resume(self) -> None:
        self._commands.put(("resume", None))

    def stop(self) -> None:
        self._commands.put(("stop", None))

    def set_lr(self, lr: float) -> None:
        if not 0 < lr <= 100:
            raise TrainingError(f"lr must be above 0 and at most 100, not {lr}")
        self._commands.put(("lr", float(lr)))

    def set_beta(self, beta: float) -> None:
        if not 0 <= beta <= 1000:
            raise TrainingError(f"beta must be between 0 and 1000, not {beta}")
        self._commands.put(("beta", float(beta)))

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the thread ends; True when it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() or self._snapshot.status == "starting"

    def snapshot(self) -> Snapshot:
        return self._snapshot

    @property
    def status(self) -> str:
        """The status now (the snapshot may lag it by one publish)."""
        return self._status

    def latest_weights(self) -> tuple[int, dict]:
        """(epoch, CPU state dict) of the weights at the last epoch end or stop, for pages that decode
        while training goes on. The dict is never mutated, so readers may keep it."""
        with self._weights_lock:
            return self._weights

    def save(self, path: str | Path) -> Path:
        """Save now if the thread is not running; a running job saves itself every epoch and on stop."""
        if self._thread.is_alive():
            raise TrainingError("the job is still running; pause or stop it, or use its autosave")
        return self._save_to(Path(path))

    # -- the thread --------------------------------------------------------------------------------
    def _run(self) -> None:
        trainer = self.trainer
        window_start, window_samples = time.perf_counter(), 0
        last_publish = 0.0
        self._set_status("running")
        try:
            while not trainer.finished:
                paused_for = self._handle_commands()
                if paused_for is None:
                    self._finish("stopped")
                    return
                window_start += paused_for  # a pause is not training time
                trainer.train_step()
                window_samples += self.config.batch_size
                now = time.perf_counter()
                if trainer.pending_steps >= FLUSH_EVERY_STEPS or now - last_publish >= PUBLISH_INTERVAL_S:
                    trainer.flush()
                    self._measure_speed(window_samples, now - window_start)
                    window_start, window_samples = now, 0
                    if now - last_publish >= PUBLISH_INTERVAL_S:
                        self._publish()
                        last_publish = now
                if trainer.step_in_epoch >= trainer.steps_per_epoch:
                    trainer.flush()
                    self._measure_speed(window_samples, time.perf_counter() - window_start)
                    trainer.end_epoch()
                    self._keep_weights()
                    self._autosave()
                    self._publish()
                    # Evaluation and saving are not training: the speed window starts after them.
                    window_start, window_samples = time.perf_counter(), 0
            self._finish("finished")
        except Divergence as error:
            self._fail(str(error))
        except torch.OutOfMemoryError:
            self._fail(f"out of memory on {trainer.device} at step {trainer.step + 1} with batch size "
                       f"{self.config.batch_size}; try a smaller batch size or model")
        except VAEStudioError as error:
            self._fail(str(error))
        except Exception as error:  # never lost: shown to the user, and the thread ends cleanly
            self._fail(f"training stopped by an unexpected error at step {trainer.step}: "
                       f"{type(error).__name__}: {error}")

    def _measure_speed(self, samples: int, seconds: float) -> None:
        """Samples per second of training, smoothed so the ETA does not jump with every window."""
        if samples <= 0 or seconds <= 0:
            return
        self._elapsed += seconds
        rate = samples / seconds
        self._samples_per_s = rate if self._samples_per_s == 0 else 0.8 * self._samples_per_s + 0.2 * rate

    def _handle_commands(self) -> float | None:
        """Apply queued commands; block while paused. Returns the seconds spent paused, or None
        when asked to stop."""
        paused_at: float | None = None
        while True:
            try:
                command, value = self._commands.get(timeout=0.1) if paused_at is not None else self._commands.get_nowait()
            except queue.Empty:
                if paused_at is not None:
                    continue
                return 0.0
            if command == "stop":
                return None
            if command == "pause" and paused_at is None:
                paused_at = time.perf_counter()
                self.trainer.flush()
                self._keep_weights()
                self._set_status("paused")
            elif command == "resume" and paused_at is not None:
                self._set_status("running")
                return time.perf_counter() - paused_at
            elif command == "lr":
                self.trainer.set_lr(value)
                self._event("lr", value)
            elif command == "beta":
                self.trainer.beta = value
                self._event("beta", value)

    def _event(self, name: str, value: float) -> None:
        self.trainer.history.events.append({"step": self.trainer.step, "name": name, "value": value})
        self._publish()

    def _finish(self, status: str) -> None:
        self.trainer.flush()
        self._keep_weights()
        self._status = status  # before the save, so the file records how the run ended
        self._autosave()
        self._publish()

    def _fail(self, message: str) -> None:
        self._message = message
        try:
            self.trainer.flush()
        except Exception:
            pass  # the first error is the one to report
        self._keep_weights()
        self._status = "failed"
        try:
            self._autosave()  # the last good weights, so nothing learned so far is lost
        except Exception as error:
            self._message += f" (and the autosave failed: {error})"
        self._publish()

    # -- publishing --------------------------------------------------------------------------------
    def _cpu_weights(self) -> dict:
        return {k: v.detach().cpu().clone() for k, v in self.trainer.model.state_dict().items()}

    def _keep_weights(self) -> None:
        with self._weights_lock:
            self._weights = (self.trainer.epoch, self._cpu_weights())

    def _autosave(self) -> None:
        if self.checkpoint_path is not None:
            self._save_to(self.checkpoint_path)

    def _save_to(self, path: Path) -> Path:
        if self._saver is None:
            from .checkpoint import save_job_checkpoint  # late: checkpoint imports this module's types
            save_job_checkpoint(self, path)
        else:
            self._saver(self, path)
        return path

    def _set_status(self, status: str) -> None:
        self._status = status
        self._publish()

    def _publish(self) -> None:
        self._version += 1
        self._snapshot = self._build_snapshot()

    def _build_snapshot(self) -> Snapshot:
        trainer = self.trainer
        remaining = trainer.total_steps - trainer.step
        steps_per_s = self._samples_per_s / self.config.batch_size
        eta = remaining / steps_per_s if steps_per_s > 0 and self._status == "running" else None
        return Snapshot(
            run_id=self.run_id, version=self._version, status=self._status, message=self._message,
            config=self.config.to_dict(), dataset=self.dataset.name, device=str(trainer.device),
            epoch=trainer.epoch, epochs=self.config.epochs, step=trainer.step,
            steps_per_epoch=trainer.steps_per_epoch, total_steps=trainer.total_steps,
            samples_per_s=self._samples_per_s, eta_s=eta, elapsed_s=self._elapsed, threads=trainer.threads.describe(),
            lr=trainer.lr, beta=trainer.beta, curves=trainer.history.curves(),
            kl_per_dim=trainer.latest_kl_per_dim.copy(), epoch_metrics=tuple(dict(m) for m in trainer.history.epochs),
            events=tuple(dict(e) for e in trainer.history.events), frames=tuple(trainer.history.frames),
            fixed_inputs=self._fixed_inputs,
            checkpoint_path=str(self.checkpoint_path) if self.checkpoint_path else None,
            weights_epoch=self._weights[0],
        )
