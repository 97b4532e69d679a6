"""Namespaces plus the link emulator, packaged as a context manager for tests.

``impaired_link()`` creates two fresh network namespaces (``cmtest-...``),
starts ``emulator.py`` to join them through a TUN device in each, addresses
the link (198.18.X.1/30 near, 198.18.X.2/30 far, plus fd00:198:18:X::/64),
and removes everything on exit, also when the body or the set-up fails.
Needs root and iproute2; call ``require_root_netns()`` first in tests.
"""

from __future__ import annotations

import json
import os
import random
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PREFIX = "cmtest-"
EMULATOR = Path(__file__).with_name("emulator.py")
NEAR_DEV = "emu0"
FAR_DEV = "emu1"
PING_GROUP_RANGE = "0 2147483647"
_NAME_RE = re.compile(rf"^{PREFIX}(\d+)-[0-9a-f]{{6}}-(?:[nf]|c\d+)$")

Number = float | int
PerDirection = Number | tuple[Number, Number]


class LinkError(RuntimeError):
    """Setting up or talking to the emulated link failed."""


# --------------------------------------------------------------------------
# Environment checks
# --------------------------------------------------------------------------


def missing_netns_prerequisites(*tools: str) -> list[str]:
    """What stops this process from building namespaced links (empty if nothing)."""
    problems = []
    if os.geteuid() != 0:
        problems.append("not running as root")
    for tool in ("ip", *tools):
        if shutil.which(tool) is None:
            problems.append(f"`{tool}` not found in PATH")
    if not os.path.exists("/dev/net/tun"):
        problems.append("/dev/net/tun is missing")
    return problems


def require_root_netns(*tools: str) -> None:
    """Skip the calling test without root/iproute2/TUN; fail instead when CI=true.

    On a developer laptop a skip is the honest answer; in CI a silent skip
    would hide that the network tests never ran, so there it is a failure.
    ``tools`` names extra commands the test needs (e.g. ``"ping"``).
    """
    import pytest  # only tests call this; keep the module importable without pytest

    from testsupport.peers._base import in_ci

    problems = missing_netns_prerequisites(*tools)
    if not problems:
        return
    message = "network-namespace tests need: " + "; ".join(problems)
    if in_ci():
        pytest.fail(f"{message} (CI=true, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(message)


# --------------------------------------------------------------------------
# Namespaces
# --------------------------------------------------------------------------


def ip(*args: str) -> None:
    """Run one ``ip`` command, raising LinkError with its stderr on failure."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if result.returncode != 0:
        raise LinkError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def netns_exec_argv(netns: str, argv: Sequence[str]) -> list[str]:
    """The argv that runs ``argv`` inside namespace ``netns``."""
    return ["ip", "netns", "exec", netns, *argv]


def list_namespaces() -> list[str]:
    """Names of all ``ip netns`` namespaces (ours and anyone else's)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def namespace_pair_names() -> tuple[str, str]:
    """Fresh, unique near/far names; our PID is embedded for stale clean-up."""
    tag = f"{PREFIX}{os.getpid()}-{random.getrandbits(24):06x}"
    return f"{tag}-n", f"{tag}-f"


def create_namespace(stack: ExitStack, name: str, ipv6: bool = True) -> None:
    """Create a namespace with ``lo`` up and unprivileged ICMP allowed.

    Deletion is registered on ``stack`` before anything else can fail.
    Without ``ipv6``, devices created later get no IPv6 at all, so no
    router solicitations or MLD reports cross (and get counted on) the link.
    """
    ip("netns", "add", name)
    stack.callback(delete_namespace, name)
    ip("-n", name, "link", "set", "lo", "up")
    settings = [f"net.ipv4.ping_group_range={PING_GROUP_RANGE}"]
    if not ipv6:
        settings.append("net.ipv6.conf.default.disable_ipv6=1")
    sysctl(name, settings)


def sysctl(netns: str, settings: list[str]) -> None:
    """Write ``key=value`` sysctls inside a namespace (net.* ones are per namespace)."""
    argv = netns_exec_argv(netns, ["sysctl", "-q", "-w", *settings])
    result = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    if result.returncode != 0:
        raise LinkError(f"sysctl in {netns}: {result.stderr.strip()}")


def delete_namespace(name: str) -> None:
    """Delete a namespace; a missing one is fine (idempotent teardown)."""
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def remove_stale_namespaces() -> list[str]:
    """Delete ``cmtest-<pid>-...`` namespaces whose creating process is dead.

    For after a test run was SIGKILLed; live runs' namespaces are left alone.
    """
    removed = []
    for name in list_namespaces():
        match = _NAME_RE.match(name)
        if match and not Path(f"/proc/{match.group(1)}").exists():
            delete_namespace(name)
            removed.append(name)
    return removed


# --------------------------------------------------------------------------
# Addresses
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkAddresses:
    """The point-to-point addressing of one link."""

    near_ip: str
    far_ip: str
    near_ip6: str
    far_ip6: str

    @classmethod
    def for_subnet(cls, index: int) -> LinkAddresses:
        """198.18.<index>.1/.2 and fd00:198:18:<index>::1/::2."""
        if not 0 <= index <= 255:
            raise ValueError("subnet index must be 0..255")
        return cls(
            f"198.18.{index}.1",
            f"198.18.{index}.2",
            f"fd00:198:18:{index:x}::1",
            f"fd00:198:18:{index:x}::2",
        )


def address_device(netns: str, dev: str, ip4: str, ip6: str | None) -> None:
    """Put the addresses on a TUN device and bring it up (routes come with /30, /64).

    ``nodad`` makes the IPv6 address usable at once instead of after DAD.
    """
    ip("-n", netns, "addr", "add", f"{ip4}/30", "dev", dev)
    if ip6:
        ip("-n", netns, "addr", "add", f"{ip6}/64", "dev", dev, "nodad")
    ip("-n", netns, "link", "set", dev, "up")


# --------------------------------------------------------------------------
# Emulator process
# --------------------------------------------------------------------------


def _pair_arg(value: PerDirection) -> str:
    """Render a per-direction value as the emulator's ``X`` or ``X,Y`` syntax."""
    if isinstance(value, tuple):
        return f"{float(value[0])!r},{float(value[1])!r}"
    return repr(float(value))


def emulator_argv(ns_near: str, ns_far: str, control: str, options: dict[str, Any]) -> list[str]:
    """Command line that starts the emulator between the two namespaces."""
    argv = [
        sys.executable,
        str(EMULATOR),
        "--near-netns",
        ns_near,
        "--far-netns",
        ns_far,
        "--near-dev",
        NEAR_DEV,
        "--far-dev",
        FAR_DEV,
        "--control",
        control,
        "--delay-ms",
        _pair_arg(options["delay_ms"]),
        "--jitter-ms",
        _pair_arg(options["jitter_ms"]),
        "--loss",
        _pair_arg(options["loss"]),
        "--distribution",
        options["distribution"],
        "--max-seconds",
        repr(float(options["max_seconds"])),
        "--die-with-parent",
    ]
    if options["reorder"]:
        argv.append("--reorder")
    if options["realtime"]:
        argv += ["--realtime", str(int(options["realtime"]))]
    if options["seed"] is not None:
        argv += ["--seed", str(int(options["seed"]))]
    return argv


def read_line(stream_fd: int, timeout: float) -> bytes:
    """Read one line from a pipe fd within ``timeout`` seconds ("" at EOF).

    Byte-wise ``os.read`` so nothing beyond the line is buffered and lost.
    Raises TimeoutError when the deadline passes first.
    """
    deadline = time.monotonic() + timeout
    line = bytearray()
    with selectors.DefaultSelector() as sel:
        sel.register(stream_fd, selectors.EVENT_READ)
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sel.select(remaining):
                raise TimeoutError(f"no complete line within {timeout} s (got {bytes(line)!r})")
            byte = os.read(stream_fd, 1)
            if not byte:
                break
            line += byte
    return bytes(line)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> int:
    """SIGTERM, wait a bounded time, then SIGKILL; return the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    return proc.returncode


def start_emulator(
    stack: ExitStack, argv: list[str], log_path: Path, ready_timeout: float
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Start the emulator and wait for its readiness line; stop it on unwind."""
    log_file = stack.enter_context(open(log_path, "wb"))
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log_file)
    stack.callback(stop_process, proc)
    assert proc.stdout is not None
    stack.callback(proc.stdout.close)
    try:
        line = read_line(proc.stdout.fileno(), ready_timeout)
        ready = json.loads(line) if line else {}
    except (TimeoutError, ValueError) as exc:
        raise LinkError(f"emulator not ready: {exc}; log:\n{log_tail(log_path)}") from exc
    if not ready.get("ready"):
        proc.wait(ready_timeout)
        raise LinkError(f"emulator exited with {proc.returncode}; log:\n{log_tail(log_path)}")
    return proc, ready


def log_tail(path: Path, lines: int = 20) -> str:
    """Last lines of the emulator's stderr, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --------------------------------------------------------------------------
# The link object
# --------------------------------------------------------------------------


@dataclass
class ImpairedLink:
    """A live emulated link between two namespaces; see ``impaired_link()``."""

    ns_near: str
    ns_far: str
    addresses: LinkAddresses
    control_path: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    ipv6: bool = True
    near_dev: str = NEAR_DEV
    far_dev: str = FAR_DEV
    exit_code: int | None = field(default=None, init=False)

    @property
    def near_ip(self) -> str:
        """IPv4 address of the near end (in ``ns_near``)."""
        return self.addresses.near_ip

    @property
    def far_ip(self) -> str:
        """IPv4 address of the far end (in ``ns_far``)."""
        return self.addresses.far_ip

    @property
    def near_ip6(self) -> str | None:
        """IPv6 ULA of the near end, if the link has IPv6."""
        return self.addresses.near_ip6 if self.ipv6 else None

    @property
    def far_ip6(self) -> str | None:
        """IPv6 ULA of the far end, if the link has IPv6."""
        return self.addresses.far_ip6 if self.ipv6 else None

    def request(self, message: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        """Send one JSON request to the emulator; raise LinkError unless ok."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(self.control_path)
            sock.sendall(json.dumps(message).encode() + b"\n")
            reply = _recv_line(sock)
        answer = json.loads(reply)
        if not answer.get("ok"):
            raise LinkError(f"emulator refused {message}: {answer.get('error')}")
        return answer

    def set(
        self,
        *,
        delay_ms: Number | None = None,
        jitter_ms: Number | None = None,
        loss: Number | None = None,
        distribution: str | None = None,
        reorder: bool | None = None,
        direction: str = "both",
    ) -> dict[str, Any]:
        """Change the impairment live; unset arguments keep their value.

        ``direction`` is ``"both"``, ``"near_to_far"`` or ``"far_to_near"``.
        Returns the new configuration of both directions.
        """
        changes = {
            "delay_ms": delay_ms,
            "jitter_ms": jitter_ms,
            "loss": loss,
            "distribution": distribution,
            "reorder": reorder,
        }
        message = {k: v for k, v in changes.items() if v is not None}
        return self.request({**message, "direction": direction})["config"]

    def stats(self, reset: bool = False) -> dict[str, Any]:
        """Counters per direction and scheduling lateness (optionally zeroing them)."""
        return self.request({"stats": True, "reset": reset})["stats"]

    def run_near(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """``subprocess.run`` inside the near namespace."""
        return subprocess.run(netns_exec_argv(self.ns_near, argv), **kwargs)

    def popen_near(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """``subprocess.Popen`` inside the near namespace (caller must reap it)."""
        return subprocess.Popen(netns_exec_argv(self.ns_near, argv), **kwargs)

    def run_far(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """``subprocess.run`` inside the far namespace."""
        return subprocess.run(netns_exec_argv(self.ns_far, argv), **kwargs)

    def popen_far(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """``subprocess.Popen`` inside the far namespace (caller must reap it)."""
        return subprocess.Popen(netns_exec_argv(self.ns_far, argv), **kwargs)


def _recv_line(sock: socket.socket, limit: int = 1 << 20) -> bytes:
    """Receive until newline (bounded by the socket timeout and ``limit``)."""
    data = bytearray()
    while not data.endswith(b"\n") and len(data) < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return bytes(data)


@contextmanager
def impaired_link(
    delay_ms: PerDirection = 0.0,
    jitter_ms: PerDirection = 0.0,
    loss: PerDirection = 0.0,
    seed: int | None = None,
    *,
    distribution: str = "uniform",
    reorder: bool = False,
    ipv6: bool = True,
    subnet: int | None = None,
    realtime: int = 10,
    max_seconds: float = 600.0,
    ready_timeout: float = 10.0,
) -> Iterator[ImpairedLink]:
    """Yield an emulated link between two new namespaces; tear it all down after.

    ``delay_ms``/``jitter_ms``/``loss`` apply to each direction (a pair sets
    near-to-far and far-to-near separately), so RTT ~= 2 * delay.  Teardown
    (SIGTERM the emulator, delete both namespaces, remove the temp dir)
    runs whatever happens in the body or during set-up.  ``max_seconds``
    bounds the emulator's life even if this process is killed.  ``realtime``
    is the emulator's SCHED_FIFO priority (0 = normal scheduling): without
    it, a CPU-bound neighbour adds milliseconds of scheduling error.
    """
    options = dict(
        delay_ms=delay_ms,
        jitter_ms=jitter_ms,
        loss=loss,
        seed=seed,
        distribution=distribution,
        reorder=reorder,
        realtime=realtime,
        max_seconds=max_seconds,
    )
    addresses = LinkAddresses.for_subnet(random.randrange(256) if subnet is None else subnet)
    ns_near, ns_far = namespace_pair_names()
    with ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix=PREFIX))
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        create_namespace(stack, ns_near, ipv6)
        create_namespace(stack, ns_far, ipv6)
        link = ImpairedLink(
            ns_near,
            ns_far,
            addresses,
            str(workdir / "control.sock"),
            workdir / "emulator.log",
            ipv6=ipv6,
        )
        argv = emulator_argv(ns_near, ns_far, link.control_path, options)
        # Registered before the emulator's own stop callback, so it runs after it.
        stack.callback(_record_exit, link)
        link.process, _ = start_emulator(stack, argv, link.log_path, ready_timeout)
        address_device(ns_near, NEAR_DEV, addresses.near_ip, addresses.near_ip6 if ipv6 else None)
        address_device(ns_far, FAR_DEV, addresses.far_ip, addresses.far_ip6 if ipv6 else None)
        yield link


def _record_exit(link: ImpairedLink) -> None:
    """Remember the emulator's exit status (0 means it stopped cleanly)."""
    if link.process is not None:
        link.exit_code = link.process.returncode
