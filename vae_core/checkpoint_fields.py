"""What a checkpoint's JSON metadata may hold, checked field by field.

Everything here comes from a file anyone may have written, and every page, `inspect` and a resume
read it without further checks: a metadata object that passes `parse_metadata` has each field of
the type and within the size a reader expects, so a loaded checkpoint is one everything can show.
Problems raise `FieldError` naming the field (e.g. "history.epochs[0] lacks 'epoch'"); the caller
puts the file's name in front.
"""

from __future__ import annotations

import math
import re
import time
import types
import typing
from dataclasses import dataclass
from typing import Any

from .config import Limits, TrainConfig, check_beta, check_lr
from .errors import ConfigError
from .history import MAX_CLOCK_POINTS, MAX_FRAMES
from .run_ids import is_valid_run_id
from .safe_files import FieldError

# What each file-wide limit protects: pages lay out names, lists and tables from these fields.
MAX_NAME_CHARS = 80
MAX_NOTES_CHARS = 4000
MAX_SHORT_TEXT = 200  # dataset names, fingerprints, dates, versions, event names, class names
MAX_CLASSES = 1000
# A file read back is held to the default limits (config.Limits), whatever the environment allows new
# runs: deeper configs are refused before any model is sized.
MAX_HIDDEN_LAYERS = Limits().max_hidden_layers
MAX_LIST_ITEMS = 100_000  # epochs and events of one run; TrainConfig allows at most 100,000 epochs
MAX_IMAGE_SIDE = 1024
MAX_WORLD_SIZE = 1 << 20  # processes of one torchrun run
FILE_STATUSES = ("starting", "running", "paused", "finished", "stopped", "failed")
LIVE_STATUSES = ("starting", "running", "paused")  # said by a file that a job was writing

# Per-epoch test metrics: the keys pages read, and their kinds. Other numeric keys may be added by
# newer writers and are kept as they are.
EPOCH_METRICS = {
    "epoch": "count",
    "step": "count",
    "train_loss": "number",
    "test_neg_elbo": "number",
    "test_recon": "number",
    "test_kl": "number",
    "active_units": "count",
    "kl_per_dim": "numbers",
}
EVENT_KEYS = {"step", "name", "value"}
IMPORT_KEYS = {"run_id", "file_name", "sha256", "imported_at"}
# Who a run belongs to when the app is served to several people: a hash of their identity (never the
# identity itself, never a path taken from it), so a checkpoint names no person and an owner id is
# safe as a folder name. None: a shared run (the CLI's, or one trained by the app run locally).
OWNER_ID_LENGTH = 32
OWNER_ID_PATTERN = re.compile(f"[0-9a-f]{{{OWNER_ID_LENGTH}}}")


@dataclass(frozen=True)
class Metadata:
    """The checkpoint's JSON, checked; `run_id` is None when the file's id is not a valid one."""

    run_id: str | None
    name: str | None
    notes: str
    status: str
    created: str
    config: TrainConfig
    dataset_name: str
    fingerprint: str
    image_shape: tuple[int, int, int]
    num_classes: int
    class_names: tuple[str, ...] | None
    epoch: int
    step: int
    step_in_epoch: int
    lr: float
    beta: float
    optimizer: dict
    epochs: list[dict]
    events: list[dict]
    frame_epochs: tuple[int, ...]
    versions: dict[str, str]
    imported_from: dict | None
    world_size: int  # processes that trained the run last; 1 in files from before torchrun
    owner: str | None = None  # the owner id (see OWNER_ID_PATTERN); None for a shared run
    clock: tuple[tuple[int, float], ...] = ()  # (step, seconds) of history.RunClock; none in older files


def parse_metadata(meta: dict[str, Any]) -> Metadata:
    """The metadata as a `Metadata`, or FieldError naming the first field that is wrong."""
    config = parse_config(_field(meta, "config"))
    dataset = _object(_field(meta, "dataset"), "dataset")
    image_shape = _image_shape(_field(dataset, "image_shape", "dataset."))
    num_classes = _count(_field(dataset, "num_classes", "dataset."), "dataset.num_classes", MAX_CLASSES)
    history = _object(_field(meta, "history"), "history")
    epoch, step = _count(_field(meta, "epoch"), "epoch"), _count(_field(meta, "step"), "step")
    return Metadata(
        run_id=meta.get("run_id") if is_valid_run_id(meta.get("run_id")) else None,
        name=optional_text(meta.get("name"), "name", MAX_NAME_CHARS),
        notes=optional_text(meta.get("notes"), "notes", MAX_NOTES_CHARS, multiline=True) or "",
        status=_choice(meta.get("status", "stopped"), "status", FILE_STATUSES),
        created=optional_text(meta.get("created"), "created", MAX_SHORT_TEXT) or "",
        config=config,
        dataset_name=text(_field(dataset, "name", "dataset."), "dataset.name", MAX_SHORT_TEXT),
        fingerprint=text(_field(dataset, "fingerprint", "dataset."), "dataset.fingerprint", MAX_SHORT_TEXT),
        image_shape=image_shape,
        num_classes=num_classes,
        class_names=_class_names(dataset.get("class_names"), num_classes),
        epoch=epoch,
        step=step,
        step_in_epoch=_count(_field(meta, "step_in_epoch"), "step_in_epoch"),
        lr=_checked_by_config(check_lr, _number(_field(meta, "lr"), "lr")),
        beta=_checked_by_config(check_beta, _number(_field(meta, "beta"), "beta")),
        optimizer=_object(_field(meta, "optimizer"), "optimizer"),  # its layout is checked with its tensors
        epochs=_epoch_metrics(_field(history, "epochs", "history."), config.latent_dim),
        events=_events(_field(history, "events", "history.")),
        frame_epochs=tuple(
            _count(value, f"history.frame_epochs[{index}]")
            for index, value in enumerate(_list(history.get("frame_epochs", []), "history.frame_epochs", MAX_FRAMES))
        ),
        versions=_versions(meta.get("versions", {})),
        imported_from=_imported_from(meta.get("imported_from")),
        world_size=max(1, _count(meta.get("world_size", 1), "world_size", MAX_WORLD_SIZE)),
        owner=owner_id(meta.get("owner"), "owner"),
        clock=_clock(history.get("clock", []), step),
    )


def parse_config(values: Any) -> TrainConfig:
    """A TrainConfig from JSON whose every value has the type its field declares."""
    _object(values, "config")
    hints = typing.get_type_hints(TrainConfig)
    for key, value in values.items():
        if key in hints and not _has_type(value, hints[key]):
            raise FieldError(f"config.{key} is {_kind(value)}, not of the type {_type_name(hints[key])}")
    if isinstance(values.get("hidden"), list) and len(values["hidden"]) > MAX_HIDDEN_LAYERS:
        raise FieldError(
            f"config.hidden lists {len(values['hidden'])} layers, more than the limit of {MAX_HIDDEN_LAYERS}"
        )
    if isinstance(values.get("data"), str):
        text(values["data"], "config.data", 4096)
    try:
        return TrainConfig.from_dict(values)
    except ConfigError as error:
        raise FieldError(f"its config is invalid: {error}") from None


def text(value: Any, where: str, max_chars: int, *, multiline: bool = False) -> str:
    """`value` when it is printable text of at most `max_chars` (no control or direction characters)."""
    if not isinstance(value, str):
        raise FieldError(f"{where} is {_kind(value)}, not text")
    if len(value) > max_chars:
        raise FieldError(f"{where} is {len(value)} characters long, more than the limit of {max_chars}")
    lines = value.split("\n") if multiline else [value]
    if not all(line.isprintable() for line in lines):
        raise FieldError(f"{where} holds control characters")
    return value


def printable_text(value: Any, max_chars: int, *, multiline: bool = False) -> str:
    """`value` as text that `text` accepts: control characters dropped, tabs (and, unless multiline,
    line breaks and runs of spaces) made one space, cut to `max_chars`. For what we write, not what we read."""
    value = str(value).replace("\t", " ")
    lines = value.split("\n") if multiline else [" ".join(value.split())]
    return "\n".join("".join(character for character in line if character.isprintable()) for line in lines).strip()[
        :max_chars
    ]


def optional_text(value: Any, where: str, max_chars: int, *, multiline: bool = False) -> str | None:
    return None if value is None else text(value, where, max_chars, multiline=multiline)


def _field(container: dict, key: str, prefix: str = "") -> Any:
    if key not in container:
        raise FieldError(f"the metadata lacks {prefix}{key}")
    return container[key]


def _object(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise FieldError(f"{where} is {_kind(value)}, not an object")
    return value


def _list(value: Any, where: str, max_items: int = MAX_LIST_ITEMS) -> list:
    if not isinstance(value, list):
        raise FieldError(f"{where} is {_kind(value)}, not a list")
    if len(value) > max_items:
        raise FieldError(f"{where} has {len(value)} entries, more than the limit of {max_items}")
    return value


def _count(value: Any, where: str, maximum: int = 2**53) -> int:
    # bool is an int in Python, but `true` is no count in JSON
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
        raise FieldError(f"{where} must be a whole number between 0 and {maximum}, not {_short(value)}")
    return value


def _number(value: Any, where: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise FieldError(f"{where} is {_kind(value)}, not a number")
    return float(value)


CLOCK_SKEW_S = 300.0  # how far ahead of ours another machine's clock may be


def past_time(value: Any, where: str) -> float:
    """A Unix time no later than now (give or take CLOCK_SKEW_S): one from the future would keep a run
    "running" forever, and 1e308 is no date a page can print."""
    moment = _number(value, where)
    if not 0 <= moment <= time.time() + CLOCK_SKEW_S:
        raise FieldError(f"{where} must be a time no later than now")
    return moment


def _choice(value: Any, where: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise FieldError(f"{where} must be one of {', '.join(choices)}, not {_short(value)}")
    return value


def _checked_by_config(check, value: float) -> float:
    try:
        return check(value)  # the bounds live in config.py, with the Train form's
    except ConfigError as error:
        raise FieldError(str(error)) from None


def _image_shape(value: Any) -> tuple[int, int, int]:
    shape = _list(value, "dataset.image_shape", 3)
    if not (
        len(shape) == 3
        and all(isinstance(side, int) and not isinstance(side, bool) for side in shape)
        and shape[0] in (1, 3)
        and all(1 <= side <= MAX_IMAGE_SIDE for side in shape[1:])
    ):
        raise FieldError(
            f"dataset.image_shape {_short(value)} is not [channels, height, width] with 1 or 3 "
            f"channels and sides of 1 to {MAX_IMAGE_SIDE} pixels"
        )
    return tuple(shape)


def _class_names(value: Any, num_classes: int) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = _list(value, "dataset.class_names", MAX_CLASSES)
    if len(names) != num_classes:
        raise FieldError(f"dataset.class_names has {len(names)} names for {num_classes} classes")
    return tuple(text(name, f"dataset.class_names[{index}]", MAX_SHORT_TEXT) for index, name in enumerate(names))


def _epoch_metrics(value: Any, latent_dim: int) -> list[dict]:
    epochs = _list(value, "history.epochs")
    for index, entry in enumerate(epochs):
        where = f"history.epochs[{index}]"
        _object(entry, where)
        for key in EPOCH_METRICS:
            if key not in entry:
                raise FieldError(f"{where} lacks {key!r}")
        for key, item in entry.items():
            kind = EPOCH_METRICS.get(key, "number")
            if kind == "count":
                _count(item, f"{where}.{key}")
            elif kind == "numbers":
                _numbers(item, f"{where}.{key}", latent_dim)
            elif item is not None:  # a metric a model does not have (an autoencoder's KL) may be null
                _number(item, f"{where}.{key}")
    return epochs


def _numbers(value: Any, where: str, length: int) -> None:
    items = _list(value, where, length)
    if len(items) != length:
        raise FieldError(f"{where} has {len(items)} values, not one per latent dimension ({length})")
    for index, item in enumerate(items):
        _number(item, f"{where}[{index}]")


def _events(value: Any) -> list[dict]:
    events = _list(value, "history.events")
    for index, event in enumerate(events):
        where = f"history.events[{index}]"
        if set(_object(event, where)) != EVENT_KEYS:
            raise FieldError(f"{where} must have exactly the keys step, name and value")
        _count(event["step"], f"{where}.step")
        text(event["name"], f"{where}.name", MAX_SHORT_TEXT)
        if not math.isfinite(_number(event["value"], f"{where}.value")):
            raise FieldError(f"{where}.value is not a finite number")
    return events


def _clock(value: Any, last_step: int) -> tuple[tuple[int, float], ...]:
    """(step, seconds) points with steps rising up to the file's step and seconds that never go back:
    a chart maps steps to seconds through them."""
    points = _list(value, "history.clock", MAX_CLOCK_POINTS)
    checked = []
    for index, point in enumerate(points):
        where = f"history.clock[{index}]"
        if not (isinstance(point, list) and len(point) == 2):
            raise FieldError(f"{where} must be a [step, seconds] pair, not {_short(point)}")
        step, seconds = _count(point[0], f"{where} step", last_step), _number(point[1], f"{where} seconds")
        if not (math.isfinite(seconds) and seconds >= 0):
            raise FieldError(f"{where} seconds must be a finite number of at least 0, not {_short(point[1])}")
        if checked and (step <= checked[-1][0] or seconds < checked[-1][1]):
            raise FieldError(
                f"{where} goes back in time: its step must rise and its seconds never fall "
                f"(after {list(checked[-1])}, not {_short(point)})"
            )
        checked.append((step, seconds))
    return tuple(checked)


def _versions(value: Any) -> dict[str, str]:
    versions = _object(value, "versions")
    if len(versions) > 32:
        raise FieldError(f"versions lists {len(versions)} programs, more than the limit of 32")
    for key, version in versions.items():
        text(key, "a key of versions", MAX_SHORT_TEXT)
        text(version, f"versions.{key}", MAX_SHORT_TEXT)
    return dict(versions)


def _imported_from(value: Any) -> dict | None:
    if value is None:
        return None
    origin = _object(value, "imported_from")
    if not set(origin) <= IMPORT_KEYS:
        raise FieldError(f"imported_from may only hold {', '.join(sorted(IMPORT_KEYS))}")
    if origin.get("run_id") is not None and not is_valid_run_id(origin["run_id"]):
        raise FieldError(f"imported_from.run_id {_short(origin['run_id'])} is not a valid run id")
    for key in ("file_name", "sha256", "imported_at"):
        optional_text(origin.get(key), f"imported_from.{key}", MAX_SHORT_TEXT)
    return dict(origin)


def is_valid_owner(value: Any) -> bool:
    return isinstance(value, str) and OWNER_ID_PATTERN.fullmatch(value) is not None


def owner_id(value: Any, where: str) -> str | None:
    """`value` when it is None (a shared run) or an owner id; FieldError otherwise."""
    if value is not None and not is_valid_owner(value):
        raise FieldError(f"{where} {_short(value)} is not an owner id ({OWNER_ID_LENGTH} lowercase hex digits)")
    return value


def _has_type(value: Any, hint: Any) -> bool:
    """Whether JSON `value` fits a field annotation of TrainConfig (str, int, float, bool, their
    Optional, and tuple[int, ...] stored as a list)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_has_type(value, option) for option in typing.get_args(hint))
    if origin is tuple:
        return isinstance(value, list) and all(_has_type(item, int) for item in value)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "text", bool: "true/false", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


def _short(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."
