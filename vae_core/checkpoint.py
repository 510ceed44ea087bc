"""A run in one `.safetensors` file: weights, optimiser state, RNG state, step history and the
pictures of each epoch as tensors; config, data fingerprint, counters, per-epoch metrics and library
versions as JSON metadata. Reading never unpickles anything (see `safetensors_io`), and every
tensor is checked against the model its config builds before any weight is loaded.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import torch

from . import __version__
from .config import TrainConfig
from .errors import CheckpointError, ConfigError
from .history import STEP_FIELDS, Frame, History
from .models import VAE, build_model
from .safetensors_io import (flatten_optimizer_state, read_checkpoint, unflatten_optimizer_state,
                             write_checkpoint, checkpoint_to_bytes)
from .trainer import TrainerState

MODEL_PREFIX = "model."
REQUIRED_FIELDS = ("config", "dataset", "epoch", "step", "step_in_epoch", "lr", "beta", "optimizer", "history")


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    fingerprint: str
    image_shape: tuple[int, int, int]
    num_classes: int
    class_names: tuple[str, ...] | None


@dataclass(frozen=True)
class RunCheckpoint:
    """A checkpoint read back and checked."""

    run_id: str
    config: TrainConfig
    dataset: DatasetInfo
    state: TrainerState
    status: str
    created: str
    versions: dict
    path: str | None = None

    def build_model(self) -> VAE:
        """The trained model on the CPU, in eval mode."""
        model = build_model(self.config, self.dataset.image_shape, self.dataset.num_classes)
        model.load_state_dict(self.state.model_state)
        return model.eval()

    def summary(self) -> dict:
        last = self.state.history.epochs[-1] if self.state.history.epochs else {}
        return {"run_id": self.run_id, "status": self.status, "epoch": self.state.epoch, "step": self.state.step,
                "dataset": self.dataset.name, "model": self.config.model, "latent_dim": self.config.latent_dim,
                "beta": self.state.beta, "lr": self.state.lr, "recon": self.config.recon,
                "test_neg_elbo": last.get("test_neg_elbo"), "active_units": last.get("active_units"),
                "created": self.created}


# -- writing ---------------------------------------------------------------------------------------
def _payload(run_id: str, config: TrainConfig, dataset: DatasetInfo, state: TrainerState,
             status: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {MODEL_PREFIX + k: v for k, v in state.model_state.items()}
    optim_tensors, optim_layout = flatten_optimizer_state(state.optimizer_state)
    tensors.update(optim_tensors)
    tensors["rng.noise"] = state.noise_state
    tensors["history.steps"] = torch.from_numpy(np.ascontiguousarray(state.history.step_matrix()))
    for i, frame in enumerate(state.history.frames):
        tensors[f"frames.{i}.reconstructions"] = torch.from_numpy(np.ascontiguousarray(frame.reconstructions))
        tensors[f"frames.{i}.samples"] = torch.from_numpy(np.ascontiguousarray(frame.samples))
    metadata = {
        "run_id": run_id, "status": status, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": config.to_dict(),
        "dataset": {"name": dataset.name, "fingerprint": dataset.fingerprint,
                    "image_shape": list(dataset.image_shape), "num_classes": dataset.num_classes,
                    "class_names": list(dataset.class_names) if dataset.class_names else None},
        "epoch": state.epoch, "step": state.step, "step_in_epoch": state.step_in_epoch,
        "lr": state.lr, "beta": state.beta, "optimizer": optim_layout,
        "history": {"epochs": state.history.epochs, "events": state.history.events,
                    "frame_epochs": [f.epoch for f in state.history.frames]},
        "versions": {"vae_studio": __version__, "torch": torch.__version__,
                     "safetensors": safetensors.__version__, "python": platform.python_version()},
    }
    return tensors, metadata


def dataset_info(dataset) -> DatasetInfo:
    return DatasetInfo(dataset.name, dataset.fingerprint, tuple(dataset.image_shape), dataset.num_classes,
                       tuple(dataset.class_names) if dataset.class_names else None)


def save_trainer_checkpoint(trainer, run_id: str, status: str, path: str | Path) -> Path:
    """Save a `Trainer` atomically (from the thread that drives it, or once it has stopped)."""
    tensors, metadata = _payload(run_id, trainer.config, dataset_info(trainer.dataset), trainer.state(), status)
    write_checkpoint(path, tensors, metadata)
    return Path(path)


def save_job_checkpoint(job, path: str | Path) -> Path:
    """Save a `TrainingJob` (called from its training thread, or once it has ended)."""
    return save_trainer_checkpoint(job.trainer, job.run_id, job.status, path)


def checkpoint_bytes(checkpoint: RunCheckpoint) -> bytes:
    """The file's bytes, for a download."""
    tensors, metadata = _payload(checkpoint.run_id, checkpoint.config, checkpoint.dataset, checkpoint.state,
                                 checkpoint.status)
    return checkpoint_to_bytes(tensors, metadata)


# -- reading ---------------------------------------------------------------------------------------
def load_checkpoint(source: str | Path | bytes, *, name: str | None = None) -> RunCheckpoint:
    """Read and check a checkpoint; CheckpointError names the file and what is wrong."""
    label = name or ("uploaded file" if isinstance(source, (bytes, bytearray, memoryview)) else Path(source).name)
    tensors, metadata = read_checkpoint(source, name=label)
    try:
        return _parse(tensors, metadata, label, None if isinstance(source, (bytes, bytearray, memoryview))
                      else str(source))
    except CheckpointError as error:
        if str(error).startswith(label):
            raise
        raise CheckpointError(f"{label}: {error}") from None
    except ConfigError as error:
        raise CheckpointError(f"{label}: its config is invalid: {error}") from None
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as error:
        raise CheckpointError(f"{label}: the checkpoint is inconsistent: {error}") from None


def _require(condition: bool, label: str, problem: str) -> None:
    if not condition:
        raise CheckpointError(f"{label}: {problem}")


def _parse(tensors: dict, metadata: dict, label: str, path: str | None) -> RunCheckpoint:
    missing = [f for f in REQUIRED_FIELDS if f not in metadata]
    _require(not missing, label, f"metadata lacks {', '.join(missing)}")
    config = TrainConfig.from_dict(metadata["config"])
    data = metadata["dataset"]
    _require(isinstance(data, dict), label, "dataset metadata is not an object")
    shape = tuple(int(v) for v in data["image_shape"])
    _require(len(shape) == 3 and shape[0] in (1, 3) and all(1 <= v <= 1024 for v in shape), label,
             f"image shape {list(shape)} is not C x H x W with 1 or 3 channels")
    dataset = DatasetInfo(str(data["name"]), str(data["fingerprint"]), shape, int(data["num_classes"]),
                          tuple(data["class_names"]) if data.get("class_names") else None)
    model = build_model(config, dataset.image_shape, dataset.num_classes)
    model_state = _checked_model_state(tensors, model, config, dataset, label)
    optimizer_tensors = {k: v for k, v in tensors.items() if k.startswith("optim.")}
    optimizer_state = unflatten_optimizer_state(optimizer_tensors, metadata["optimizer"])
    _check_optimizer_matches(optimizer_state, [tuple(p.shape) for p in model.parameters()], label)
    noise = tensors.get("rng.noise")
    _require(noise is not None and noise.dtype == torch.uint8 and noise.dim() == 1, label,
             "the random number generator state is missing or not bytes")
    history = _history(tensors, metadata["history"], label)
    counters = [int(metadata[k]) for k in ("epoch", "step", "step_in_epoch")]
    _require(all(v >= 0 for v in counters), label, "epoch and step counters must not be negative")
    state = TrainerState(model_state=model_state, optimizer_state=optimizer_state, noise_state=noise,
                         epoch=counters[0], step=counters[1], step_in_epoch=counters[2],
                         lr=float(metadata["lr"]), beta=float(metadata["beta"]), history=history)
    return RunCheckpoint(run_id=str(metadata.get("run_id", Path(label).stem)), config=config, dataset=dataset,
                         state=state, status=str(metadata.get("status", "stopped")),
                         created=str(metadata.get("created", "")), versions=dict(metadata.get("versions", {})),
                         path=path)


def _checked_model_state(tensors: dict, model: VAE, config: TrainConfig, dataset: DatasetInfo, label: str) -> dict:
    """The weights in the model's own order, after checking every name, shape and dtype against the
    model the config builds."""
    expected = model.state_dict()
    found = {k[len(MODEL_PREFIX):]: v for k, v in tensors.items() if k.startswith(MODEL_PREFIX)}
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    _require(not missing and not extra, label,
             f"its weights do not fit a {config.model} model for {list(dataset.image_shape)} images "
             f"(missing: {', '.join(missing[:4]) or 'none'}; unexpected: {', '.join(extra[:4]) or 'none'})")
    for key, reference in expected.items():
        tensor = found[key]
        _require(tuple(tensor.shape) == tuple(reference.shape), label,
                 f"weight {key} has shape {list(tensor.shape)}, the config needs {list(reference.shape)}")
        _require(tensor.dtype == reference.dtype, label,
                 f"weight {key} is {tensor.dtype}, the config needs {reference.dtype}")
        _require(bool(torch.isfinite(tensor).all()), label, f"weight {key} holds NaN or infinite values")
    return {key: found[key] for key in expected}


def _check_optimizer_matches(optimizer_state: dict, shapes: list[tuple[int, ...]], label: str) -> None:
    for index, values in optimizer_state.get("state", {}).items():
        _require(0 <= int(index) < len(shapes), label, f"optimizer state refers to parameter {index}")
        for key in ("exp_avg", "exp_avg_sq"):
            if key in values:
                _require(tuple(values[key].shape) == shapes[int(index)], label,
                         f"optimizer state {key} of parameter {index} has the wrong shape")


def _history(tensors: dict, meta: dict, label: str) -> History:
    steps = tensors.get("history.steps")
    width = 1 + len(STEP_FIELDS)
    _require(steps is not None and steps.dim() == 2 and steps.shape[1] == width, label,
             f"history.steps must be a matrix with {width} columns")
    history = History(steps=[steps.to(torch.float64).numpy()], epochs=list(meta["epochs"]),
                      events=list(meta["events"]))
    for i, epoch in enumerate(meta.get("frame_epochs", [])):
        recon, samples = tensors.get(f"frames.{i}.reconstructions"), tensors.get(f"frames.{i}.samples")
        _require(recon is not None and samples is not None and recon.dtype == torch.uint8
                 and samples.dtype == torch.uint8 and recon.dim() == 4 and samples.dim() == 4,
                 label, f"the pictures of epoch {epoch} are missing or malformed")
        history.frames.append(Frame(int(epoch), recon.numpy(), samples.numpy()))
    return history


def check_resumable(checkpoint: RunCheckpoint, dataset) -> None:
    """Refuse to resume on data of another shape or another content (the split would differ)."""
    info = checkpoint.dataset
    if tuple(dataset.image_shape) != info.image_shape or dataset.num_classes != info.num_classes:
        raise CheckpointError(
            f"the checkpoint was trained on {info.name} ({list(info.image_shape)}, {info.num_classes} classes); "
            f"{dataset.name} has {list(dataset.image_shape)} and {dataset.num_classes} classes")
    if dataset.fingerprint != info.fingerprint:
        raise CheckpointError(
            f"the checkpoint was trained on data with fingerprint {info.fingerprint}, but {dataset.name} "
            f"has {dataset.fingerprint} (another dataset, split or seed); resume on the same data")
