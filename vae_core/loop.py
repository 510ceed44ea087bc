"""The training loop: the one training step and the one epoch loop of VAE Studio.

The CLI, the background job (jobs.py), the benchmarks and distributed training all run this; none has
its own.

It reads like pytorch/examples' vae/main.py: for each batch of the epoch's shuffle, forward, loss,
zero_grad, backward, step; then evaluate. The `Trainer` (trainer.py) holds what it works on and
supplies the speed: data already on the device, losses kept there until a flush copies a block of
them to the host (no step waits for the device), and fused Adam.

Callers plug in through `Hooks`, at batch boundaries: `before_step` (apply commands, or return
False to stop), `after_flush` (progress, snapshots) and `after_epoch` (checkpoints).

Distributed training wraps the model in one place: a step calls `trainer.forward_model` (the model
itself, or e.g. a DistributedDataParallel around it), and each process takes its shard of the one
single-process shuffle through `batch_indices`, so the batches, and a resume, stay those of a
single process.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .losses import vae_loss
from .models import model_log_variance
from .speed import autocast, compute_dtype
from .trainer import Trainer

if TYPE_CHECKING:
    from .config import TrainConfig
    from .data import ImageDataset


def _go_on(trainer: Trainer) -> bool:
    return True


def _nothing(*args) -> None:
    return None


@dataclass(frozen=True)
class Hooks:
    """What a caller runs at the loop's boundaries; by default nothing. Losses reach the history at
    each flush: after `flush_steps` steps, after `flush_seconds` when set, and at each epoch end."""

    before_step: Callable[[Trainer], bool] = _go_on  # False stops the run before this step
    after_flush: Callable[[Trainer], None] = _nothing
    after_epoch: Callable[[Trainer, dict], None] = _nothing  # (trainer, the epoch's test metrics)
    flush_steps: int = 200
    flush_seconds: float | None = None


def batch_indices(
    order: torch.Tensor, step_in_epoch: int, batch_size: int, rank: int = 0, world_size: int = 1
) -> torch.Tensor:
    """The images of a step: the next `batch_size` of the epoch's shuffle, of which process `rank`
    of `world_size` takes every world_size-th."""
    batch = order[step_in_epoch * batch_size : (step_in_epoch + 1) * batch_size]
    return batch if world_size == 1 else batch[rank::world_size]


def train_step(trainer: Trainer) -> None:
    """One optimiser step on the next batch of the current epoch; its losses stay on the device.
    Several processes (distributed.py) each take a shard of the batch and compute its share."""
    config, shard = trainer.config, trainer.shard
    index = batch_indices(
        trainer.epoch_order(), trainer.step_in_epoch, config.batch_size, trainer.rank, trainer.world_size
    )
    x = trainer.train_x[index]
    # Only a conditional model reads labels; the others would discard a gathered batch of them.
    y = trainer.train_y[index] if trainer.train_y is not None and trainer.model.conditional else None
    beta = trainer.current_beta()
    batch_images = min(config.batch_size, trainer.train_x.shape[0] - trainer.step_in_epoch * config.batch_size)
    with autocast(trainer.device, config.precision):
        eps = shard.noise(trainer, batch_images, compute_dtype(config.precision)) if shard else None
        output = trainer.forward_model(x, y, generator=trainer.noise, eps=eps)
        terms = vae_loss(
            output,
            x,
            recon=config.recon,
            beta=beta,
            free_bits=config.free_bits,
            variational=trainer.model.variational,
            log_variance=model_log_variance(trainer.model),
            recon_reduction=config.recon_reduction,
        )
        extra = trainer.model.auxiliary_loss(output)  # a model's own term: VQ-VAE's codebook and commitment
    loss = terms.total if extra is None else terms.total + extra
    if shard:
        loss, terms = shard.combine(trainer, terms, extra, x.shape[0] / batch_images, beta)
    trainer.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    trainer.optimizer.step()
    trainer.record(terms, beta)


def train_epoch(trainer: Trainer, hooks: Hooks) -> bool:
    """The rest of the current epoch, then its evaluation. False when a hook stopped it."""
    trainer.forward_model.train()
    last_flush = time.perf_counter()
    while trainer.step_in_epoch < trainer.steps_per_epoch:
        if not hooks.before_step(trainer):
            return False
        train_step(trainer)
        due = trainer.pending_steps >= hooks.flush_steps or (
            hooks.flush_seconds is not None and time.perf_counter() - last_flush >= hooks.flush_seconds
        )
        if due:
            trainer.flush()
            hooks.after_flush(trainer)
            last_flush = time.perf_counter()
    trainer.flush()
    hooks.after_flush(trainer)
    hooks.after_epoch(trainer, trainer.end_epoch())
    return True


def run_to_end(trainer: Trainer, hooks: Hooks = Hooks()) -> bool:
    """Train until the configured number of epochs is done (True), or until a hook stops the run
    (False; every step taken is flushed to the history)."""
    while not trainer.finished:
        if not train_epoch(trainer, hooks):
            trainer.flush()
            return False
    return True


def train(config: TrainConfig, dataset: ImageDataset) -> Trainer:
    """A run trained from scratch to its last epoch, synchronously. For scripts and experiments; the app
    trains through jobs.py."""
    trainer = Trainer(config, dataset)
    run_to_end(trainer)
    return trainer
