"""When a request arrived: the kernel's receive time of its bytes, not the time its handler ran.

The clock offset of a site is ``arrival - sent_at`` and every sample of the
report is moved by it, so the arrival must not include the collector's own
delays: an event loop busy with other reports, a garbage collection, a
process stopped for a moment, a slow dependency. Any of them made the handler
run seconds after the bytes were there, and moved the site's evidence by as
much.

The kernel knows: TCP_INFO's ``tcpi_last_data_recv`` is how long ago (in
milliseconds) the connection last received data. The server's protocol reads
it as soon as a request begins to parse (``ArrivalProtocol``), which is at
most one read after its first bytes, and stores ``now - that`` in the ASGI
scope. Servers without the protocol (tests' in-process client, another ASGI
server) get the time the application first saw the request (``stamp``), which
is still before any of its own work.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import MutableMapping
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

SCOPE_KEY = "commune.arrived_at"
_TCP_INFO = getattr(socket, "TCP_INFO", 11)  # Linux
_LAST_DATA_RECV = struct.Struct("=I")  # struct tcp_info: __u32 tcpi_last_data_recv at byte 52
_LAST_DATA_RECV_OFFSET = 52
_TCP_INFO_LEN = 104


def kernel_arrival(transport: Any, now: float | None = None) -> float | None:
    """When the connection last received data, by the kernel's clock of it; None where unknown."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or getattr(sock, "type", None) != socket.SOCK_STREAM:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _TCP_INFO_LEN)
    except (OSError, AttributeError):
        return None
    if len(info) < _LAST_DATA_RECV_OFFSET + _LAST_DATA_RECV.size:
        return None
    (ago_ms,) = _LAST_DATA_RECV.unpack_from(info, _LAST_DATA_RECV_OFFSET)
    now = time.time() if now is None else now
    return now - ago_ms / 1000.0


class ArrivalProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, stamping each request with the time its bytes arrived."""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        now = time.time()
        arrived = kernel_arrival(self.transport, now)
        self.scope[SCOPE_KEY] = min(now, arrived) if arrived is not None else now  # type: ignore[literal-required]


def stamp(scope: MutableMapping[str, Any]) -> None:
    """The first time the application sees a request, if the server did not say when it arrived."""
    scope.setdefault(SCOPE_KEY, time.time())


def arrived_at(scope: MutableMapping[str, Any]) -> float:
    """The request's arrival (see the module docstring); now, as a last resort."""
    value = scope.get(SCOPE_KEY)
    return float(value) if value is not None else time.time()
