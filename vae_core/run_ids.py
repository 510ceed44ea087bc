"""Run ids: how they are made and which ones may name a file.

A run id becomes a file name (`checkpoints/<run id>.safetensors`), so an id read from anywhere we do
not control (a checkpoint's metadata, a URL) must match `RUN_ID_PATTERN` before it is used; one that
does not is refused, never repaired into something that might point elsewhere.
"""

from __future__ import annotations

import re
import time
import uuid

from .errors import CheckpointError

# Letters, digits, '-' and '_', starting with a letter or digit: no '/', no '..', no hidden files.
RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def new_run_id() -> str:
    """Sortable by time, unique without coordination: 20261125-103000-ab12cd."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


def is_valid_run_id(value: object) -> bool:
    return isinstance(value, str) and RUN_ID_PATTERN.fullmatch(value) is not None


def check_run_id(value: object) -> str:
    """`value` when it is a valid run id; otherwise CheckpointError quoting at most 40 characters of it."""
    if not is_valid_run_id(value):
        shown = repr(value)[:40]
        raise CheckpointError(f"run id {shown} is not valid: use 1-64 letters, digits, '-' or '_'")
    return value
