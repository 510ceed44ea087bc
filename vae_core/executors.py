"""A run that trains in a process of its own (the app's default), held by the server as a `ProcessJob`.

`ProcessJob` has the interface of jobs.TrainingJob, so the registry and the pages drive both alike.
Its process (run_process.RunProcess) hands it what the child sends; the registry routes it here."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .config import TrainConfig, check_beta, check_lr, default_run_name
from .errors import TrainingError
from .history import History
from .run_ids import new_run_id
from .run_process import RunProcess
from .run_status import ACTIVE, TRAINING
from .snapshot import Snapshot

if TYPE_CHECKING:
    from .data import ImageDataset


class ProcessJob:
    """A run that trains in a RunProcess, as the server sees it: what jobs.TrainingJob offers, from
    the snapshots and weights its process sends. Made by registry.JobRegistry, which starts it."""

    def __init__(
        self,
        config: TrainConfig,
        dataset: ImageDataset | None,
        *,
        run_id: str | None = None,
        name: str | None = None,
        owner: str | None = None,
        checkpoint_dir: Path,
        on_end: Callable[[ProcessJob], None] | None = None,
        data_roots=(),
        device: str | None = None,
        data_warnings: tuple[str, ...] = (),
    ):
        """`device`: where the run trains, as its run process resolved it (registry.submit), else
        resolved here (which imports torch)."""
        self.run_id = run_id or new_run_id()
        self.name = name or default_run_name(config)
        self.owner = owner
        self.config = config
        if device is None:
            from .device import resolve_device

            device = str(resolve_device(config.device))
        self.device = device
        self.data_warnings = tuple(data_warnings)
        self.checkpoint_path = Path(checkpoint_dir) / f"{self.run_id}.safetensors"
        self.process: RunProcess | None = None
        self._dataset = dataset
        self._data_roots = tuple(data_roots)
        self._on_end = on_end
        self._lock = threading.Lock()
        self._ended = threading.Event()
        self._weights: tuple[int, dict] | None = None
        self._versions = 0  # of the snapshots made here; the process's count on (max of both)
        self._snapshot = self._waiting_snapshot("queued")

    # -- what the server asks ----------------------------------------------------------------------
    @property
    def dataset(self) -> ImageDataset:
        """The run's data in this server (its shape and classes, for the pages): loaded on first use
        for a run queued by another server, through the same checks as any reference read from a file."""
        if self._dataset is None:
            from .data import load_run_data

            self._dataset = load_run_data(self.config, self._data_roots)
        return self._dataset

    def snapshot(self) -> Snapshot:
        return self._snapshot

    @property
    def status(self) -> str:
        return self._snapshot.status

    @property
    def alive(self) -> bool:
        return self.status in TRAINING

    def wait(self, timeout: float | None = None) -> bool:
        return self._ended.wait(timeout)

    def latest_weights(self) -> tuple[int, dict]:
        """(epoch, CPU state dict) of the newest weights the process sent: those of the last epoch
        end, pause or stop. Before the first, the weights the run starts from (its checkpoint's, or
        a fresh model's, which is what the process starts from with the run's seed)."""
        with self._lock:
            if self._weights is None:
                from .checkpoint import load_checkpoint
                from .trainer import initial_model

                if self.checkpoint_path.exists():
                    state = load_checkpoint(self.checkpoint_path).state
                    self._weights = (state.epoch, state.model_state)
                else:
                    self._weights = (0, initial_model(self.config, self.dataset).state_dict())
            epoch, state = self._weights
            if any(isinstance(value, np.ndarray) for value in state.values()):  # as sent: made tensors once
                import torch

                self._weights = (epoch, {key: torch.from_numpy(value) for key, value in state.items()})
            return self._weights

    # -- commands ------------------------------------------------------------------------------------
    def start(self, process: RunProcess) -> None:
        with self._lock:
            if self.status != "queued":
                raise TrainingError(f"run {self.name} cannot start: it is {self.status}")
            self.process = process
            process.run_id = self.run_id
            self._snapshot = self._waiting_snapshot("starting")
        if not process.send("train", self.run_id):
            self._fail("its process ended before the run could start")

    def pause(self) -> None:
        self._send("pause")

    def resume(self) -> None:
        self._send("resume")

    def stop(self) -> None:
        """Stop at the next batch boundary (saving); a job still queued is cancelled at once."""
        with self._lock:
            if self.status == "queued":
                self._snapshot = self._waiting_snapshot("cancelled")
                cancelled = True
            else:
                cancelled = False
        if cancelled:
            self._ended.set()
        else:
            self._send("stop")

    def set_lr(self, lr: float) -> None:
        self._send("lr", check_lr(lr))

    def set_beta(self, beta: float) -> None:
        self._send("beta", check_beta(beta))

    def rename(self, name: str) -> None:
        name = " ".join(str(name).split())
        if not name:
            raise TrainingError("a run's name cannot be empty")
        with self._lock:
            self.name = name
            self._snapshot = replace(self._snapshot, name=name, version=self._snapshot.version + 1)
        self._send("rename", name)

    def save(self, path) -> None:
        raise TrainingError("a run training in a process of its own saves itself every epoch and when it stops")

    def _send(self, *command) -> None:
        if self.process is not None and self.status in TRAINING:
            self.process.send(command[0], self.run_id, *command[1:])

    # -- what its process says (on the process's reader thread) --------------------------------------
    def received(self, kind: str, *args) -> None:
        if kind == "snapshot":
            snapshot = args[0]
            with self._lock:
                # The name is the server's: a rename here is not undone by a snapshot sent before it.
                self._snapshot = replace(
                    snapshot, name=self.name, version=max(snapshot.version, self._snapshot.version + 1)
                )
        elif kind == "weights":
            # Kept as the arrays sent until a page asks for them (latest_weights): following a run needs
            # no torch, and a fresh server's first run ends its first epoch before torch has loaded here.
            epoch, arrays = args
            with self._lock:
                self._weights = (epoch, dict(arrays))
        elif kind == "ended":
            self._end()
        elif kind == "not started":
            reason = args[0]
            if reason == "busy":  # another process trains on the device: wait in the queue again
                with self._lock:
                    self.process = None
                    self._snapshot = self._waiting_snapshot("queued")
            elif reason == "gone":  # another server's process took it, or it was cancelled there
                self._fail(
                    "it was taken out of the queue elsewhere (another server trains or cancelled it)",
                    status="cancelled",
                )
            else:
                self._fail(reason.removeprefix("failed: "))
        elif kind == "exited" and self.status in ACTIVE:
            self._fail(
                f"its process ended unexpectedly (exit code {args[0]}); the checkpoint of its last "
                "finished epoch is kept, and it can be resumed from the Checkpoints page"
            )

    def _fail(self, message: str, status: str = "failed") -> None:
        with self._lock:
            self._snapshot = replace(self._snapshot, status=status, message=message, version=self._snapshot.version + 1)
        self._end()

    def _end(self) -> None:
        with self._lock:
            if self._ended.is_set():
                return
            if self.process is not None and self.process.run_id == self.run_id:
                self.process.run_id = None
        try:
            if self._on_end is not None:
                self._on_end(self)
        finally:
            self._ended.set()

    def _waiting_snapshot(self, status: str) -> Snapshot:
        """What is known of a run before its process sends anything: its config and counters."""
        history = History()
        self._versions += 1
        return Snapshot(
            run_id=self.run_id,
            name=self.name,
            version=self._versions,
            status=status,
            message=None,
            config=self.config.to_dict(),
            dataset=self.config.data if self._dataset is None else self._dataset.name,
            device=str(self.device),
            epoch=0,
            epochs=self.config.epochs,
            step=0,
            steps_per_epoch=0,
            total_steps=0,
            samples_per_s=0.0,
            eta_s=None,
            elapsed_s=0.0,
            lr=self.config.lr,
            beta=self.config.beta,
            curves=history.curves(),
            kl_per_dim=np.zeros(self.config.latent_dim, dtype=np.float32),
            epoch_metrics=(),
            events=(),
            frames=(),
            fixed_inputs=np.zeros((0, 1, 1, 1), dtype=np.uint8),
            checkpoint_path=str(self.checkpoint_path),
        )
