"""A run in one `.safetensors` file: saving it, reading it back safely, importing it and resuming from it.

As tensors: weights, optimiser state, RNG state, step history, and the pictures and tracked latent means
of each epoch. As JSON metadata: config, data fingerprint, counters, per-epoch metrics, the run's clock
(history.clock: [step, seconds] pairs), names and library versions.

Reading never unpickles anything (see `safetensors_io`) and judges a file before it costs anything:
the metadata is checked field by field (`checkpoint_fields`), the model's size is bounded from the
config, and every stored tensor's name, dtype and shape, as the file's header gives them, is compared
with what the config and the image shape imply, before a single tensor is loaded or a model is built.
Run ids read from files never choose where a file is written: an imported file gets a new id.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import safetensors
import torch

from . import __version__
from .checkpoint_fields import (
    LIVE_STATUSES,
    MAX_NAME_CHARS,
    MAX_NOTES_CHARS,
    Metadata,
    owner_id,
    parse_metadata,
    printable_text,
)
from .config import Limits, TrainConfig
from .errors import CheckpointError, ConfigError
from .history import STEP_FIELDS, Frame, History, kept_rows, tracked_count
from .models import VAE, build_model
from .optimizer_state import OPTIMIZER_TENSOR_PREFIX, flatten_optimizer_state, unflatten_optimizer_state
from .run_ids import check_run_id, new_run_id
from .safe_files import FieldError
from .safetensors_io import StoredTensor, checkpoint_to_bytes, open_checkpoint, write_checkpoint

if TYPE_CHECKING:
    from .data import ImageDataset
    from .trainer import TrainerState

MODEL_PREFIX = "model."
MAX_PARAMETERS = Limits().max_parameters  # a file read back is held to the default limit (config.Limits)
MAX_PICTURES_PER_FRAME = 256  # the trainer keeps 16 reconstructions and 64 samples per epoch
MAX_RNG_STATE_BYTES = 1 << 16
_FRAME_TENSOR = re.compile(r"frames\.(\d+)\.(reconstructions|samples)")
_TRACKED_TENSOR = re.compile(r"frames\.(\d+)\.latent_means")  # optional: files from before lack it


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    fingerprint: str
    image_shape: tuple[int, int, int]
    num_classes: int
    class_names: tuple[str, ...] | None


@dataclass(frozen=True)
class RunCheckpoint:
    """A checkpoint read back and checked.

    `name` is the run's display name, the run id when it has none; `notes` is free text;
    `imported_from` says where an imported run came from ({"run_id", "file_name", "sha256",
    "imported_at"}), None for a run trained here; `owner` is the owner id of the person it belongs to
    when the app is served to several people, None for a shared run.
    """

    run_id: str
    config: TrainConfig
    dataset: DatasetInfo
    state: TrainerState
    status: str
    created: str
    versions: dict
    path: str | None = None
    name: str = ""
    notes: str = ""
    imported_from: dict | None = None
    world_size: int = 1  # processes that trained it last (torchrun)
    owner: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", self.run_id)

    def build_model(self) -> VAE:
        """The trained model on the CPU, in eval mode."""
        model = build_model(self.config, self.dataset.image_shape, self.dataset.num_classes)
        model.load_state_dict(self.state.model_state)
        return model.eval()

    def labels(self) -> dict[str, Any]:
        """What a later save of this run keeps: its name (unless it is only the id), notes, origin and owner."""
        return {
            "name": None if self.name == self.run_id else self.name,
            "notes": self.notes,
            "imported_from": self.imported_from,
            "owner": self.owner,
        }

    def summary(self) -> dict:
        last = self.state.history.epochs[-1] if self.state.history.epochs else {}
        return {
            "run_id": self.run_id,
            "name": self.name,
            "status": self.status,
            "epoch": self.state.epoch,
            "step": self.state.step,
            "dataset": self.dataset.name,
            "model": self.config.model,
            "latent_dim": self.config.latent_dim,
            "beta": self.state.beta,
            "lr": self.state.lr,
            "recon": self.config.recon,
            "test_neg_elbo": last.get("test_neg_elbo"),
            "active_units": last.get("active_units"),
            "created": self.created,
            "imported_from": self.imported_from,
            "world_size": self.world_size,
        }


# -- model size, from the config alone ------------------------------------------------------------
def parameter_count(config: TrainConfig, image_shape: Sequence[int], num_classes: int = 0) -> int:
    """How many numbers the model `config` describes would hold; nothing is allocated to count them."""
    return sum(tensor.numel() for tensor in _shape_model(config, image_shape, num_classes).parameters())


def check_model_size(config: TrainConfig, image_shape: Sequence[int], num_classes: int = 0) -> None:
    """ConfigError, quickly and before any memory is spent, when the model is over MAX_PARAMETERS."""
    count = parameter_count(config, image_shape, num_classes)
    if count > MAX_PARAMETERS:
        raise ConfigError(
            f"the {config.model} model with {len(config.hidden)} hidden layers of up to "
            f"{max(config.hidden)} units on {list(image_shape)} images has {count:,} parameters, "
            f"more than the limit of {MAX_PARAMETERS:,}"
        )


def _shape_model(config: TrainConfig, image_shape: Sequence[int], num_classes: int) -> VAE:
    with torch.device("meta"):  # shapes and dtypes only: no memory, no arithmetic
        return build_model(config, tuple(image_shape), num_classes)


# -- writing ---------------------------------------------------------------------------------------
def _payload(
    run_id: str,
    config: TrainConfig,
    dataset: DatasetInfo,
    state: TrainerState,
    status: str,
    labels: dict[str, Any],
    world_size: int = 1,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    check_run_id(run_id)  # the id names the file of every later save of this run
    tensors = {MODEL_PREFIX + k: v for k, v in state.model_state.items()}
    optim_tensors, optim_layout = flatten_optimizer_state(state.optimizer_state)
    tensors.update(optim_tensors)
    tensors["rng.noise"] = state.noise_state
    tensors["history.steps"] = torch.from_numpy(np.ascontiguousarray(state.history.step_matrix()))
    for i, frame in enumerate(state.history.frames):
        tensors[f"frames.{i}.reconstructions"] = torch.from_numpy(np.ascontiguousarray(frame.reconstructions))
        tensors[f"frames.{i}.samples"] = torch.from_numpy(np.ascontiguousarray(frame.samples))
        if frame.latent_means is not None:
            tensors[f"frames.{i}.latent_means"] = torch.from_numpy(np.ascontiguousarray(frame.latent_means))
    metadata = {
        "run_id": run_id,
        "status": status,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **_label_fields(labels),
        "config": config.to_dict(),
        "dataset": {
            "name": dataset.name,
            "fingerprint": dataset.fingerprint,
            "image_shape": list(dataset.image_shape),
            "num_classes": dataset.num_classes,
            "class_names": list(dataset.class_names) if dataset.class_names else None,
        },
        "epoch": state.epoch,
        "step": state.step,
        "step_in_epoch": state.step_in_epoch,
        "lr": state.lr,
        "beta": state.beta,
        "optimizer": optim_layout,
        "world_size": world_size,
        "history": {
            "epochs": state.history.epochs,
            "events": state.history.events,
            "frame_epochs": [f.epoch for f in state.history.frames],
            "clock": [list(point) for point in state.history.clock],
        },
        "versions": {
            "vae_studio": __version__,
            "torch": torch.__version__,
            "safetensors": safetensors.__version__,
            "python": platform.python_version(),
        },
    }
    return tensors, metadata


def _label_fields(labels: dict[str, Any]) -> dict[str, Any]:
    """Name, notes, origin and owner as the file stores them: only those given, in the sizes a reader accepts
    (a long generated name is cut rather than making the run's file unreadable)."""
    name = printable_text(labels.get("name") or "", MAX_NAME_CHARS)
    notes = printable_text(labels.get("notes") or "", MAX_NOTES_CHARS, multiline=True)
    try:
        owner = owner_id(labels.get("owner"), "owner")  # never written unless a reader would accept it
    except FieldError as error:
        raise CheckpointError(str(error)) from None
    fields = {"name": name, "notes": notes, "imported_from": labels.get("imported_from"), "owner": owner}
    return {key: value for key, value in fields.items() if value}


def dataset_info(dataset) -> DatasetInfo:
    return DatasetInfo(
        dataset.name,
        dataset.fingerprint,
        tuple(dataset.image_shape),
        dataset.num_classes,
        tuple(dataset.class_names) if dataset.class_names else None,
    )


def save_trainer_checkpoint(
    trainer,
    run_id: str,
    status: str,
    path: str | Path,
    *,
    name: str | None = None,
    notes: str = "",
    imported_from: dict | None = None,
    owner: str | None = None,
) -> Path:
    """Save a `Trainer` atomically (from the thread that drives it, or once it has stopped).

    Raises CheckpointError for a run id that does not match run_ids.RUN_ID_PATTERN."""
    labels = {"name": name, "notes": notes, "imported_from": imported_from, "owner": owner}
    tensors, metadata = _payload(
        run_id, trainer.config, dataset_info(trainer.dataset), trainer.state(), status, labels, trainer.world_size
    )
    write_checkpoint(path, tensors, metadata)
    return Path(path)


def save_job_checkpoint(job, path: str | Path) -> Path:
    """Save a `TrainingJob` (called from its training thread, or once it has ended)."""
    return save_trainer_checkpoint(
        job.trainer,
        job.run_id,
        job.status,
        path,
        name=getattr(job, "name", None),
        notes=getattr(job, "notes", ""),
        imported_from=getattr(job, "imported_from", None),
        owner=getattr(job, "owner", None),
    )


def checkpoint_bytes(checkpoint: RunCheckpoint) -> bytes:
    """The file's bytes, for a download."""
    tensors, metadata = _payload(
        checkpoint.run_id,
        checkpoint.config,
        checkpoint.dataset,
        checkpoint.state,
        checkpoint.status,
        checkpoint.labels(),
        checkpoint.world_size,
    )
    return checkpoint_to_bytes(tensors, metadata)


# -- reading ---------------------------------------------------------------------------------------
def load_checkpoint(source: str | Path | bytes, *, name: str | None = None) -> RunCheckpoint:
    """Read and check a checkpoint; CheckpointError names the file and what is wrong.

    A file whose run id does not match run_ids.RUN_ID_PATTERN is refused (see `import_checkpoint`
    for files from elsewhere, which get an id of their own).
    """
    checkpoint, original_id = _read(source, name)
    if original_id is None:
        raise CheckpointError(
            f"{_label(source, name)}: its run id is missing or not valid "
            "(1-64 letters, digits, '-' or '_'); import it to give it a new one"
        )
    return checkpoint


def _label(source: str | Path | bytes, name: str | None) -> str:
    return name or ("uploaded file" if isinstance(source, (bytes, bytearray, memoryview)) else Path(source).name)


def _read(source: str | Path | bytes, name: str | None) -> tuple[RunCheckpoint, str | None]:
    """The checkpoint (with a placeholder id if its own is not valid) and the file's valid run id or None."""
    label = _label(source, name)
    path = None if isinstance(source, (bytes, bytearray, memoryview)) else str(source)
    with open_checkpoint(source, name=label) as stored:
        try:
            meta = parse_metadata(stored.metadata)
            model = _checked_layout(stored.tensors, meta)
            tensors = stored.load()
            state = _trainer_state(tensors, meta, model)
        except CheckpointError as error:
            if str(error).startswith(label):
                raise
            raise CheckpointError(f"{label}: {error}") from None
        except FieldError as error:
            raise CheckpointError(f"{label}: {error}") from None
        except ConfigError as error:
            raise CheckpointError(f"{label}: its config is invalid: {error}") from None
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as error:  # a net under the checks
            raise CheckpointError(f"{label}: the checkpoint is inconsistent: {str(error)[:200]}") from None
    dataset = DatasetInfo(meta.dataset_name, meta.fingerprint, meta.image_shape, meta.num_classes, meta.class_names)
    # An invalid id is kept out of the RunCheckpoint: load_checkpoint refuses it, import replaces it.
    checkpoint = RunCheckpoint(
        run_id=meta.run_id or "invalid-run-id",
        config=meta.config,
        dataset=dataset,
        state=state,
        status=meta.status,
        created=meta.created,
        versions=meta.versions,
        path=path,
        name=meta.name or "",
        notes=meta.notes,
        imported_from=meta.imported_from,
        world_size=meta.world_size,
        owner=meta.owner,
    )
    return checkpoint, meta.run_id


def _checked_layout(stored: dict[str, StoredTensor], meta: Metadata) -> VAE:
    """Compare every stored tensor (from the header: nothing is loaded yet) with what the metadata
    implies; return the model's shapes as a meta-device model."""
    check_model_size(meta.config, meta.image_shape, meta.num_classes)
    model = _shape_model(meta.config, meta.image_shape, meta.num_classes)
    expected = {
        MODEL_PREFIX + key: StoredTensor(value.dtype, tuple(value.shape)) for key, value in model.state_dict().items()
    }
    missing = sorted(set(expected) - set(stored))
    extra = sorted({key for key in stored if key.startswith(MODEL_PREFIX)} - set(expected))
    _require(
        not missing and not extra,
        f"its weights do not fit a {meta.config.model} model for {list(meta.image_shape)} images "
        f"(missing: {_weight_names(missing)}; unexpected: {_weight_names(extra)})",
    )
    for tensor_name, want in expected.items():
        tensor, key = stored[tensor_name], tensor_name[len(MODEL_PREFIX) :]
        _require(
            tensor.shape == want.shape,
            f"weight {key} has shape {list(tensor.shape)}, the config needs {list(want.shape)}",
        )
        _require(tensor.dtype == want.dtype, f"weight {key} is {tensor.dtype}, the config needs {want.dtype}")
    parameter_shapes = [tuple(parameter.shape) for parameter in model.parameters()]
    for tensor_name, tensor in stored.items():
        if tensor_name not in expected:
            _check_other_tensor(tensor_name, tensor, meta, parameter_shapes)
    _require(
        "rng.noise" in stored and "history.steps" in stored,
        "the random number generator state or the step history is missing",
    )
    for index, epoch in enumerate(meta.frame_epochs):
        _require(
            f"frames.{index}.reconstructions" in stored and f"frames.{index}.samples" in stored,
            f"the pictures of epoch {epoch} are missing",
        )
    tracked = {tensor.shape[0] for name, tensor in stored.items() if _TRACKED_TENSOR.fullmatch(name)}
    _require(len(tracked) <= 1, "the latent means of its epochs are of different test images (their counts differ)")
    return model


def _weight_names(tensor_names: list[str]) -> str:
    """The first few, without the prefix and cut short: a hostile file may carry megabyte-long names."""
    return ", ".join(name[len(MODEL_PREFIX) :][:40] for name in tensor_names[:4]) or "none"


def _check_other_tensor(
    tensor_name: str, tensor: StoredTensor, meta: Metadata, parameter_shapes: list[tuple[int, ...]]
) -> None:
    if tensor_name.startswith(OPTIMIZER_TENSOR_PREFIX):
        index, _, key = tensor_name[len(OPTIMIZER_TENSOR_PREFIX) :].partition(".")
        _require(
            index.isascii() and index.isdigit() and int(index) < len(parameter_shapes),
            f"optimizer state {tensor_name} refers to no parameter of the model",
        )
        allowed = ((), (1,)) if key == "step" else (parameter_shapes[int(index)],)
        _require(
            tensor.shape in allowed,
            f"optimizer state {key} of parameter {index} has the wrong shape {list(tensor.shape)}",
        )
    elif tensor_name == "rng.noise":
        _require(
            tensor.dtype == torch.uint8 and len(tensor.shape) == 1 and tensor.shape[0] <= MAX_RNG_STATE_BYTES,
            "the random number generator state is not a short list of bytes",
        )
    elif tensor_name == "history.steps":
        width = 1 + len(STEP_FIELDS)
        _require(
            tensor.dtype in (torch.float64, torch.float32) and len(tensor.shape) == 2 and tensor.shape[1] == width,
            f"history.steps must be a matrix of floats with {width} columns",
        )
    elif match := _FRAME_TENSOR.fullmatch(tensor_name):
        _require(int(match[1]) < len(meta.frame_epochs), f"tensor {tensor_name} belongs to no epoch in the history")
        _require(
            tensor.dtype == torch.uint8
            and len(tensor.shape) == 4
            and tensor.shape[1:] == meta.image_shape
            and tensor.shape[0] <= MAX_PICTURES_PER_FRAME,
            f"{tensor_name} has shape {list(tensor.shape)[:6]}; pictures must be bytes of shape "
            f"{list(meta.image_shape)}, at most {MAX_PICTURES_PER_FRAME} of them",
        )
    elif match := _TRACKED_TENSOR.fullmatch(tensor_name):
        _require(int(match[1]) < len(meta.frame_epochs), f"tensor {tensor_name} belongs to no epoch in the history")
        points = tracked_count(meta.config.latent_dim)
        _require(
            tensor.dtype == torch.float16
            and len(tensor.shape) == 2
            and 1 <= tensor.shape[0] <= points
            and tensor.shape[1] == meta.config.latent_dim,
            f"{tensor_name} has shape {list(tensor.shape)[:6]}; latent means must be float16 of shape "
            f"[images, {meta.config.latent_dim}], at most {points} images",
        )
    else:
        _require(False, f"it holds a tensor this version does not know: {tensor_name[:60]!r}")


def _trainer_state(tensors: dict[str, torch.Tensor], meta: Metadata, model: VAE) -> TrainerState:
    from .trainer import TrainerState  # late: the trainer imports this module's callers

    model_state = {}
    for key in model.state_dict():
        weight = tensors[MODEL_PREFIX + key]
        _require(bool(torch.isfinite(weight).all()), f"weight {key} holds NaN or infinite values")
        model_state[key] = weight
    optimizer_tensors = {key: value for key, value in tensors.items() if key.startswith(OPTIMIZER_TENSOR_PREFIX)}
    optimizer_state = unflatten_optimizer_state(optimizer_tensors, meta.optimizer)
    history = History(
        steps=[kept_rows(tensors["history.steps"].numpy(), copy=False)],  # float32 stays float32
        epochs=meta.epochs,
        events=meta.events,
        clock=list(meta.clock),
    )
    for index, epoch in enumerate(meta.frame_epochs):
        means = tensors.get(f"frames.{index}.latent_means")
        _require(
            means is None or bool(torch.isfinite(means).all()),
            f"the latent means of epoch {epoch} hold NaN or infinite values",
        )
        history.frames.append(
            Frame(
                epoch,
                tensors[f"frames.{index}.reconstructions"].numpy(),
                tensors[f"frames.{index}.samples"].numpy(),
                None if means is None else means.numpy(),
            )
        )
    return TrainerState(
        model_state=model_state,
        optimizer_state=optimizer_state,
        noise_state=tensors["rng.noise"],
        epoch=meta.epoch,
        step=meta.step,
        step_in_epoch=meta.step_in_epoch,
        lr=meta.lr,
        beta=meta.beta,
        history=history,
    )


def _require(condition: bool, problem: str) -> None:
    if not condition:
        raise CheckpointError(problem)


# -- importing -------------------------------------------------------------------------------------
def import_checkpoint(
    source_path: str | Path, dest_dir: str | Path, *, file_name: str | None = None, owner: str | None = None
) -> RunCheckpoint:
    """Make a checkpoint from elsewhere (an upload, another machine) a run of its own in `dest_dir`.

    The file is checked like any checkpoint, then written as `dest_dir/<new run id>.safetensors`
    (atomically, never over an existing file), with its origin in `imported_from`: the original run
    id when it is a valid one, the file's name (`file_name`, default the source's, made safe to
    show) and the SHA-256 of its bytes. Nothing in the file chooses where anything is written, nor
    whose run it is: an import belongs to its importer, `owner` (None: a shared run), whatever owner
    the file names. Returns the new run's checkpoint.
    """
    from .data import safe_upload_name  # late: data sources import heavy libraries

    shown_name = safe_upload_name(file_name or Path(source_path).name)
    original, original_id = _read(source_path, shown_name)
    origin = {
        "run_id": original_id,
        "file_name": shown_name,
        "sha256": _sha256(source_path),
        "imported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    # A run that was training where it came from is not training here.
    status = "stopped" if original.status in LIVE_STATUSES else original.status
    labels = {**original.labels(), "imported_from": origin, "owner": owner}
    folder = Path(dest_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for _ in range(3):  # a new id is unique by construction; a clash only costs another try
        run_id = new_run_id()
        target = folder / f"{run_id}.safetensors"
        tensors, metadata = _payload(run_id, original.config, original.dataset, original.state, status, labels)
        try:
            write_checkpoint(target, tensors, metadata, overwrite=False)
        except CheckpointError:
            if target.exists():
                continue
            raise
        return load_checkpoint(target)
    raise CheckpointError(f"{shown_name}: could not find a free run id to import it under; try again")


def _sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- the data a checkpoint was trained on ----------------------------------------------------------
def checkpoint_dataset(
    checkpoint: RunCheckpoint,
    allowed: Sequence[str | os.PathLike] = (),
    *,
    data: str | os.PathLike | None = None,
    download: bool = False,
) -> ImageDataset:
    """The dataset to evaluate or resume `checkpoint` on, checked to be the one it was trained on.

    `config.data` comes from the file, so it is opened only if `data.resolve_data_reference` allows
    it: a built-in dataset, or a path within `allowed` (what this user supplied here: their upload
    folder in the app, the `--data` argument in the CLI). `data`, when given, is the user's own choice
    and is used instead (it must still hold the same data). Raises DataError (a refusal that quotes no
    server file) or CheckpointError (data other than the checkpoint's).
    """
    from .data import load_dataset, resolve_data_reference  # late: data sources import heavy libraries

    config = checkpoint.config
    reference = os.fspath(data) if data is not None else resolve_data_reference(config.data, allowed)
    dataset = load_dataset(
        reference, image_size=config.image_size, test_fraction=config.test_fraction, seed=config.seed, download=download
    )
    check_resumable(checkpoint, dataset)
    return dataset


def check_resumable(checkpoint: RunCheckpoint, dataset) -> None:
    """Refuse to resume on data of another shape or another content (the split would differ)."""
    info = checkpoint.dataset
    if tuple(dataset.image_shape) != info.image_shape or dataset.num_classes != info.num_classes:
        raise CheckpointError(
            f"the checkpoint was trained on {info.name} ({list(info.image_shape)}, {info.num_classes} classes); "
            f"{dataset.name} has {list(dataset.image_shape)} and {dataset.num_classes} classes"
        )
    if dataset.fingerprint != info.fingerprint:
        raise CheckpointError(
            f"the checkpoint was trained on data with fingerprint {info.fingerprint}, but {dataset.name} "
            f"has {dataset.fingerprint} (another dataset, split or seed); resume on the same data"
        )
