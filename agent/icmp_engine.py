"""One ICMP echo engine for every target: a socket per (family, source, interface).

fping's trick, done in asyncio: instead of a socket (or a process) per target,
every echo request goes out through one shared socket and replies are matched
back to their waiting future by sequence number. 500 targets then cost 500
futures, not 500 sockets. Receive times come from the kernel (SO_TIMESTAMPNS),
so a busy event loop does not inflate the RTT it reports.

Unprivileged ICMP ("ping") sockets are used where ``net.ipv4.ping_group_range``
allows them; raw sockets otherwise (root or CAP_NET_RAW).
"""

from __future__ import annotations

import asyncio
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


def checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


@dataclass
class _Pending:
    target: str
    sent_ns: int
    future: asyncio.Future[int]


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

    def close(self) -> None:
        """Close every socket and fail whatever still waits."""
        for ch in self._channels.values():
            try:
                asyncio.get_running_loop().remove_reader(ch.sock.fileno())
            except RuntimeError:
                pass
            for p in ch.pending.values():
                if not p.future.done():
                    p.future.cancel()
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
            if not ch.raw:
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
        if pending is None or _strip_scope(source) != pending.target or pending.future.done():
            return
        del ch.pending[seq]
        pending.future.set_result(recv_ns)

    def _next_seq(self, ch: _Channel) -> int:
        for _ in range(65536):
            ch.seq = (ch.seq + 1) & 0xFFFF
            if ch.seq not in ch.pending:
                return ch.seq
        raise ProbeError("more than 65535 echo requests in flight on one socket")

    def _packet(self, ch: _Channel, seq: int) -> bytes:
        icmp_type = ICMP_ECHO_REQUEST if ch.family == socket.AF_INET else ICMP6_ECHO_REQUEST
        payload = (b"commune-monitor " * (self.payload_size // 16 + 1))[: self.payload_size]
        header = struct.pack("!BBHHH", icmp_type, 0, 0, ch.ident, seq)
        if ch.family == socket.AF_INET:
            header = struct.pack("!BBHHH", icmp_type, 0, checksum(header + payload), ch.ident, seq)
        return header + payload  # ICMPv6 checksums are filled in by the kernel

    async def echo(self, address: str, family: int, timeout: float, binding: Binding = Binding()) -> float | None:
        """Send one echo request; the RTT in seconds, or None when no reply came in time."""
        ch = self._channel(family, binding)
        seq = self._next_seq(ch)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        sent_ns = time.time_ns()
        ch.pending[seq] = _Pending(address, sent_ns, future)
        try:
            ch.sock.sendto(self._packet(ch, seq), (address, 0))
        except OSError as exc:
            ch.pending.pop(seq, None)
            if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL):
                return None  # counts as a lost echo, like ping's "Network is unreachable"
            raise ProbeError(f"send to {address} failed: {exc.strerror}") from None
        try:
            recv_ns = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return None
        finally:
            ch.pending.pop(seq, None)
        return max(recv_ns - sent_ns, 0) / 1e9

    async def ping(self, address: str, family: int, count: int, spacing: float, timeout: float,
                   binding: Binding = Binding()) -> list[float | None]:
        """``count`` echoes ``spacing`` seconds apart, each waiting up to ``timeout``: the RTTs."""
        tasks = []
        for i in range(count):
            if i:
                await asyncio.sleep(spacing)
            tasks.append(asyncio.ensure_future(self.echo(address, family, timeout, binding)))
        return list(await asyncio.gather(*tasks))


def _kernel_time_ns(ancdata: list[tuple[int, int, bytes]]) -> int:
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= 16:
            sec, nsec = struct.unpack("qq", payload[:16])
            return sec * 1_000_000_000 + nsec
    return time.time_ns()


def _strip_scope(address: str) -> str:
    return address.split("%", 1)[0]
