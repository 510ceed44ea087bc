"""A run's state: model, optimiser, data on the device, counters and history. `loop.py` trains it.

Speed: the data sits on the device as one tensor; a batch is an index into it (no DataLoader, no
per-sample Python). Loss values stay on the device until `flush()` copies a block of them to the
host at once, so the loop does not wait for the device after every step. Adam uses its fused
kernel (one pass over each weight instead of a dozen small operations).

Exact resume: the shuffle of an epoch is a function of (seed, epoch), the noise generator's state
is saved, and `state()` / `load_state()` carry everything else, so a run stopped anywhere and
resumed computes the same bits as one that never stopped.

Wall time: each flush notes in the history the seconds the run had trained by its last step (see
history.RunClock); a resumed run's clock goes on from the time it was saved at."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from .config import TrainConfig, check_creatable, limits
from .device import resolve_device
from .errors import ConfigError, TrainingError
from .history import TRACKED_DTYPE, Frame, History, tracked_count
from .losses import LossTerms, beta_schedule
from .metrics import evaluate, evaluation_seed
from .models import VAE, build_model
from .speed import check_precision

FIXED_INPUTS = 16  # test images whose reconstructions are kept every epoch
FIXED_SAMPLES = 64  # prior draws decoded every epoch
MAX_EVAL_IMAGES = 10_000

if TYPE_CHECKING:
    from .data import ImageDataset


class Divergence(TrainingError):
    """The loss became NaN or infinite."""


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Images in [0, 1] as 0..255 bytes, computed by numpy: a job is made on its caller's thread (a
    Streamlit script's), and one parallel torch operation there would leave that thread an idle
    OpenMP team, which nearly halves the speed of a two-thread training thread beside it (measured:
    an epoch 1.65 s -> 2.9 s; threads.py)."""
    pixels = np.clip(images.detach().cpu().numpy(), 0.0, 1.0)
    return np.rint(pixels * 255).astype(np.uint8)


def epoch_order(seed: int, epoch: int, count: int, device: torch.device) -> torch.Tensor:
    """The shuffle of one epoch, a pure function of (seed, epoch), so a resumed run sees the same batches."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(count, generator=generator).to(device)


def make_adam(model: VAE, lr: float) -> torch.optim.Adam:
    """Adam with its fused kernel where PyTorch has one for the device: on the CPU it made a step of
    the default MLP about 7% faster than the per-tensor loop."""
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, ValueError):  # a device or dtype without the fused kernel
        return torch.optim.Adam(model.parameters(), lr=lr)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state_dict: dict) -> None:
    """Load `state_dict` into `optimizer` without sharing memory with it, keeping the optimizer's own
    implementation choice (fused or not) whatever the saved groups say.

    Why both: `Optimizer.load_state_dict` keeps the given tensors (a later step would modify the
    caller's copy in place), and it takes the "fused" flag from the saved groups, so a checkpoint
    from another version would silently change the arithmetic of a resumed run."""
    state_dict = _clone_tensors(state_dict)
    # Before loading, not after: torch places the "step" counters by the flags of the saved groups.
    for saved, own in zip(state_dict["param_groups"], optimizer.param_groups):
        saved.update({key: own.get(key) for key in ("fused", "foreach")})
    optimizer.load_state_dict(state_dict)


def _clone_tensors(value):
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {key: _clone_tensors(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_clone_tensors(item) for item in value)
    return value


def _copy_into(buffers: dict, live: dict) -> dict:
    """`live` (name -> tensor or plain value) copied into the same-named tensors of `buffers` where
    they fit, else into new ones. Reusing buffers matters: allocating megabytes afresh at every
    flush page-faults, and made keeping the last good weights ~10x slower than the copy itself."""
    kept = {}
    for key, value in live.items():
        if not isinstance(value, torch.Tensor):
            kept[key] = copy.deepcopy(value)
            continue
        buffer = buffers.get(key)
        if (
            buffer is None
            or buffer.shape != value.shape
            or buffer.dtype != value.dtype
            or buffer.device != value.device
            or buffer.stride() != value.stride()
        ):
            buffer = value.detach().clone()
        else:
            buffer.copy_(value.detach())
        kept[key] = buffer
    return kept


class LastGoodWeights:
    """Weights and optimiser state as of the last flush whose losses were all finite; restored when
    training diverges. Refreshed in place at every flush, so it must never share memory with the model."""

    def __init__(self):
        self._model: dict = {}
        self._optimizer: dict = {"state": {}, "param_groups": []}

    def keep(self, model: VAE, optimizer: torch.optim.Optimizer) -> None:
        self._model = _copy_into(self._model, model.state_dict())
        live = optimizer.state_dict()
        previous = self._optimizer["state"]
        self._optimizer = {
            "state": {index: _copy_into(previous.get(index, {}), values) for index, values in live["state"].items()},
            "param_groups": copy.deepcopy(live["param_groups"]),
        }

    def restore(self, model: VAE, optimizer: torch.optim.Optimizer) -> None:
        model.load_state_dict(self._model)  # copies into the parameters
        load_optimizer_state(optimizer, self._optimizer)  # copies too, so the buffers stay ours


@dataclass
class TrainerState:
    """Everything a checkpoint must carry for an exact resume."""

    model_state: dict
    optimizer_state: dict
    noise_state: torch.Tensor
    epoch: int  # completed epochs
    step: int  # completed steps, all epochs
    step_in_epoch: int
    lr: float
    beta: float
    history: History


def check_trainable(config: TrainConfig, dataset: ImageDataset) -> None:
    """Raise a clear error now, before any thread or device work, when `config` cannot train on
    `dataset` (a cvae without labels, a conv model on images that are too small...)."""
    check_creatable(config)
    if config.model == "cvae" and not dataset.has_labels:
        raise TrainingError("the cvae model needs a labelled dataset; this one has no labels")
    parameters, activations = model_cost(config, dataset.image_shape, dataset.num_classes)
    limit = limits()
    if parameters > limit.max_parameters:
        raise ConfigError(
            f"this {config.model} model has {parameters:,} parameters, more than the limit of "
            f"{limit.max_parameters:,} (VAE_STUDIO_MAX_PARAMETERS); use fewer or narrower layers"
        )
    if activations > limit.max_activation_floats:
        raise ConfigError(
            f"a batch of {config.batch_size:,} through this model keeps {activations:,} numbers for "
            f"its backward pass, more than the limit of {limit.max_activation_floats:,} "
            "(VAE_STUDIO_MAX_ACTIVATION_FLOATS); use a smaller batch or model"
        )


def model_cost(config: TrainConfig, image_shape, num_classes: int) -> tuple[int, int]:
    """(parameters, numbers one batch's forward pass keeps: every layer's output).

    The parameters are counted on the meta device (no memory, nothing computed). The outputs are
    counted by running batches of 1 and 2 through the model on the CPU, its weights zeros, and
    extending the count linearly to the batch size: a forward pass on the meta device would import
    torch._dynamo (1.2 s) in the server the first time, at the first Start. Only a model within the
    parameter limit is made, so the check itself stays small."""
    with torch.device("meta"):
        model = build_model(config, image_shape, num_classes)
    parameters = sum(p.numel() for p in model.parameters())
    if parameters > limits().max_parameters:
        return parameters, 0  # refused for its parameters; its outputs are not worth making it for
    # Zeros in place of the meta tensors (to_empty would import sympy, 0.4 s, for the same).
    zeros = {key: torch.zeros(value.shape, dtype=value.dtype) for key, value in model.state_dict().items()}
    model.load_state_dict(zeros, assign=True)
    with torch.no_grad():
        one, two = (_outputs_kept(model, batch, image_shape) for batch in (1, 2))
    return parameters, one + (two - one) * (config.batch_size - 1)


def _outputs_kept(model: VAE, batch: int, image_shape) -> int:
    """How many numbers the outputs of `model`'s layers hold for a forward pass of `batch` images."""
    kept = [0]

    def count(module, inputs, output) -> None:
        kept[0] += output.numel() if isinstance(output, torch.Tensor) else 0

    hooks = [module.register_forward_hook(count) for module in model.modules() if not list(module.children())]
    try:
        model(torch.zeros(batch, *image_shape), torch.zeros(batch, dtype=torch.long) if model.conditional else None)
    finally:
        for hook in hooks:
            hook.remove()
    return kept[0]


def initial_model(config: TrainConfig, dataset: ImageDataset) -> VAE:
    """The model with the initial weights of `config.seed`, on the CPU; the global RNG is untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return build_model(config, dataset.image_shape, dataset.num_classes)


class ShardStrategy(Protocol):
    """How processes that train one run together share each step (distributed.ShardedStep): the
    loop asks it for this process's noise and for the loss to back-propagate, a flush for the sum
    of the processes' losses. The trainer is handed one (`share_steps`) and never imports it."""

    rank: int
    world_size: int

    def noise(self, trainer: Trainer, batch_images: int, dtype: torch.dtype) -> torch.Tensor | None: ...

    def combine(
        self, trainer: Trainer, terms: LossTerms, extra: torch.Tensor | None, share: float, beta: float
    ) -> tuple[torch.Tensor, LossTerms]: ...

    def summed(self, tensor: torch.Tensor) -> torch.Tensor: ...


class Trainer:
    """One run: model, optimiser, data on the device, counters and history.

    `forward_model` is the module a training step calls: the model itself, or (distributed
    training) a wrapper around it such as DistributedDataParallel; `rank` and `world_size` say
    which shard of each batch this process takes (`loop.batch_indices`), and `shard` (None in a
    single process; see `share_steps`) computes its share of a step and adds up the processes'
    losses at a flush."""

    def __init__(
        self,
        config: TrainConfig,
        dataset: ImageDataset,
        *,
        state: TrainerState | None = None,
        device: torch.device | None = None,
    ):
        check_trainable(config, dataset)
        self.config = config
        self.dataset = dataset
        self.device = device or resolve_device(config.device)
        check_precision(config.precision, self.device)
        self.model: VAE = initial_model(config, dataset).to(self.device)
        self.forward_model: torch.nn.Module = self.model
        self.rank, self.world_size = 0, 1
        self.shard: ShardStrategy | None = None  # handed in by share_steps
        self.optimizer = make_adam(self.model, config.lr)
        self.noise = torch.Generator(device=self.device).manual_seed(config.seed + 1)
        self.train_x = dataset.train_x.to(self.device)
        self.train_y = dataset.train_y.to(self.device) if dataset.train_y is not None else None
        self.test_x = dataset.test_x[:MAX_EVAL_IMAGES].to(self.device)
        self.test_y = dataset.test_y[:MAX_EVAL_IMAGES].to(self.device) if dataset.test_y is not None else None
        self.fixed_x = self.test_x[:FIXED_INPUTS]
        self.fixed_y = self.test_y[:FIXED_INPUTS] if self.test_y is not None else None
        tracked = tracked_count(config.latent_dim)  # whose latent means each frame keeps
        self.tracked_x = self.test_x[:tracked]
        self.tracked_y = self.test_y[:tracked] if self.test_y is not None else None
        prior = torch.Generator().manual_seed(config.seed + 2)
        self.fixed_z = torch.randn(FIXED_SAMPLES, config.latent_dim, generator=prior).to(self.device)
        self.fixed_z_labels = (
            torch.arange(FIXED_SAMPLES, device=self.device) % max(1, dataset.num_classes)
            if self.model.conditional
            else None
        )
        self.epoch = 0
        self.step = 0
        self.step_in_epoch = 0
        self.lr = config.lr
        self.beta = config.beta
        self.history = History()
        self._order: torch.Tensor | None = None
        self._pending: list[torch.Tensor] = []
        self._pending_meta: list[tuple[int, float, float]] = []
        self._kl_dims = torch.zeros(config.latent_dim, device=self.device)
        self._kl_dim_steps = 0
        self.latest_kl_per_dim = np.zeros(config.latent_dim, dtype=np.float32)
        self._last_good = LastGoodWeights()
        self._last_good.keep(self.model, self.optimizer)
        if state is not None:
            self.load_state(state)
        else:
            self._start_clock()

    def share_steps(self, forward_model: torch.nn.Module, strategy: ShardStrategy) -> None:
        """Train as process `strategy.rank` of `strategy.world_size`: steps call `forward_model` (a
        wrapper such as DistributedDataParallel around `self.model`) and `strategy` shares each
        batch. The caller that builds a distributed run hands these in (distributed.distribute)."""
        self.forward_model = forward_model
        self.rank, self.world_size = strategy.rank, strategy.world_size
        self.shard = strategy

    # -- counters -------------------------------------------------------------------------------
    @property
    def steps_per_epoch(self) -> int:
        return steps_per_epoch(self.train_x.shape[0], self.config.batch_size)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.config.epochs

    @property
    def finished(self) -> bool:
        return self.epoch >= self.config.epochs

    def set_lr(self, lr: float) -> None:
        self.lr = float(lr)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr

    def current_beta(self) -> float:
        """The KL weight of the next step: the user's beta times the annealing factor."""
        return beta_schedule(
            self.step,
            self.steps_per_epoch,
            beta=self.beta,
            anneal=self.config.kl_anneal,
            warmup_epochs=self.config.kl_warmup_epochs,
        )

    def epoch_order(self) -> torch.Tensor:
        """The shuffle of the current epoch (made once per epoch)."""
        if self._order is None:
            self._order = epoch_order(self.config.seed, self.epoch, self.train_x.shape[0], self.device)
        return self._order

    # -- what a step leaves behind --------------------------------------------------------------
    def record(self, terms: LossTerms, beta: float) -> None:
        """Count a step and keep its losses, on the device until the next flush."""
        self.step += 1
        self.step_in_epoch += 1
        self._pending.append(torch.stack([terms.total.detach(), terms.recon.detach(), terms.kl.detach()]))
        self._pending_meta.append((self.step, beta, self.lr))
        self._kl_dims += terms.kl_per_dim.detach()
        self._kl_dim_steps += 1

    @property
    def pending_steps(self) -> int:
        return len(self._pending)

    def flush(self) -> int:
        """Copy the pending step values to the history in one transfer; raise Divergence (after
        restoring the last good weights) at the first non-finite loss. Returns the steps flushed."""
        if not self._pending:
            return 0
        values = self._over_processes(torch.stack(self._pending)).cpu().numpy().astype(np.float64)
        meta = np.asarray(self._pending_meta, dtype=np.float64)
        self._pending.clear()
        self._pending_meta.clear()
        bad = ~np.isfinite(values).all(axis=1)
        if bad.any():
            first = int(np.argmax(bad))
            step, value = int(meta[first, 0]), values[first, 0]
            self.history.add_steps(np.column_stack([meta[:first, :1], values[:first], meta[:first, 1:]]))
            if first:
                self._note_time(int(meta[first - 1, 0]))
            self._last_good.restore(self.model, self.optimizer)
            raise Divergence(
                f"training diverged at step {step}: the loss became {value} (lr {meta[first, 2]:g}, "
                f"beta {meta[first, 1]:g}); the last good weights are kept. Try a smaller learning rate."
            )
        self.history.add_steps(np.column_stack([meta[:, :1], values, meta[:, 1:]]))
        self._note_time(int(meta[-1, 0]))
        kl_dims = self._over_processes(self._kl_dims)
        self.latest_kl_per_dim = (kl_dims / max(1, self._kl_dim_steps)).cpu().numpy().astype(np.float32)
        self._kl_dims.zero_()
        self._kl_dim_steps = 0
        self._last_good.keep(self.model, self.optimizer)
        return len(values)

    def _start_clock(self) -> None:
        """Start the run's clock where its history's ends: at 0 s for a new run, at the time it was
        saved at for a resumed one (whatever time it spent on disk), and note that time at this step."""
        self._clock_zero = time.perf_counter() - self.history.seconds_trained
        self.history.add_time(self.step, self.history.seconds_trained)

    def _note_time(self, step: int) -> None:
        self.history.add_time(step, time.perf_counter() - self._clock_zero)

    def _over_processes(self, values: torch.Tensor) -> torch.Tensor:
        """Per-process shares added up into the batch's values (they are the values in one process)."""
        return self.shard.summed(values) if self.shard is not None else values

    def end_epoch(self) -> dict:
        """Evaluate on the test set, keep the epoch's pictures, and move to the next epoch."""
        self.flush()
        self.epoch += 1
        self.step_in_epoch = 0
        self._order = None
        eval_noise = torch.Generator(device=self.device).manual_seed(evaluation_seed(self.config.seed, self.epoch))
        result = evaluate(self.model, self.test_x, self.test_y, recon=self.config.recon, generator=eval_noise)
        matrix = self.history.step_matrix()
        this_epoch = matrix[matrix[:, 0] > self.step - self.steps_per_epoch]
        metrics = {
            "epoch": self.epoch,
            "step": self.step,
            "train_loss": float(this_epoch[:, 1].mean()) if len(this_epoch) else float("nan"),
            **result.as_dict(),
        }
        self.history.epochs.append(metrics)
        reconstructions, samples = self.pictures()
        self.history.add_frame(Frame(self.epoch, reconstructions, samples, self.tracked_means()))
        return metrics

    @torch.no_grad()
    def pictures(self) -> tuple[np.ndarray, np.ndarray]:
        """Reconstructions (decoded means) of the fixed test images and decodings of the fixed z."""
        self.model.eval()
        mu, _ = self.model.encode(self.fixed_x, self.fixed_y)
        reconstructions = torch.sigmoid(self.model.decode(mu, self.fixed_y))
        samples = torch.sigmoid(self.model.decode(self.fixed_z, self.fixed_z_labels))
        return to_uint8(reconstructions), to_uint8(samples)

    @torch.no_grad()
    def tracked_means(self) -> np.ndarray:
        """The latent means of the tracked test images, as a frame keeps them (float16; an
        autoencoder's far-flung codes are clipped to float16's range rather than becoming inf)."""
        self.model.eval()
        mu, _ = self.model.encode(self.tracked_x, self.tracked_y)
        limit = float(np.finfo(TRACKED_DTYPE).max)
        return torch.nan_to_num(mu.float(), nan=0.0).clamp(-limit, limit).cpu().numpy().astype(TRACKED_DTYPE)

    # -- state ------------------------------------------------------------------------------------
    def state(self) -> TrainerState:
        """A consistent copy for a checkpoint (flushes first, so no step is lost)."""
        self.flush()
        return TrainerState(
            model_state={k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            optimizer_state=copy.deepcopy(self.optimizer.state_dict()),
            noise_state=self.noise.get_state().clone(),
            epoch=self.epoch,
            step=self.step,
            step_in_epoch=self.step_in_epoch,
            lr=self.lr,
            beta=self.beta,
            history=copy.deepcopy(self.history),
        )

    def load_state(self, state: TrainerState) -> None:
        self.model.load_state_dict(state.model_state)
        load_optimizer_state(self.optimizer, state.optimizer_state)
        self.noise.set_state(state.noise_state)
        self.epoch, self.step, self.step_in_epoch = state.epoch, state.step, state.step_in_epoch
        self.beta = state.beta
        self.set_lr(state.lr)
        self.history = copy.deepcopy(state.history)
        self.history.truncate(self.step)
        self._start_clock()
        self._order = None
        self._last_good.keep(self.model, self.optimizer)


def steps_per_epoch(train_images: int, batch_size: int) -> int:
    """Batches in one epoch; the last one may be smaller."""
    return math.ceil(train_images / batch_size)
