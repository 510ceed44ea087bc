"""Files written so that a crash, a kill or a full disk mid-write leaves the previous file as it was."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path


def output_folder(folder: str | Path) -> Path:
    """`folder`, made if it does not exist, for a command's output (--out-dir): checked before any run
    trains, so a path naming a file is refused in one line rather than failing each run after its
    training, or with a traceback."""
    from .errors import VAEStudioError

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise VAEStudioError(f"{folder} is a file, not a folder: give --out-dir a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise VAEStudioError(f"cannot make the folder {folder}: {error.strerror}") from None
    return folder


def write_atomically(target: Path, data: bytes, *, overwrite: bool = True) -> None:
    """Write `data` to `target` so that readers see the old file or the complete new one, never a mix.

    With overwrite=False an existing `target` is left untouched and FileExistsError is raised. Any
    other failure raises OSError and leaves no temporary file behind.
    """
    directory = target.parent
    mode = _file_mode_for(target)
    # The temporary file lives next to the target so the final rename or link stays within one
    # filesystem, where POSIX makes it atomic; a hidden name keeps a half-written file out of listings.
    handle = tempfile.NamedTemporaryFile(dir=directory, prefix=f".{target.name}.", suffix=".tmp", delete=False)
    temp_path = Path(handle.name)
    try:
        with handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())  # the bytes must be on disk before a name points at them
        os.chmod(temp_path, mode)
        if overwrite:
            os.replace(temp_path, target)
        else:
            os.link(temp_path, target)  # fails if target exists, even if it appeared a moment ago
    finally:  # also on KeyboardInterrupt; after a link the temporary name is just a second name
        with contextlib.suppress(OSError):
            temp_path.unlink()
    _fsync_directory(directory)


def _file_mode_for(target: Path) -> int:
    """A replaced file keeps its permissions and a new one gets 0644: NamedTemporaryFile's private 0600
    would otherwise make every saved file unreadable to other users."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        return 0o644


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself survive a power cut.

    Best effort: the new file is already complete and in place, and some systems (Windows, some
    network filesystems) cannot fsync a directory; failing a save that did happen would be worse.
    """
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
