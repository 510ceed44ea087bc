"""`TrainingJob`: one run trained by `loop.py` in a background thread, safe to drive from any other.

Commands (pause, resume, stop, new lr or beta) go through a queue that the loop's `before_step`
hook reads at batch boundaries. What readers see is an immutable `Snapshot`, rebuilt a few times
a second and swapped in with one assignment, so a reader never blocks the loop and never sees half
an update. The job saves its checkpoint at every epoch end and when it stops or fails.

The trainer is built on the training thread itself: the run's model and data take no memory while
it waits in a queue, and its tensor work leaves no idle OpenMP team on the caller's thread
(own_threads.py says why that matters).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from . import loop
from .checkpoint_fields import is_valid_owner
from .config import TrainConfig, check_beta, check_lr, default_run_name
from .device import resolve_device
from .errors import TrainingError, VAEStudioError
from .history import History
from .own_threads import use_threads
from .run_ids import new_run_id
from .run_status import TRAINING
from .snapshot import Snapshot
from .threads import run_threads
from .trainer import (
    FIXED_INPUTS,
    Divergence,
    Trainer,
    TrainerState,
    check_trainable,
    initial_model,
    steps_per_epoch,
    to_uint8,
)

if TYPE_CHECKING:
    from .data import ImageDataset

PUBLISH_INTERVAL_S = 0.25
FLUSH_EVERY_STEPS = 50
FIRST_PUBLISH_STEPS = 3  # a run's first points are published after this many steps, not after a full interval


class TrainingJob:
    """A run in a daemon thread. Create, `start()`, then send commands and read snapshots."""

    def __init__(
        self,
        config: TrainConfig,
        dataset: ImageDataset,
        *,
        run_id: str | None = None,
        name: str | None = None,
        state: TrainerState | None = None,
        checkpoint_dir: str | Path | None = None,
        on_end: Callable[[TrainingJob], None] | None = None,
        owner: str | None = None,
        on_publish: Callable[[Snapshot], None] | None = None,
        write_progress: bool = False,
    ):
        check_trainable(config, dataset)
        if not (owner is None or is_valid_owner(owner)):
            raise TrainingError("a run's owner must be an owner id (see checkpoint_fields.OWNER_ID_PATTERN)")
        self.run_id = run_id or new_run_id()
        self.name = name or default_run_name(config)
        self.owner = owner  # who may see and drive it when the app is served to several people; None: anyone
        self.config = config
        self.dataset = dataset
        self.device = resolve_device(config.device)
        self.checkpoint_path = Path(checkpoint_dir) / f"{self.run_id}.safetensors" if checkpoint_dir else None
        self.trainer: Trainer | None = None  # built on the training thread
        self._state = state  # what it starts from; read by other threads, so never reassigned
        self._on_end = on_end
        self._on_publish = on_publish  # called with each new snapshot, on the thread that made it
        # A run process keeps the store's progress record (runs.py) beside its checkpoint, so other
        # servers, the CLI and a restarted server follow it as any run of the folder.
        self._write_progress = write_progress and self.checkpoint_path is not None
        self._progress = None
        self._commands: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=f"train-{self.run_id}", daemon=True)
        # Held to change the status from another thread (start, cancel) and to publish, so a
        # snapshot is built by one thread at a time and always holds the latest name.
        self._lock = threading.RLock()
        self._ended = threading.Event()
        self._status = "queued"
        self._message: str | None = None
        self._threads = ""
        self._samples_per_s = 0.0
        self._elapsed = 0.0
        self._window = (time.perf_counter(), 0)  # (start, step) of the current speed window
        self._last_publish = 0.0
        self._first_points_published = False
        self._version = 0
        self._weights: tuple[int, dict] | None = None
        self._fixed_inputs = to_uint8(dataset.test_x[:FIXED_INPUTS])
        self._snapshot = self._build_snapshot()

    # -- commands (any thread) -------------------------------------------------------------------
    def start(self) -> TrainingJob:
        with self._lock:
            if self._status != "queued":
                raise TrainingError(f"run {self.name} cannot start: it is {self._status}")
            self._status = "starting"
            self._publish()
            self._thread.start()
        return self

    def pause(self) -> None:
        self._commands.put(("pause", None))

    def resume(self) -> None:
        self._commands.put(("resume", None))

    def stop(self) -> None:
        """Stop at the next batch boundary (saving); a job still queued is cancelled at once."""
        with self._lock:
            if self._status == "queued":
                self._status = "cancelled"
                self._publish()
                self._ended.set()
                return
        self._commands.put(("stop", None))

    def set_lr(self, lr: float) -> None:
        self._commands.put(("lr", check_lr(lr)))

    def set_beta(self, beta: float) -> None:
        self._commands.put(("beta", check_beta(beta)))

    def rename(self, name: str) -> None:
        """A new name, shown at once and kept in the next checkpoint."""
        name = " ".join(str(name).split())
        if not name:
            raise TrainingError("a run's name cannot be empty")
        with self._lock:  # the training thread may be publishing: swap in the name, nothing else
            self.name = name
            self._version += 1
            self._snapshot = replace(self._snapshot, name=name, version=self._version)
            if self._progress is not None:
                self._progress.name = name
            if self._on_publish is not None:
                self._on_publish(self._snapshot)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has ended (finished, stopped, failed or cancelled); True when it has."""
        return self._ended.wait(timeout)

    @property
    def alive(self) -> bool:
        """Started and not ended: it holds its device."""
        return self._status in TRAINING

    def snapshot(self) -> Snapshot:
        return self._snapshot

    @property
    def status(self) -> str:
        """The status now (the snapshot may lag it by one publish)."""
        return self._status

    def latest_weights(self) -> tuple[int, dict]:
        """(epoch, CPU state dict) of the weights at the last epoch end, pause or stop, for pages that
        decode while training goes on. The dict is never mutated, so readers may keep it."""
        with self._lock:
            if self._weights is None:  # not trained yet: the weights it will start from
                weights = (
                    self._state.model_state
                    if self._state is not None
                    else initial_model(self.config, self.dataset).state_dict()
                )
                self._weights = (self._state.epoch if self._state is not None else 0, weights)
            return self._weights

    def kept_weights(self) -> tuple[int, dict] | None:
        """The weights `latest_weights` would return once the run has kept some (an epoch end, a pause,
        its end), else None: unlike it, never builds the initial model, whose seeding of the global
        RNG would race the training thread's own."""
        return self._weights

    def save(self, path: str | Path) -> Path:
        """Save now if the thread is not running; a running job saves itself every epoch and on stop."""
        if self._thread.is_alive() or self.trainer is None:
            raise TrainingError("the job is running or has not trained yet; pause or stop it, or use its autosave")
        return self._save_to(Path(path))

    # -- the thread --------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            count, chosen_by = run_threads(self.config, self.dataset, self.device)
            if count is not None:
                self.config = self.config.replace(threads=count)  # kept with the run: its numbers depend on it
            self._threads = use_threads(count, self.device) + (f" ({chosen_by})" if chosen_by else "")
            self.trainer = Trainer(self.config, self.dataset, state=self._state, device=self.device)
            if self._write_progress:
                from .runs import ProgressWriter

                # A job that keeps the store's record is a run process's, which obeys the run's command
                # file (run_commands.py) too: the record says so, for a server that did not start it.
                self._progress = ProgressWriter(
                    self.checkpoint_path,
                    self.trainer,
                    run_id=self.run_id,
                    name=self.name,
                    dataset=self.dataset.name,
                    commands=True,
                )
            self._set_status("running")
            hooks = loop.Hooks(
                before_step=self._before_step,
                after_flush=self._after_flush,
                after_epoch=self._after_epoch,
                flush_steps=FLUSH_EVERY_STEPS,
                flush_seconds=PUBLISH_INTERVAL_S,
            )
            self._window = (time.perf_counter(), self.trainer.step)
            finished = loop.run_to_end(self.trainer, hooks)
            self._end("finished" if finished else "stopped")
        except Divergence as error:
            self._fail(str(error))
        except torch.OutOfMemoryError:
            self._fail(
                f"out of memory on {self.device} at step {self._step() + 1} with batch size "
                f"{self.config.batch_size}; try a smaller batch size or model"
            )
        except VAEStudioError as error:
            self._fail(str(error))
        except Exception as error:  # never lost: shown to the user, and the thread ends cleanly
            self._fail(
                f"training stopped by an unexpected error at step {self._step()}: {type(error).__name__}: {error}"
            )
        finally:
            try:
                if self._on_end is not None:
                    self._on_end(self)  # e.g. the registry starts the next queued run
            finally:
                self._ended.set()

    def _before_step(self, trainer: Trainer) -> bool:
        """Apply queued commands; block while paused. False when asked to stop."""
        if not self._first_points_published and trainer.pending_steps >= FIRST_PUBLISH_STEPS:
            # The person who pressed Start is waiting for the curve: show its first points at once.
            self._first_points_published = True
            trainer.flush()
            self._measure_speed()
            self._publish()
        paused_at: float | None = None
        while True:
            try:
                command, value = (
                    self._commands.get(timeout=0.1) if paused_at is not None else self._commands.get_nowait()
                )
            except queue.Empty:
                if paused_at is None:
                    return True
                if self._progress is not None:
                    self._progress.update(trainer, status="paused")  # its heartbeat, at the writer's pace
                continue
            if command == "stop":
                return False
            if command == "pause" and paused_at is None:
                trainer.flush()
                self._measure_speed()
                paused_at = time.perf_counter()
                self._keep_weights()
                self._set_status("paused")
                if self._progress is not None:
                    self._progress.update(trainer, force=True, status="paused")
            elif command == "resume" and paused_at is not None:
                self._window = (time.perf_counter(), trainer.step)  # a pause is not training time
                self._set_status("running")
                return True
            elif command in ("lr", "beta"):
                if command == "lr":
                    trainer.set_lr(value)
                else:
                    trainer.beta = value
                trainer.history.events.append({"step": trainer.step, "name": command, "value": value})
                self._publish()

    def _after_flush(self, trainer: Trainer) -> None:
        if self._progress is not None:
            self._progress.update(trainer)
        self._measure_speed()
        if time.perf_counter() - self._last_publish >= PUBLISH_INTERVAL_S:
            self._publish()

    def _after_epoch(self, trainer: Trainer, metrics: dict) -> None:
        self._keep_weights()
        self._autosave()
        if self._progress is not None:
            self._progress.epoch_end(trainer, metrics)
        self._publish()
        self._window = (time.perf_counter(), trainer.step)  # evaluation and saving are not training

    def _measure_speed(self) -> None:
        """Samples per second of training since the window began, smoothed so the ETA does not jump."""
        started, first_step = self._window
        now = time.perf_counter()
        samples, seconds = (self.trainer.step - first_step) * self.config.batch_size, now - started
        self._window = (now, self.trainer.step)
        if samples <= 0 or seconds <= 0:
            return
        self._elapsed += seconds
        rate = samples / seconds
        self._samples_per_s = rate if self._samples_per_s == 0 else 0.8 * self._samples_per_s + 0.2 * rate

    def _end(self, status: str) -> None:
        self._measure_speed()
        self._keep_weights()
        self._status = status  # before the save, so the file records how the run ended
        self._autosave()
        self._close_progress()
        self._publish()

    def _fail(self, message: str) -> None:
        self._message = message
        if self.trainer is not None:
            try:
                self.trainer.flush()
            except Exception:
                pass  # the first error is the one to report
            self._keep_weights()
        self._status = "failed"
        try:
            if self.trainer is not None:
                self._autosave()  # the last good weights, so nothing learned so far is lost
        except Exception as error:
            self._message += f" (and the autosave failed: {error})"
        self._close_progress()
        self._publish()

    def _close_progress(self) -> None:
        if self._progress is not None:
            progress, self._progress = self._progress, None
            progress.close(self.trainer, self._status, self._message)

    def _step(self) -> int:
        return self.trainer.step if self.trainer is not None else 0

    # -- publishing --------------------------------------------------------------------------------
    def _keep_weights(self) -> None:
        weights = {k: v.detach().cpu().clone() for k, v in self.trainer.model.state_dict().items()}
        with self._lock:
            self._weights = (self.trainer.epoch, weights)

    def _autosave(self) -> None:
        if self.checkpoint_path is not None:
            self._save_to(self.checkpoint_path)

    def _save_to(self, path: Path) -> Path:
        from .checkpoint import save_job_checkpoint  # late: checkpoint imports the trainer's types

        save_job_checkpoint(self, path)
        return path

    def _set_status(self, status: str) -> None:
        self._status = status
        self._publish()

    def _publish(self) -> None:
        with self._lock:
            self._version += 1
            self._last_publish = time.perf_counter()
            self._snapshot = self._build_snapshot()
            if self._on_publish is not None:
                self._on_publish(self._snapshot)

    def _build_snapshot(self) -> Snapshot:
        trainer, state = self.trainer, self._state
        if trainer is not None:
            history, epoch, step, lr, beta = trainer.history, trainer.epoch, trainer.step, trainer.lr, trainer.beta
            per_epoch, kl_per_dim = trainer.steps_per_epoch, trainer.latest_kl_per_dim.copy()
        else:  # queued or starting: what it will start from
            history = state.history if state is not None else History()
            epoch, step = (state.epoch, state.step) if state is not None else (0, 0)
            lr, beta = (state.lr, state.beta) if state is not None else (self.config.lr, self.config.beta)
            per_epoch = steps_per_epoch(self.dataset.train_x.shape[0], self.config.batch_size)
            kl_per_dim = np.zeros(self.config.latent_dim, dtype=np.float32)
        total = per_epoch * self.config.epochs
        steps_per_s = self._samples_per_s / self.config.batch_size
        eta = (total - step) / steps_per_s if steps_per_s > 0 and self._status == "running" else None
        weights = self._weights
        return Snapshot(
            run_id=self.run_id,
            name=self.name,
            version=self._version,
            status=self._status,
            message=self._message,
            config=self.config.to_dict(),
            dataset=self.dataset.name,
            device=str(self.device),
            epoch=epoch,
            epochs=self.config.epochs,
            step=step,
            steps_per_epoch=per_epoch,
            total_steps=total,
            samples_per_s=self._samples_per_s,
            eta_s=eta,
            elapsed_s=self._elapsed,
            threads=self._threads,
            lr=lr,
            beta=beta,
            curves=history.curves(),
            kl_per_dim=kl_per_dim,
            epoch_metrics=tuple(dict(m) for m in history.epochs),
            events=tuple(dict(e) for e in history.events),
            frames=tuple(history.frames),
            fixed_inputs=self._fixed_inputs,
            checkpoint_path=str(self.checkpoint_path) if self.checkpoint_path else None,
            weights_epoch=weights[0] if weights is not None else epoch,
        )
