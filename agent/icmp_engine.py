"""One ICMP echo engine for every target: a socket per (family, source, interface).

fping's trick, done in asyncio: instead of a socket (or a process) per target,
every echo request goes out through one shared socket and replies are matched
back to their round by sequence number. 500 targets then cost 500 futures, not
500 sockets. Receive times come from the kernel (SO_TIMESTAMPNS), so a busy
event loop does not inflate the RTT it reports.

A round's first echo leaves as soon as the round starts. After that a round has
two entries in one engine-wide schedule (a heap of plain tuples): its deadline
and its next echo. A single event-loop timer serves the schedule and sends
everything due in one pass. So a round costs one future and no task, timer or
timeout of its own (benchmarks/icmp_sweep.py measures 500 rounds at once).
Echo i of a round leaves at the time the round was due plus i spacings (as
fping's per-target period): rounds due together send their later echoes in
one timer pass, as fping's bursts do, however long it took to start them all.

Unprivileged ICMP ("ping") sockets are used where ``net.ipv4.ping_group_range``
allows them; raw sockets otherwise (root or CAP_NET_RAW).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import heapq
import itertools
import os
import socket
import struct
import time
from dataclasses import dataclass, field

from commune_agent.probes.base import Binding, ProbeError

ICMP_ECHO_REQUEST = 8
ICMP_ECHO_REPLY = 0
ICMP6_ECHO_REQUEST = 128
ICMP6_ECHO_REPLY = 129
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
_ICMP6_FILTER = 1  # from <netinet/icmp6.h>
_SOL_RAW, _ICMP_FILTER = 255, 1  # from <linux/icmp.h>: a mask of the ICMP types a raw socket drops
_HEADER = struct.Struct("!BBHHH")  # type, code, checksum, identifier, sequence
_TIMESPEC = struct.Struct("qq")
_EXPIRE = -1  # in the schedule, in place of an echo index: the round's deadline
LATE_START = 0.1  # share of the spacing a round may start late and still keep its due time's echo grid
# epoll waits in whole milliseconds, rounded up: the timer is armed this much early and sends whatever is
# due within it, so a burst leaves on time rather than up to a millisecond and a half late
TIMER_EARLY = 0.001
_UNREACHABLE = (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL)


def checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


@dataclass
class _Channel:
    """One socket and the echoes waiting on it (sequence number -> round and echo index)."""

    sock: socket.socket
    family: int
    raw: bool
    ident: int
    seq: int = 0
    pending: dict[int, tuple[_Round, int]] = field(default_factory=dict)

    @property
    def reply_type(self) -> int:
        return ICMP_ECHO_REPLY if self.family == socket.AF_INET else ICMP6_ECHO_REPLY


@dataclass(slots=True)
class _Round:
    """The echoes of one ping round, completed together (one future, one deadline)."""

    channel: _Channel
    target: str
    sockaddr: tuple[str, int]  # built once: sendto() takes it as is
    start: float  # loop time of the first echo: echo i is due at start + i * spacing
    spacing: float
    reply_timeout: float
    timeout_ns: int
    rtts: list[float | None]
    sent_ns: list[int]
    outstanding: int
    done: asyncio.Future[None]
    seqs: list[int] = field(default_factory=list)
    error: str = ""

    def resolve(self, index: int, rtt_ns: int | None) -> None:
        """Echo ``index`` is answered (``rtt_ns``) or lost (None); finish when none is left."""
        if rtt_ns is not None and rtt_ns <= self.timeout_ns:  # a reply after its own timeout is lost
            self.rtts[index] = max(rtt_ns, 0) / 1e9
        self.outstanding -= 1
        if self.outstanding <= 0 and not self.done.done():
            self.done.set_result(None)

    def fail(self, reason: str) -> None:
        """The round cannot go on (its ``ping`` raises ``reason``)."""
        if not self.done.done():
            self.error = reason
            self.done.set_result(None)


class IcmpEngine:
    """Send echo requests and await their replies, sharing sockets across targets."""

    def __init__(self, prefer_unprivileged: bool = True, payload_size: int = 56):
        self.prefer_unprivileged = prefer_unprivileged
        self.payload_size = payload_size
        self._channels: dict[tuple[int, str | None, str | None], _Channel] = {}
        self._ident = os.getpid() & 0xFFFF
        self._payload = (b"commune-monitor " * (payload_size // 16 + 1))[:payload_size]
        padded = self._payload + b"\x00" * (len(self._payload) % 2)
        self._payload_sum = sum(struct.unpack(f"!{len(padded) // 2}H", padded))  # checksum, precomputed
        self._recv_size = 128 + payload_size  # IP header (60 at most) + ICMP header + payload, with room
        # (when, tie-breaker, round, echo index or _EXPIRE): each round's next echo and its deadline
        self._schedule: list[tuple[float, int, _Round, int]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None

    def close(self) -> None:
        """Close every socket and fail whatever still waits."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting = [entry[2] for entry in self._schedule]
        self._schedule.clear()
        for ch in self._channels.values():
            try:
                asyncio.get_running_loop().remove_reader(ch.sock.fileno())
            except RuntimeError:
                pass
            waiting += [rnd for rnd, _index in ch.pending.values()]
            ch.sock.close()
        self._channels.clear()
        for rnd in waiting:
            if not rnd.done.done():
                rnd.done.cancel()

    # ------------------------------------------------------------ sockets

    def _open(self, family: int, binding: Binding) -> _Channel:
        proto = socket.IPPROTO_ICMP if family == socket.AF_INET else socket.IPPROTO_ICMPV6
        kinds = [socket.SOCK_DGRAM, socket.SOCK_RAW] if self.prefer_unprivileged else [socket.SOCK_RAW, socket.SOCK_DGRAM]
        last: OSError | None = None
        for kind in kinds:
            try:
                sock = socket.socket(family, kind, proto)
            except OSError as exc:  # EACCES/EPERM: not allowed here; try the other kind
                last = exc
                continue
            try:
                self._configure(sock, family, kind == socket.SOCK_RAW, binding)
            except OSError:
                sock.close()
                raise
            return _Channel(sock, family, kind == socket.SOCK_RAW, self._ident)
        raise ProbeError(f"cannot open an ICMP socket ({last}); run as root, grant CAP_NET_RAW "
                         "or widen net.ipv4.ping_group_range")

    @staticmethod
    def _configure(sock: socket.socket, family: int, raw: bool, binding: Binding) -> None:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        if raw and family == socket.AF_INET:
            # a raw socket sees every ICMP packet of the host (on loopback our own requests too):
            # let the kernel keep only echo replies rather than waking us for the rest
            with contextlib.suppress(OSError):
                sock.setsockopt(_SOL_RAW, _ICMP_FILTER, struct.pack("I", ~(1 << ICMP_ECHO_REPLY) & 0xFFFFFFFF))
        if raw and family == socket.AF_INET6:
            # only echo replies: pass type 129, block the rest (ICMP6_FILTER is a 256-bit block mask)
            blocked = [0xFFFFFFFF] * 8
            blocked[ICMP6_ECHO_REPLY >> 5] &= ~(1 << (ICMP6_ECHO_REPLY & 31))
            sock.setsockopt(socket.IPPROTO_ICMPV6, _ICMP6_FILTER, struct.pack("8I", *blocked))
        if binding.interface:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, binding.interface.encode() + b"\0")
            except OSError as exc:
                raise ProbeError(f"cannot bind to interface {binding.interface}: {exc.strerror}") from None
        if binding.source_address:
            try:
                sock.bind((binding.source_address, 0))
            except OSError as exc:
                raise ProbeError(f"cannot bind to source {binding.source_address}: {exc.strerror}") from None

    def _channel(self, family: int, binding: Binding) -> _Channel:
        key = (family, binding.source_address, binding.interface)
        ch = self._channels.get(key)
        if ch is None:
            ch = self._open(family, binding)
            if ch.raw:
                # every raw socket sees every echo reply: a distinct id per channel keeps one
                # link's replies (same target, same seq) from completing another link's echoes
                ch.ident = (self._ident + len(self._channels)) & 0xFFFF
            else:
                ch.ident = ch.sock.getsockname()[1]  # the kernel rewrites the id to the socket's "port"
            asyncio.get_running_loop().add_reader(ch.sock.fileno(), self._on_readable, ch)
            self._channels[key] = ch
        return ch

    # ------------------------------------------------------------ replies

    def _on_readable(self, ch: _Channel) -> None:
        """Drain the socket: every reply queued since the last wake-up, each with its kernel time."""
        while True:
            try:
                data, ancdata, _flags, addr = ch.sock.recvmsg(self._recv_size, 64)
            except OSError:  # BlockingIOError: drained; anything else: nothing more to read now
                return
            self._match(ch, data, addr[0], _kernel_time_ns(ancdata))

    def _match(self, ch: _Channel, data: bytes, source: str, recv_ns: int) -> None:
        offset = (data[0] & 0x0F) * 4 if ch.raw and ch.family == socket.AF_INET and data else 0  # raw v4: IP header
        if len(data) < offset + 8:
            return
        icmp_type, _code, _csum, ident, seq = _HEADER.unpack_from(data, offset)
        if icmp_type != ch.reply_type or (ch.raw and ident != ch.ident):
            return
        pending = ch.pending.get(seq)
        if pending is None:
            return
        rnd, index = pending
        if source != rnd.target and _strip_scope(source) != rnd.target:
            return
        del ch.pending[seq]
        rnd.resolve(index, recv_ns - rnd.sent_ns[index])

    # ------------------------------------------------------------ requests

    def _next_seq(self, ch: _Channel) -> int:
        for _ in range(65536):
            ch.seq = (ch.seq + 1) & 0xFFFF
            if ch.seq not in ch.pending:
                return ch.seq
        raise ProbeError("more than 65535 echo requests in flight on one socket")

    def _packet(self, ch: _Channel, seq: int) -> bytes:
        if ch.family != socket.AF_INET:  # ICMPv6 checksums are filled in by the kernel
            return _HEADER.pack(ICMP6_ECHO_REQUEST, 0, 0, ch.ident, seq) + self._payload
        total = self._payload_sum + (ICMP_ECHO_REQUEST << 8) + ch.ident + seq
        total = (total >> 16) + (total & 0xFFFF)
        total += total >> 16
        return _HEADER.pack(ICMP_ECHO_REQUEST, 0, ~total & 0xFFFF, ch.ident, seq) + self._payload

    def _send(self, rnd: _Round, index: int) -> None:
        """Send echo ``index`` of a round now."""
        ch = rnd.channel
        try:
            seq = self._next_seq(ch)
        except ProbeError as exc:
            rnd.fail(str(exc))
            return
        packet = self._packet(ch, seq)
        ch.pending[seq] = (rnd, index)
        rnd.seqs.append(seq)
        # the send time is taken last: between it and sendto() nothing allocates an object that
        # could set off a garbage collection. The reply's time is the kernel's.
        rnd.sent_ns[index] = time.time_ns()
        try:
            ch.sock.sendto(packet, rnd.sockaddr)
        except OSError as exc:
            del ch.pending[seq]
            if exc.errno in _UNREACHABLE:
                rnd.resolve(index, None)  # a lost echo, like ping's "Network is unreachable"
            else:
                rnd.fail(f"send to {rnd.target} failed: {exc.strerror}")

    def _at(self, when: float, rnd: _Round, index: int) -> float:
        """Put echo ``index`` of a round (or, with ``_EXPIRE``, its deadline) on the schedule; ``when``."""
        heapq.heappush(self._schedule, (when, next(self._order), rnd, index))
        return when

    def _arm(self, when: float) -> None:
        """Make sure the timer fires by ``when`` (``TIMER_EARLY`` before it)."""
        if self._timer is None or when - TIMER_EARLY < self._timer.when():
            if self._timer is not None:
                self._timer.cancel()
            self._timer = asyncio.get_running_loop().call_at(when - TIMER_EARLY, self._run_due)

    def _run_due(self) -> None:
        """The one timer: send every echo that is due, expire every round past its deadline, re-arm."""
        self._timer = None
        loop = asyncio.get_running_loop()
        now, schedule = loop.time() + TIMER_EARLY, self._schedule
        try:
            while schedule and schedule[0][0] <= now:
                _when, _order, rnd, index = heapq.heappop(schedule)
                if rnd.done.done():
                    continue  # finished early, failed or cancelled: nothing more to send
                if index == _EXPIRE:
                    rnd.done.set_result(None)  # the echoes still outstanding are lost
                else:
                    self._send(rnd, index)
                    if index + 1 < len(rnd.rtts):
                        self._at(rnd.start + (index + 1) * rnd.spacing, rnd, index + 1)
        finally:
            if schedule:
                self._timer = loop.call_at(schedule[0][0] - TIMER_EARLY, self._run_due)

    async def ping(self, address: str, family: int, count: int, spacing: float, reply_timeout: float,
                   binding: Binding | None = None, due: float | None = None) -> list[float | None]:
        """``count`` echoes ``spacing`` seconds apart, each waiting up to ``reply_timeout``: the RTTs.

        ``due``: the loop time the round was due. Echo i leaves at ``due + i * spacing``, so rounds
        due together share their bursts; the first echo leaves now. A round started more than
        ``LATE_START`` of a spacing after ``due`` (or without one) keeps its own time.
        """
        ch = self._channel(family, binding or Binding())
        loop = asyncio.get_running_loop()
        now = loop.time()
        start = due if due is not None and 0.0 <= now - due <= spacing * LATE_START else now
        rnd = _Round(ch, address, (address, 0), start, spacing, reply_timeout, int(reply_timeout * 1e9),
                     [None] * count, [0] * count, count, loop.create_future())
        self._send(rnd, 0)
        next_due = self._at(max(rnd.start + (count - 1) * spacing, now) + reply_timeout, rnd, _EXPIRE)
        if count > 1:
            next_due = self._at(rnd.start + spacing, rnd, 1)
        self._arm(next_due)
        try:
            await rnd.done
        finally:
            if not rnd.done.done():
                rnd.done.cancel()  # cancelled from outside (the runner's timeout): send nothing more
            if rnd.outstanding:  # echoes lost or never sent: forget their sequence numbers
                for seq in rnd.seqs:
                    pending = ch.pending.get(seq)
                    if pending is not None and pending[0] is rnd:
                        del ch.pending[seq]
        if rnd.error:
            raise ProbeError(rnd.error)
        return rnd.rtts

    def socket_kind(self, family: int, binding: Binding | None = None) -> str:
        """``raw`` or ``unprivileged``: which ICMP socket this family and binding use (shown by probe-once)."""
        return "raw" if self._channel(family, binding or Binding()).raw else "unprivileged"

    async def echo(self, address: str, family: int, reply_timeout: float,
                   binding: Binding | None = None) -> float | None:
        """Send one echo request; the RTT in seconds, or None when no reply came in time."""
        return (await self.ping(address, family, 1, 0.0, reply_timeout, binding))[0]


def _kernel_time_ns(ancdata: list[tuple[int, int, bytes]]) -> int:
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= 16:
            sec, nsec = _TIMESPEC.unpack_from(payload)
            return sec * 1_000_000_000 + nsec
    return time.time_ns()


def _strip_scope(address: str) -> str:
    return address.split("%", 1)[0]
