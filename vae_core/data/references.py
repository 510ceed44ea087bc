"""Which data a name read from somewhere else may open, and what an uploaded file may be called.

A checkpoint is a file from anyone: its `config.data` must not make the server read, list or quote
its own files. `resolve_data_reference` is the one policy for such references."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import vae_core.data.limits as limits

from ..errors import DataError
from .catalog import REGISTRY, dataset_names


def resolve_data_reference(reference: str, allowed: Sequence[str | os.PathLike]) -> str:
    """What `load_dataset` may be given for a data reference read from an untrusted place (a checkpoint's
    `config.data`, a URL): a built-in dataset name, returned as it is, or a path that is one of `allowed`
    or lies inside one of them, returned as its real absolute path.

    `allowed` holds what this user supplied here: in the app their session's own upload folder, in the
    CLI the file or folder given explicitly with `--data`. Paths are compared after
    `os.path.realpath` on both sides, so `..` and symbolic links cannot lead outside; a leading `~` is
    not expanded, and a relative reference resolves against the current directory, so it too must land
    inside `allowed`. The file need not exist yet: `load_dataset` reports a missing one.

    Anything else raises DataError with one fixed message that quotes neither the reference nor any
    file name or content, and says nothing about whether the path exists.
    """
    if not isinstance(reference, str) or not reference or "\0" in reference:
        raise DataError(_refusal())
    if reference in REGISTRY:
        return reference
    real = os.path.realpath(reference)
    for root in allowed:
        real_root = os.path.realpath(os.fspath(root))
        if real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep):
            return real
    raise DataError(_refusal())


def _refusal() -> str:
    return (
        "the data this refers to is neither a built-in dataset ("
        + ", ".join(dataset_names())
        + ") nor a file or folder supplied here, so it is not opened; choose a built-in dataset or upload "
        "the data again"
    )


def safe_upload_name(name: str) -> str:
    """A file name to save an upload under: the last path part of `name` (either slash), without control
    characters or leading dots, at most MAX_UPLOAD_NAME_BYTES of UTF-8 with its extension kept; "upload"
    plus the extension when nothing is left. Choose the folder yourself: this only names the file."""
    base = re.split(r"[/\\]", str(name))[-1]
    base = "".join(character for character in base if character.isprintable()).strip().lstrip(".")
    stem, dot, extension = base.rpartition(".")
    if not dot:
        stem, extension = base, ""
    extension = re.sub(r"[^A-Za-z0-9]", "", extension)[:16]
    suffix = f".{extension}" if extension else ""
    room = limits.MAX_UPLOAD_NAME_BYTES - len(suffix)
    stem = stem.encode("utf-8")[:room].decode("utf-8", errors="ignore").strip() or "upload"
    return stem + suffix
