"""The pipe between a server and the run process it started: length-prefixed pickled messages.

Both ends are this package (the server starts the process with `python -m vae_core.worker` and owns
its stdin and stdout), so pickle carries our own snapshots and never a file's bytes. Tensors travel
as NumPy arrays: PyTorch's own pickling of tensors across processes shares memory through file
descriptors, which a plain pipe does not carry.
"""

from __future__ import annotations

import contextlib
import pickle
import struct
import threading
from typing import Any, BinaryIO

_LENGTH = struct.Struct("<Q")
MAX_MESSAGE_BYTES = 1 << 31


class ChannelClosed(Exception):
    """The other end is gone (its process ended, or closed the pipe)."""


class Channel:
    """Messages both ways over a reader and a writer stream; `send` may be called from any thread."""

    def __init__(self, reader: BinaryIO, writer: BinaryIO):
        self._reader, self._writer = reader, writer
        self._send_lock = threading.Lock()

    def send(self, *message: Any) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            with self._send_lock:
                self._writer.write(_LENGTH.pack(len(data)) + data)
                self._writer.flush()
        except (OSError, ValueError) as error:  # ValueError: the stream was closed
            raise ChannelClosed(str(error)) from None

    def receive(self) -> tuple:
        try:
            header = self._reader.read(_LENGTH.size)
            if len(header) < _LENGTH.size:
                raise ChannelClosed("end of stream")
            (length,) = _LENGTH.unpack(header)
            if length > MAX_MESSAGE_BYTES:
                raise ChannelClosed("a message longer than the limit")
            data = self._reader.read(length)
        except (OSError, ValueError) as error:
            raise ChannelClosed(str(error)) from None
        if len(data) < length:
            raise ChannelClosed("end of stream inside a message")
        return pickle.loads(data)

    def close(self) -> None:
        for stream in (self._writer, self._reader):
            with contextlib.suppress(OSError):
                stream.close()
