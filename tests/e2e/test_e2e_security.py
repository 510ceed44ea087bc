"""The served app against a DNS-rebinding page: a browser that reached 127.0.0.1 through another
name sends that name as Host (and as Origin, so the origin check passes); Streamlit's
server.allowedHosts (.streamlit/config.toml) refuses the WebSocket the whole app runs on."""

from __future__ import annotations

import socket
from urllib.parse import urlparse

import pytest


def _websocket_status(url: str, host: str) -> int:
    """The HTTP status of a WebSocket handshake on the app's stream, sent with Host and Origin `host`."""
    address = urlparse(url)
    request = (
        "GET /_stcore/stream HTTP/1.1\r\n"
        f"Host: {host}:{address.port}\r\n"
        f"Origin: http://{host}:{address.port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.create_connection((address.hostname, address.port), timeout=10) as connection:
        connection.sendall(request.encode())
        status_line = connection.recv(4096).split(b"\r\n", 1)[0].decode()
    return int(status_line.split()[1])


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_loopback_names_open_the_app(app_server, host):
    assert _websocket_status(app_server.url, host) == 101


@pytest.mark.parametrize("host", ["evil.example", "192.168.1.20", "127.0.0.1.evil.example"])
def test_any_other_host_is_refused(app_server, host):
    assert _websocket_status(app_server.url, host) == 403
