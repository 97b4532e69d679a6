"""Userspace link emulator: delay, jitter and loss between two network namespaces.

Why this exists: the test kernel has no ``netem`` qdisc (and cannot load
modules), but ``/dev/net/tun`` works.  This program owns one TUN device in each
of two network namespaces ("near" and "far") and copies raw IP packets between
them, holding each packet for ``delay +/- jitter`` and dropping a ``loss``
fraction, independently for each direction.  With the same impairment both
ways (the default) a round trip costs about ``2 * delay``.

Design choices (documented because they differ from netem):

* Jitter distribution: ``uniform`` draws the one-way delay from
  ``U(delay - jitter, delay + jitter)`` (standard deviation ``jitter/sqrt(3)``);
  ``normal`` draws it from ``N(delay, jitter)`` (standard deviation ``jitter``).
  Negative draws are clamped to zero.
* Ordering: netem reorders packets whenever jitter exceeds the packet gap.  A
  real serial link (radio, DSL, a WAN circuit) does not, so by default each
  direction is FIFO: a packet never leaves before the one ahead of it (its
  departure is ``max(arrival + sampled delay, previous departure)``).  That
  holding skews the delay distribution upwards only when jitter is larger
  than the gap between packets.  ``--reorder`` gives netem's behaviour.
* Timing: a single-threaded loop over ``select()`` (microsecond timeouts,
  unlike epoll's millisecond ones) with a timer heap, the process timer
  slack cut from 50 us to 1 ns, and a short poll (``--spin-us``, default
  200 us of CPU per departure at most) before each departure to absorb the
  kernel's wake-up latency.  The lateness of every packet (actual minus due
  departure time) is recorded and reported by the ``stats`` request; see
  README.md for measured figures.
* Live changes apply to packets that arrive after the change; packets
  already in flight keep their departure time.

Control channel: a Unix stream socket taking one JSON object per line, one
JSON reply per line::

    {"delay_ms": 50, "jitter_ms": 5, "loss": 0.1}        -> {"ok": true, "config": {...}}
    {"delay_ms": 80, "direction": "far_to_near"}        -> change one way only
    {"distribution": "normal", "reorder": true}         -> other settable keys
    {"stats": true}  or  {"stats": true, "reset": true} -> {"ok": true, "stats": {...}, ...}

The program prints exactly one line to stdout, a JSON object with
``"ready": true``, once both TUN devices exist and the control socket
listens; everything else goes to stderr.  It exits with status 0 on SIGTERM
or SIGINT, and on its own after ``--max-seconds``.

Stdlib only; Linux only; needs CAP_NET_ADMIN and CAP_SYS_ADMIN (root).
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import heapq
import json
import math
import os
import random
import selectors
import signal
import socket
import struct
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

CLONE_NEWNET = 0x40000000
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
PR_SET_PDEATHSIG = 1
PR_SET_TIMERSLACK = 29

DIRECTIONS = ("near_to_far", "far_to_near")
DISTRIBUTIONS = ("uniform", "normal")
MAX_PACKET = 65535
READ_BURST = 256  # packets read per wake-up, so timers are never starved
LATENESS_SAMPLES = 20000
MAX_CONTROL_LINE = 65536

_libc = ctypes.CDLL(None, use_errno=True)


def log(message: str) -> None:
    """Write one diagnostic line to stderr (stdout is reserved for readiness)."""
    print(f"linkemu[{os.getpid()}]: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Impairment model
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Impairment:
    """What one direction of the link does to each packet."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    distribution: str = "uniform"
    reorder: bool = False

    def __post_init__(self) -> None:
        """Reject values that would make the emulator misbehave silently."""
        for name in ("delay_ms", "jitter_ms", "loss"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be finite and >= 0")
        if self.loss > 1:
            raise ValueError("loss must be within [0, 1]")
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {DISTRIBUTIONS}")
        if not isinstance(self.reorder, bool):
            raise ValueError("reorder must be true or false")

    def sample_delay(self, rng: random.Random) -> float:
        """Draw one one-way delay, in seconds, never negative."""
        jitter = self.jitter_ms
        if jitter == 0:
            delay = self.delay_ms
        elif self.distribution == "uniform":
            delay = self.delay_ms + rng.uniform(-jitter, jitter)
        else:
            delay = rng.gauss(self.delay_ms, jitter)
        return max(delay, 0.0) / 1000.0


SETTABLE = tuple(f.name for f in fields(Impairment))


@dataclass
class Counters:
    """Per-direction packet counters reported by the stats request."""

    received: int = 0
    forwarded: int = 0
    dropped_loss: int = 0
    dropped_overflow: int = 0
    write_errors: int = 0
    held_for_order: int = 0


@dataclass
class Direction:
    """One way of the link: its impairment, RNG, FIFO state and counters."""

    name: str
    src_fd: int
    dst_fd: int
    impairment: Impairment
    rng: random.Random
    limit: int
    counters: Counters = field(default_factory=Counters)
    queued: int = 0
    last_due: float = 0.0

    def admit(self, now: float) -> float | None:
        """Decide a packet's fate: ``None`` to drop it, else its departure time."""
        self.counters.received += 1
        imp = self.impairment
        if imp.loss and self.rng.random() < imp.loss:
            self.counters.dropped_loss += 1
            return None
        if self.queued >= self.limit:
            self.counters.dropped_overflow += 1
            return None
        due = now + imp.sample_delay(self.rng)
        if not imp.reorder and due < self.last_due:
            due = self.last_due
            self.counters.held_for_order += 1
        self.last_due = max(self.last_due, due)
        self.queued += 1
        return due


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = min(len(sorted_values) - 1, max(0, math.ceil(fraction * len(sorted_values)) - 1))
    return sorted_values[rank]


def lateness_summary(samples: deque[float]) -> dict[str, float | int]:
    """Summarise how late (microseconds) packets left compared with their due time."""
    values = sorted(samples)
    count = len(values)
    return {
        "count": count,
        "mean_us": round(sum(values) / count, 1) if count else 0.0,
        "p50_us": round(percentile(values, 0.50), 1),
        "p99_us": round(percentile(values, 0.99), 1),
        "max_us": round(values[-1], 1) if count else 0.0,
    }


# --------------------------------------------------------------------------
# Kernel plumbing: namespaces and TUN devices
# --------------------------------------------------------------------------


def setns(fd: int) -> None:
    """Move this (single-threaded) process into the network namespace behind fd.

    ``os.setns`` only exists from Python 3.12, hence ctypes.
    """
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def prctl(option: int, value: int) -> None:
    """Call prctl(2); failures are logged, not fatal (they only cost accuracy)."""
    if _libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0) != 0:
        log(f"prctl({option}, {value}) failed: {os.strerror(ctypes.get_errno())}")


def make_realtime(priority: int) -> None:
    """Ask for SCHED_FIFO so busy neighbours cannot delay departures by whole time slices.

    Best effort (containers often forbid it).  The kernel's RT throttling
    (95 % by default) still bounds the damage of a runaway loop.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except OSError as exc:
        log(f"SCHED_FIFO {priority} refused ({exc}); timing will suffer under CPU load")


def netns_path(netns: str) -> str:
    """Accept either an ``ip netns`` name or a path to a namespace file."""
    return netns if "/" in netns else f"/run/netns/{netns}"


def open_tun(ifname: str) -> int:
    """Create TUN device ``ifname`` in the current namespace; return its fd.

    The device is not persistent: it disappears when the fd is closed, so a
    crashed emulator cannot leave devices behind.
    """
    if not 0 < len(ifname.encode()) < 16:
        raise ValueError(f"bad interface name {ifname!r}")
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", ifname.encode(), IFF_TUN | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


def open_tun_in_netns(netns: str, ifname: str) -> int:
    """Create a TUN device inside another namespace, then come back.

    A TUN device lives in the namespace of the process that opened
    ``/dev/net/tun``, so we must enter the target namespace before opening.
    """
    home = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(netns_path(netns), os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(target)
        try:
            return open_tun(ifname)
        finally:
            setns(home)
    finally:
        os.close(target)
        os.close(home)


def listen_control(path: str) -> socket.socket:
    """Listen on a fresh Unix stream socket at ``path`` (replacing a stale one)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    os.chmod(path, 0o600)
    sock.listen(8)
    sock.setblocking(False)
    return sock


# --------------------------------------------------------------------------
# The event loop
# --------------------------------------------------------------------------


class LinkEmulator:
    """Forward packets between two TUN fds with impairment, on one thread.

    All state lives here; the loop is ``select()`` plus a heap of
    ``(due, seq, direction, packet)`` entries, ``seq`` keeping equal due
    times in arrival order.
    """

    def __init__(
        self,
        near_fd: int,
        far_fd: int,
        impairments: dict[str, Impairment],
        seed: int | None = None,
        limit: int = 10000,
        spin_us: float = 0.0,
    ) -> None:
        ends = {"near_to_far": (near_fd, far_fd), "far_to_near": (far_fd, near_fd)}
        self.directions = {
            name: Direction(name, src, dst, impairments[name], make_rng(seed, name), limit)
            for name, (src, dst) in ends.items()
        }
        self.seed = seed
        self.spin = spin_us / 1e6
        self.heap: list[tuple[float, int, Direction, bytes]] = []
        self.seq = 0
        self.lateness: deque[float] = deque(maxlen=LATENESS_SAMPLES)
        self.started = time.monotonic()
        self.selector = selectors.SelectSelector()  # sub-ms timeouts, see module doc
        self.stopping: str | None = None
        self.clients: dict[socket.socket, bytearray] = {}

    # ---- packets -------------------------------------------------------

    def on_tun_readable(self, direction: Direction) -> None:
        """Read a burst of packets from one TUN device and schedule them."""
        for _ in range(READ_BURST):
            try:
                packet = os.read(direction.src_fd, MAX_PACKET)
            except BlockingIOError:
                return
            due = direction.admit(time.monotonic())
            if due is not None:
                self.seq += 1
                heapq.heappush(self.heap, (due, self.seq, direction, packet))

    def flush_due(self) -> None:
        """Send every packet whose time has come, recording its lateness."""
        while self.heap:
            now = time.monotonic()
            due, _, direction, packet = self.heap[0]
            if due > now:
                return
            heapq.heappop(self.heap)
            direction.queued -= 1
            self.lateness.append((now - due) * 1e6)
            try:
                os.write(direction.dst_fd, packet)
                direction.counters.forwarded += 1
            except OSError:  # device down (EIO) or a kernel refusal: a lost packet
                direction.counters.write_errors += 1

    def next_timeout(self, deadline: float) -> float:
        """Seconds to sleep: until ``spin`` before the next departure, or the deadline.

        Waking a little early and polling the rest of the way absorbs the
        kernel's wake-up latency (50-100 us on this kind of VM).
        """
        if self.heap and self.heap[0][0] - self.spin < deadline:
            until = self.heap[0][0] - self.spin
        else:
            until = deadline
        return max(0.0, until - time.monotonic())

    # ---- control channel ----------------------------------------------

    def on_control_accept(self, server: socket.socket) -> None:
        """Accept a control client; it may send any number of JSON lines."""
        try:
            client, _ = server.accept()
        except BlockingIOError:
            return
        client.setblocking(False)
        self.clients[client] = bytearray()
        self.selector.register(client, selectors.EVENT_READ, lambda: self.on_control_data(client))

    def on_control_data(self, client: socket.socket) -> None:
        """Buffer a client's bytes and answer each complete line."""
        try:
            chunk = client.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        buffer = self.clients[client]
        buffer.extend(chunk if chunk else b"\n")  # at EOF, answer an unterminated last line
        try:
            self.answer_lines(client, buffer)
        except OSError:  # client went away, or stopped reading its replies
            chunk = b""
        if not chunk or len(buffer) > MAX_CONTROL_LINE:
            self.close_client(client)

    def answer_lines(self, client: socket.socket, buffer: bytearray) -> None:
        """Reply to, and consume, every complete line in ``buffer``."""
        while (end := buffer.find(b"\n")) >= 0:
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            if line.strip():
                client.sendall(json.dumps(self.handle_line(line)).encode() + b"\n")

    def close_client(self, client: socket.socket) -> None:
        """Forget a control client."""
        self.selector.unregister(client)
        del self.clients[client]
        client.close()

    def handle_line(self, line: bytes) -> dict[str, Any]:
        """Parse one control line and turn any error into an ``ok: false`` reply."""
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("request must be a JSON object")
            return self.handle_request(request)
        except (ValueError, TypeError) as exc:
            return {"ok": False, "error": str(exc)}

    def handle_request(self, request: dict[str, Any]) -> dict[str, Any]:
        """Apply a configuration change and/or report stats."""
        request = dict(request)
        want_stats = request.pop("stats", False)
        reset = request.pop("reset", False)
        direction = request.pop("direction", "both")
        unknown = set(request) - set(SETTABLE)
        if unknown:
            raise ValueError(f"unknown keys: {sorted(unknown)}")
        if request:
            self.reconfigure(direction, request)
        reply: dict[str, Any] = {"ok": True, "config": self.config()}
        if want_stats:
            reply["stats"] = self.stats()
        if reset:
            self.reset_stats()
        return reply

    def reconfigure(self, direction: str, changes: dict[str, Any]) -> None:
        """Change impairment for one or both directions, all-or-nothing."""
        names = DIRECTIONS if direction == "both" else (direction,)
        if not set(names) <= set(DIRECTIONS):
            raise ValueError(f"direction must be 'both' or one of {DIRECTIONS}")
        updated = {name: replace(self.directions[name].impairment, **changes) for name in names}
        for name, impairment in updated.items():
            self.directions[name].impairment = impairment
        log(f"reconfigured {direction}: {changes}")

    def config(self) -> dict[str, Any]:
        """Current impairment per direction."""
        return {name: asdict(d.impairment) for name, d in self.directions.items()}

    def stats(self) -> dict[str, Any]:
        """Counters per direction, queue depth and scheduling lateness."""
        per_direction = {
            name: {**asdict(d.counters), "queued": d.queued} for name, d in self.directions.items()
        }
        return {
            **per_direction,
            "lateness": lateness_summary(self.lateness),
            "uptime_s": round(time.monotonic() - self.started, 3),
            "seed": self.seed,
        }

    def reset_stats(self) -> None:
        """Zero counters and lateness samples (queue depths are state, kept)."""
        for d in self.directions.values():
            d.counters = Counters()
        self.lateness.clear()

    # ---- main loop -----------------------------------------------------

    def run(self, control: socket.socket, wakeup_fd: int, max_seconds: float) -> str:
        """Run until a signal, or ``max_seconds``; return why it stopped."""
        register: Callable[..., Any] = self.selector.register
        for d in self.directions.values():
            register(d.src_fd, selectors.EVENT_READ, lambda d=d: self.on_tun_readable(d))
        register(control, selectors.EVENT_READ, lambda: self.on_control_accept(control))
        register(wakeup_fd, selectors.EVENT_READ, lambda: self.on_signal(wakeup_fd))
        deadline = self.started + max_seconds
        while self.stopping is None:
            if time.monotonic() >= deadline:
                self.stopping = f"max-seconds ({max_seconds:g}) reached"
                break
            for key, _ in self.selector.select(self.next_timeout(deadline)):
                key.data()
            self.flush_due()
        return self.stopping

    def on_signal(self, wakeup_fd: int) -> None:
        """A signal arrived through the wakeup fd: stop the loop."""
        numbers = sorted(set(os.read(wakeup_fd, 64)))
        self.stopping = "signal " + ",".join(signal_name(n) for n in numbers)

    def close(self) -> None:
        """Close every descriptor; the TUN devices vanish with their fds."""
        for client in list(self.clients):
            self.close_client(client)
        self.selector.close()
        for d in self.directions.values():
            os.close(d.src_fd)


def signal_name(number: int) -> str:
    """Readable name for a signal number, for the stop log line."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def make_rng(seed: int | None, direction: str) -> random.Random:
    """One RNG per direction, so each direction's draws depend only on its own packets."""
    return random.Random(None if seed is None else f"{seed}:{direction}")


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def pair(text: str) -> tuple[float, float]:
    """Parse ``X`` (both directions) or ``X,Y`` (near-to-far, far-to-near)."""
    parts = [float(p) for p in text.split(",")]
    if len(parts) == 1:
        return parts[0], parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise argparse.ArgumentTypeError("expected X or X,Y")


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface; see the module docstring for the protocol."""
    parser = argparse.ArgumentParser(
        prog="python -m testsupport.linkemu.emulator",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Values given as X,Y set near-to-far and far-to-near separately.",
    )
    add = parser.add_argument
    add("--near-netns", required=True, help="ip-netns name or path of the near namespace")
    add("--far-netns", required=True, help="ip-netns name or path of the far namespace")
    add("--near-dev", default="emu0", help="TUN device name in the near namespace")
    add("--far-dev", default="emu1", help="TUN device name in the far namespace")
    add("--control", required=True, help="path of the Unix control socket to create")
    add("--delay-ms", type=pair, default=(0.0, 0.0), help="one-way delay (ms)")
    add("--jitter-ms", type=pair, default=(0.0, 0.0), help="jitter around the delay (ms)")
    add("--loss", type=pair, default=(0.0, 0.0), help="drop ratio in [0, 1]")
    add(
        "--distribution",
        choices=DISTRIBUTIONS,
        default="uniform",
        help="jitter law: uniform +/-jitter, or normal with sd=jitter",
    )
    add(
        "--reorder",
        action="store_true",
        help="let jitter reorder packets like netem (default: FIFO per direction)",
    )
    add("--seed", type=int, default=None, help="seed the loss/jitter RNGs")
    add("--limit", type=int, default=10000, help="max packets queued per direction")
    add(
        "--spin-us",
        type=float,
        default=200.0,
        help="wake this early and poll until a departure (default 200; 0 = never spin)",
    )
    add(
        "--realtime",
        type=int,
        default=0,
        metavar="PRIORITY",
        help="run SCHED_FIFO at this priority (1-99; default 0 = normal scheduling)",
    )
    add(
        "--max-seconds",
        type=float,
        default=3600.0,
        help="exit on its own after this long (default 3600)",
    )
    add(
        "--die-with-parent", action="store_true", help="exit (SIGTERM) when the parent process dies"
    )
    return parser


def impairments_from_args(args: argparse.Namespace) -> dict[str, Impairment]:
    """Build the two directions' impairments from parsed arguments."""
    return {
        name: Impairment(
            delay_ms=args.delay_ms[i],
            jitter_ms=args.jitter_ms[i],
            loss=args.loss[i],
            distribution=args.distribution,
            reorder=args.reorder,
        )
        for i, name in enumerate(DIRECTIONS)
    }


def signal_pipe() -> int:
    """Route SIGTERM/SIGINT to a pipe the loop selects on; return its read end.

    A plain handler would not wake ``select()``: Python retries the call.
    """
    read_fd, write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    return read_fd


def main(argv: list[str] | None = None) -> int:
    """Set up devices and control socket, announce readiness, run, clean up."""
    args = build_parser().parse_args(argv)
    try:
        impairments = impairments_from_args(args)
    except ValueError as exc:
        build_parser().error(str(exc))
    if args.die_with_parent:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    prctl(PR_SET_TIMERSLACK, 1)  # hrtimer slack 50 us -> 1 ns: the accuracy budget
    if args.realtime:
        make_realtime(args.realtime)
    wakeup_fd = signal_pipe()
    if args.die_with_parent and os.getppid() == 1:
        return 0  # parent already gone before the death signal was armed
    near_fd = open_tun_in_netns(args.near_netns, args.near_dev)
    far_fd = open_tun_in_netns(args.far_netns, args.far_dev)
    emulator = LinkEmulator(
        near_fd, far_fd, impairments, seed=args.seed, limit=args.limit, spin_us=args.spin_us
    )
    control = listen_control(args.control)
    try:
        ready = {
            "ready": True,
            "pid": os.getpid(),
            "control": args.control,
            "near_dev": args.near_dev,
            "far_dev": args.far_dev,
            "config": emulator.config(),
        }
        print(json.dumps(ready), flush=True)
        reason = emulator.run(control, wakeup_fd, args.max_seconds)
        log(f"stopping: {reason}; final stats {json.dumps(emulator.stats())}")
    finally:
        emulator.close()
        control.close()
        try:
            os.unlink(args.control)
        except FileNotFoundError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
