"""Training on several processes with PyTorch's DistributedDataParallel, as started by `torchrun`.

torchrun starts one process per GPU (or several on CPUs) and tells each its place through the
environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). Every process runs the one
loop of loop.py on the same data; what this module changes is small and keeps each step the step a
single process would take with the same global batch (`--batch-size`):

- The batch: process `rank` takes every world_size-th image of the batch of the single-process
  shuffle (`loop.batch_indices`). The shuffle, the step counter and so a resume are those of a single
  process, whatever the number of processes.
- The noise: every process draws the noise of the whole batch from the same generator and keeps
  its own rows, so the z of each image is the one a single process draws, and every process's
  generator stays in step (rank 0's checkpoint resumes exactly in any number of processes).
- The gradient: DDP averages the gradients of the processes. Process r scales its shard's mean
  loss by world_size * n_r / n (its share of the n images of the batch), so the average is the
  gradient of the batch's mean loss, also when the last batch splits unevenly. Free bits clamp the
  KL of each dimension averaged over the WHOLE batch, so with free bits the processes add up their
  KL per dimension first (one all-reduce of latent_dim numbers per step, on the device).
- A model's own loss term (VQ-VAE's codebook and commitment) is scaled like the rest, and its
  running statistics (buffers such as VQ-VAE's code usage) become the share-weighted sum of the
  processes' updates, which is the update by the whole batch.
- The logged losses: each process records its shard's values times its share; a flush adds them
  up over the processes (one all-reduce per flush, none per step), so every process holds the
  global curves and sees a divergence at the same step.
- Evaluation and pictures: every process holds the same weights and evaluates the same test images
  with the same noise, so each computes the metrics a single process would; rank 0 alone writes
  checkpoints, progress and the result line.

NCCL joins processes on GPUs (each on the GPU of its LOCAL_RANK), Gloo on CPUs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from .device import resolve_device
from .errors import ConfigError
from .losses import LossTerms

if TYPE_CHECKING:
    from .trainer import Trainer

LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
RENDEZVOUS_VARIABLES = ("MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Launch:
    """This process's place among the processes torchrun started."""

    rank: int  # 0 .. world_size - 1, over all nodes
    local_rank: int  # 0 .. processes on this node - 1: which GPU of the node
    world_size: int

    @property
    def writes(self) -> bool:
        """Whether this process writes the run's files and prints its result (rank 0 alone)."""
        return self.rank == 0


def torchrun_launch(environ: Mapping[str, str] = os.environ) -> Launch | None:
    """The launch torchrun describes in `environ`; None for a process started on its own (or a
    torchrun of one process, which trains exactly as a single process does)."""
    if "WORLD_SIZE" not in environ:
        return None
    values = {}
    for name in LAUNCH_VARIABLES:
        text = environ.get(name, "").strip()
        if not text.isdigit():
            raise ConfigError(
                f"{name} must be a whole number when WORLD_SIZE is set (torchrun sets both), not {text[:20]!r}"
            )
        values[name] = int(text)
    launch = Launch(rank=values["RANK"], local_rank=values["LOCAL_RANK"], world_size=values["WORLD_SIZE"])
    if launch.world_size < 1 or launch.rank >= launch.world_size:
        raise ConfigError(f"RANK {launch.rank} does not fit WORLD_SIZE {launch.world_size}")
    if launch.world_size == 1:
        return None
    missing = [name for name in RENDEZVOUS_VARIABLES if not environ.get(name)]
    if missing:
        raise ConfigError(f"{' and '.join(missing)} not set: start distributed training with torchrun, which sets them")
    return launch


def refuse_under_torchrun(command: str) -> None:
    """ConfigError when a command that trains several runs in one process is started by torchrun:
    its processes train one run together, so each run wants a torchrun of its own."""
    if torchrun_launch() is not None:
        raise ConfigError(
            f"{command} trains its runs one after the other in one process; under torchrun, "
            "start one `train` per run instead"
        )


def join(launch: Launch, device_name: str) -> torch.device:
    """Join the process group (NCCL on GPUs, Gloo on CPUs) and return this process's device."""
    device = resolve_device(device_name)
    if device.type == "cuda":
        if launch.local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK {launch.local_rank} has no GPU: this node has "
                f"{torch.cuda.device_count()}; start at most that many processes per node"
            )
        device = torch.device("cuda", launch.local_rank)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    elif device.type == "cpu":
        dist.init_process_group("gloo")
    else:
        raise ConfigError(
            f"distributed training runs on CUDA GPUs or CPUs, not on {device.type}; use --device cuda or --device cpu"
        )
    return device


def leave() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def first_on_each_node(launch: Launch | None) -> Iterator[None]:
    """Run the block in local rank 0 first, then in the node's other processes: one download of a
    dataset per node, never two processes writing the same file."""
    if launch is not None and launch.local_rank != 0:
        dist.barrier()
    yield
    if launch is not None and launch.local_rank == 0:
        dist.barrier()


def check_shards(train_images: int, batch_size: int, world_size: int) -> None:
    """ConfigError when a batch would leave a process without an image (its loss would be NaN)."""
    last = train_images % batch_size or batch_size
    smallest = min(batch_size, train_images, last)
    if smallest < world_size:
        raise ConfigError(
            f"with {world_size} processes every batch needs at least {world_size} images, but batch size "
            f"{batch_size} on {train_images} training images leaves {smallest} in the last batch of each epoch; "
            "choose another --batch-size or fewer processes"
        )


class ShardedStep:
    """The part of a training step that differs when processes share the batch (see the module's
    docstring); the loop asks it for the noise and for the loss to back-propagate."""

    def __init__(self, rank: int, world_size: int):
        self.rank, self.world_size = rank, world_size

    def noise(self, trainer: Trainer, batch_images: int, dtype: torch.dtype) -> torch.Tensor | None:
        """This process's rows of the noise a single process draws for the batch (None for a model
        that draws none)."""
        if not trainer.model.variational:
            return None
        eps = torch.randn(
            (batch_images, trainer.config.latent_dim), generator=trainer.noise, device=trainer.device, dtype=dtype
        )
        return eps[self.rank :: self.world_size]

    def combine(
        self, trainer: Trainer, terms: LossTerms, extra: torch.Tensor | None, share: float, beta: float
    ) -> tuple[torch.Tensor, LossTerms]:
        """After the forward pass on this process's shard, `share` of the batch's images: (the loss
        whose gradient, averaged by DDP, is the batch's; the terms to record, which a flush adds up
        over processes into the batch's values). `extra` is the model's own loss term, a batch mean
        like the others. The model's running statistics (VQ-VAE's code usage) become those of the
        whole batch."""
        free_bits, variational = trainer.config.free_bits, trainer.model.variational
        self._merge_buffers(trainer.model, share)
        if free_bits > 0 and variational:
            batch_kl = self.summed(terms.kl_per_dim.detach() * share)  # the KL per dimension of the whole batch
            # clamp's gradient passes where the batch's KL is at or above the floor: the same mask here.
            counted = (batch_kl >= free_bits).to(terms.kl_per_dim.dtype)
            gradient_loss = terms.recon + beta * (terms.kl_per_dim * counted).sum()
            total = terms.recon + beta * torch.clamp(batch_kl, min=free_bits).sum()
        else:
            gradient_loss = total = terms.total
        if extra is not None:
            gradient_loss = gradient_loss + extra
        recorded = LossTerms(
            total=total * share, recon=terms.recon * share, kl=terms.kl * share, kl_per_dim=terms.kl_per_dim * share
        )
        return gradient_loss * (self.world_size * share), recorded

    def _merge_buffers(self, model: torch.nn.Module, share: float) -> None:
        """Each floating-point buffer set to the share-weighted sum of the processes' values.

        A model's buffers are running statistics its forward pass updates from the batch (VQ-VAE:
        r <- d r + (1 - d) mean over the batch); with r the same in every process before the step,
        the weighted sum of each process's update is the update by the whole batch. (DDP's own
        buffer sync, switched off here, would give every process rank 0's, learnt from its shard.)"""
        for buffer in model.buffers():
            if buffer.is_floating_point():
                buffer.copy_(self.summed(buffer * share))

    def summed(self, tensor: torch.Tensor) -> torch.Tensor:
        """`tensor` added up over the processes (in place, and returned)."""
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor


def distribute(trainer: Trainer, launch: Launch) -> None:
    """Make `trainer` one of `launch.world_size` processes training together: DDP around its model
    and the shard of each batch. Call it after the trainer is built (and any state loaded): DDP
    starts by giving every process rank 0's weights."""
    check_shards(trainer.train_x.shape[0], trainer.config.batch_size, launch.world_size)
    device_ids = [trainer.device.index] if trainer.device.type == "cuda" else None
    # forward_sync_buffers off: ShardedStep merges the buffers itself.
    wrapped = DistributedDataParallel(trainer.model, device_ids=device_ids, forward_sync_buffers=False)
    trainer.share_steps(wrapped, ShardedStep(launch.rank, launch.world_size))
