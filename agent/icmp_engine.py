"""One ICMP echo engine for every target: a socket per (family, source, interface).

fping's trick, done in asyncio: instead of a socket (or a process) per target,
every echo request goes out through one shared socket and replies are matched
back to their round by sequence number. 500 targets then cost 500 futures, not
500 sockets. Receive times come from the kernel (SO_TIMESTAMPNS), so a busy
event loop does not inflate the RTT it reports.

A round of N echoes is scheduled as N timer callbacks and awaited as one
future with one deadline: no task, sleep or timer per echo. That keeps the
agent's CPU per echo within a small multiple of fping's (benchmarks/icmp_sweep.py).

Unprivileged ICMP ("ping") sockets are used where ``net.ipv4.ping_group_range``
allows them; raw sockets otherwise (root or CAP_NET_RAW).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import struct
import time
from dataclasses import dataclass, field

from agent.probes.base import Binding, ProbeError

ICMP_ECHO_REQUEST = 8
ICMP_ECHO_REPLY = 0
ICMP6_ECHO_REQUEST = 128
ICMP6_ECHO_REPLY = 129
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
_ICMP6_FILTER = 1  # from <netinet/icmp6.h>
_SOL_RAW, _ICMP_FILTER = 255, 1  # from <linux/icmp.h>: a mask of the ICMP types a raw socket drops


def checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


@dataclass(slots=True)
class _Round:
    """The echoes of one ping round, completed together (one future, one deadline)."""

    target: str
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


@dataclass(slots=True)
class _Pending:
    round: _Round
    index: int


@dataclass
class _Channel:
    """One socket and the echoes waiting on it."""

    sock: socket.socket
    family: int
    raw: bool
    ident: int
    seq: int = 0
    pending: dict[int, _Pending] = field(default_factory=dict)


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

    def close(self) -> None:
        """Close every socket and fail whatever still waits."""
        for ch in self._channels.values():
            try:
                asyncio.get_running_loop().remove_reader(ch.sock.fileno())
            except RuntimeError:
                pass
            for p in ch.pending.values():
                if not p.round.done.done():
                    p.round.done.cancel()
            ch.sock.close()
        self._channels.clear()

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

    def _on_readable(self, ch: _Channel) -> None:
        while True:
            try:
                data, ancdata, _flags, addr = ch.sock.recvmsg(65535, 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            recv_ns = _kernel_time_ns(ancdata)
            self._match(ch, data, addr[0], recv_ns)

    def _match(self, ch: _Channel, data: bytes, source: str, recv_ns: int) -> None:
        if ch.raw and ch.family == socket.AF_INET:
            data = data[(data[0] & 0x0F) * 4:] if data else data
        if len(data) < 8:
            return
        icmp_type, _code, _csum, ident, seq = struct.unpack("!BBHHH", data[:8])
        want_type = ICMP_ECHO_REPLY if ch.family == socket.AF_INET else ICMP6_ECHO_REPLY
        if icmp_type != want_type or (ch.raw and ident != ch.ident):
            return
        pending = ch.pending.get(seq)
        if pending is None or _strip_scope(source) != pending.round.target:
            return
        del ch.pending[seq]
        pending.round.resolve(pending.index, recv_ns - pending.round.sent_ns[pending.index])

    def _next_seq(self, ch: _Channel) -> int:
        for _ in range(65536):
            ch.seq = (ch.seq + 1) & 0xFFFF
            if ch.seq not in ch.pending:
                return ch.seq
        raise ProbeError("more than 65535 echo requests in flight on one socket")

    def _packet(self, ch: _Channel, seq: int) -> bytes:
        if ch.family != socket.AF_INET:  # ICMPv6 checksums are filled in by the kernel
            return struct.pack("!BBHHH", ICMP6_ECHO_REQUEST, 0, 0, ch.ident, seq) + self._payload
        total = self._payload_sum + (ICMP_ECHO_REQUEST << 8) + ch.ident + seq
        total = (total >> 16) + (total & 0xFFFF)
        total += total >> 16
        return struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, ~total & 0xFFFF, ch.ident, seq) + self._payload

    def _send(self, ch: _Channel, rnd: _Round, index: int) -> None:
        """Send echo ``index`` of a round (called at its slot by the event loop)."""
        if rnd.done.done():
            return
        seq = self._next_seq(ch)
        ch.pending[seq] = _Pending(rnd, index)
        rnd.seqs.append(seq)
        rnd.sent_ns[index] = time.time_ns()
        try:
            ch.sock.sendto(self._packet(ch, seq), (rnd.target, 0))
        except OSError as exc:
            ch.pending.pop(seq, None)
            if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL):
                rnd.resolve(index, None)  # a lost echo, like ping's "Network is unreachable"
            else:
                rnd.error = f"send to {rnd.target} failed: {exc.strerror}"
                rnd.done.set_result(None)

    async def ping(self, address: str, family: int, count: int, spacing: float, reply_timeout: float,
                   binding: Binding | None = None) -> list[float | None]:
        """``count`` echoes ``spacing`` seconds apart, each waiting up to ``reply_timeout``: the RTTs."""
        ch = self._channel(family, binding or Binding())
        loop = asyncio.get_running_loop()
        rnd = _Round(address, int(reply_timeout * 1e9), [None] * count, [0] * count, count, loop.create_future())
        start = loop.time()
        handles = [loop.call_at(start + i * spacing, self._send, ch, rnd, i) for i in range(1, count)]
        try:
            self._send(ch, rnd, 0)
            async with asyncio.timeout_at(start + (count - 1) * spacing + reply_timeout):
                await rnd.done
        except TimeoutError:
            pass  # the echoes still outstanding are lost
        finally:
            for handle in handles:
                handle.cancel()
            for seq in rnd.seqs:
                pending = ch.pending.get(seq)
                if pending is not None and pending.round is rnd:
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
            sec, nsec = struct.unpack("qq", payload[:16])
            return sec * 1_000_000_000 + nsec
    return time.time_ns()


def _strip_scope(address: str) -> str:
    return address.split("%", 1)[0]
