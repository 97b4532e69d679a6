"""Request limits in the collector's own HTTP server: header size, header and body time-outs, connections.

uvicorn's httptools parser has no header limit and no time-out for a request
that never finishes arriving: one 64 MiB header was read and parsed whole, and
a connection that sent half a request stayed open for ever. The limits belong
to the collector itself, not only to a proxy in front of it, so they are
enforced where the bytes arrive: ``GuardedProtocol`` is uvicorn's
``HttpToolsProtocol`` with a check in ``data_received`` and at most one timer
per connection, armed only while a request is left half-received (a request
that arrives in one read, as an agent's report does, costs no timer).

- the header section (request line and headers) is fed to the parser at most
  ``max_header_bytes`` at a time; past the limit the answer is 431 and the
  rest is never parsed;
- a request's header section must arrive within ``header_timeout`` of its
  first byte (or of the connection, for a connection that sends nothing):
  else 408 and the connection is closed. This is nginx's
  ``client_header_timeout``;
- while a body arrives, at most ``body_timeout`` may pass between two reads
  (nginx's ``client_body_timeout``), not counting time the server itself
  stopped reading (flow control); else the connection is closed and the
  route sees a client disconnect;
- beyond ``max_connections`` open connections a new one is answered 503 and
  closed at once, so file descriptors stay bounded.

Between requests a kept-alive connection is governed by ``keep_alive``
(uvicorn's own timer); no timer of ours runs then, so 10,000 idle agent
connections cost no timers.

After a refusal the connection is half-closed and what the client still sends
is discarded for ``LINGER_SECONDS`` (nginx's lingering close): closing at once
with unread data would reset the connection and the client might never read
the answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

log = logging.getLogger("commune_collector.http")
LINGER_SECONDS = 2.0
PREFIX = "commune_collector_"
REFUSALS = ("header_too_large", "header_timeout", "body_timeout", "too_many_connections")
_IDLE, _HEAD, _BODY = 0, 1, 2  # between requests (or waiting for the app), reading a header section, reading a body


class ServerStats:
    """What the server's guards did since start (one per process: the protocol has no app state)."""

    def __init__(self) -> None:
        self.refused: Counter[str] = Counter()
        self.client_disconnects = 0
        self.open_connections = 0

    def families(self) -> Iterator[Metric]:
        refused = CounterMetricFamily(PREFIX + "http_refused_requests",
                                      "Requests or connections refused by the server's limits, by reason.",
                                      labels=["reason"])
        for reason in REFUSALS:
            refused.add_metric([reason], self.refused.get(reason, 0))
        yield refused
        yield CounterMetricFamily(PREFIX + "client_disconnects",
                                  "Requests whose client went away before its body had arrived.",
                                  self.client_disconnects)
        yield GaugeMetricFamily(PREFIX + "http_open_connections", "Client connections open now.",
                                self.open_connections)


SERVER_STATS = ServerStats()


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits above; ``limits`` is set by ``guarded_protocol``."""

    limits: Any  # commune_collector.settings.HttpLimits
    stats: ServerStats = SERVER_STATS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase = _HEAD
        self._head_bytes = 0
        self._head_started = 0.0
        self._last_read = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._refused = False

    # -- connection life --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.stats.open_connections += 1
        self._head_started = self.loop.time()
        if len(self.connections) > self.limits.max_connections:
            self._refuse(503, "Service unavailable", "too many connections; retry later", "too_many_connections",
                         {"retry-after": "5"})
            return
        self._arm(self.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.open_connections -= 1
        self._disarm()
        super().connection_lost(exc)

    # -- bytes in ---------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        """Feed the parser, a header section at most ``max_header_bytes`` of it."""
        if self._refused:
            return  # lingering: discard
        while data:
            if self._phase == _IDLE:
                self._begin_head()
            if self._phase == _HEAD:
                room = self.limits.max_header_bytes - self._head_bytes
                if room <= 0:
                    self._refuse(431, "Request header fields too large",
                                 f"the request line and headers exceed {self.limits.max_header_bytes} bytes",
                                 "header_too_large")
                    return
                piece, data = (data, b"") if len(data) <= room else (data[:room], data[room:])
                self._head_bytes += len(piece)
            else:
                piece, data = data, b""
                self._last_read = self.loop.time()
            super().data_received(piece)
            if self.transport.is_closing():
                return
        self._watch_unfinished()

    def _watch_unfinished(self) -> None:
        """Arm the timer only for a request left half-received (a whole request in one read costs no timer)."""
        if self._timer is not None:
            return
        if self._phase == _HEAD and self._head_bytes:
            self._arm(max(0.0, self._head_started + self.limits.header_timeout - self.loop.time()))
        elif self._phase == _BODY:
            self._arm(self.limits.body_timeout)

    def on_headers_complete(self) -> None:
        self._phase = _BODY
        self._last_read = self.loop.time()
        self._disarm()  # the connection's first header time-out
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._phase = _IDLE
        self._disarm()
        super().on_message_complete()

    def _begin_head(self) -> None:
        self._phase = _HEAD
        self._head_bytes = 0
        self._head_started = self.loop.time()

    # -- the one timer ----------------------------------------------------------------------------

    def _arm(self, delay: float) -> None:
        if self._timer is None:
            self._timer = self.loop.call_later(delay, self._on_timer)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        if self._refused or self.transport.is_closing():
            return
        now = self.loop.time()
        if self.flow.read_paused:  # the server stopped reading (pipelining, a body not yet consumed), not the client
            self._arm(self.limits.body_timeout if self._phase == _BODY else self.limits.header_timeout)
            if self._phase == _HEAD:
                self._head_started = now
            else:
                self._last_read = now
            return
        if self._phase == _HEAD:
            left = self._head_started + self.limits.header_timeout - now
            if left > 0:
                self._arm(left)
            elif self._head_bytes:
                self._refuse(408, "Request timeout", f"the request's headers did not arrive within "
                             f"{self.limits.header_timeout:g} s", "header_timeout")
            else:  # a connection that never sent a byte: nobody to answer
                self.stats.refused["header_timeout"] += 1
                self.transport.close()
        elif self._phase == _BODY:
            left = self._last_read + self.limits.body_timeout - now
            if left > 0:
                self._arm(left)
            else:
                self.stats.refused["body_timeout"] += 1
                log.debug("%s: no body bytes for %g s; connection closed", _peer(self.client),
                          self.limits.body_timeout)
                self.transport.close()  # the route, if reading, sees a client disconnect

    # -- refusing ---------------------------------------------------------------------------------

    def _refuse(self, status: int, title: str, detail: str, reason: str,
                headers: dict[str, str] | None = None) -> None:
        """Answer with a problem document, stop parsing, half-close, discard what still comes, then close."""
        self._refused = True
        self._disarm()
        self.stats.refused[reason] += 1
        log.debug("%s: %d %s", _peer(self.client), status, detail)
        body = json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail,
                           "errors": []}).encode()
        head = [STATUS_LINE[status], b"content-type: application/problem+json\r\n",
                b"content-length: %d\r\n" % len(body), b"connection: close\r\n"]
        head += [f"{name}: {value}\r\n".encode("latin-1") for name, value in (headers or {}).items()]
        self.transport.write(b"".join([*head, b"\r\n", body]))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "client"


def guarded_protocol(limits: Any, *mixins: type[HttpToolsProtocol]) -> type[GuardedProtocol]:
    """The protocol class to give uvicorn (``Config(http=...)``), bound to these limits.

    ``mixins`` are other ``HttpToolsProtocol`` subclasses to combine with the
    guard (each calls ``super()``), e.g. the one that stamps arrival times.
    """
    return type("GuardedProtocol", (GuardedProtocol, *mixins), {"limits": limits})
