"""Common machinery for real peer processes bound to loopback in tests.

Every peer (snmpd, snmpsim, NUT, Prometheus, ...) follows the same life cycle:
pick free loopback ports, write its configuration into a private temp dir,
start one or more processes whose stdout/stderr go to a log file in that dir,
poll a *real* readiness condition within a bounded deadline, and finally stop
the processes by PID (SIGTERM, then SIGKILL).  Keeping this in one place makes
the individual peers short and makes failures look the same everywhere: a
:class:`PeerStartError` that carries the tail of the peer's log.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar

import pytest

LOOPBACK = "127.0.0.1"
T = TypeVar("T")


class PeerError(RuntimeError):
    """A peer could not be prepared, started, queried or stopped."""


class PeerStartError(PeerError):
    """A peer did not become ready; the message includes its log tail."""


class PeerTimeout(PeerError):
    """A polled condition did not hold before its deadline."""


# --------------------------------------------------------------------------
# environment helpers


def in_ci() -> bool:
    """True when running under CI, where a missing component must fail, not skip."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def require_root(why: str) -> None:
    """Skip when not root, but fail under CI=true: CI runs as root, so anything else is a broken setup."""
    if os.geteuid() == 0:
        return
    if in_ci():
        pytest.fail(f"{why}; CI must run as root", pytrace=False)
    pytest.skip(why)


def require_binary(name_or_path: str) -> str:
    """Return the absolute path of an executable, or skip (fail under CI=true).

    Locally a missing peer is a reason to skip the tests that need it; under CI
    it means the install step is broken, which must be a red build rather than
    a silently green one.
    """
    found = _find_executable(name_or_path)
    if found:
        return found
    message = (
        f"required executable {name_or_path!r} not found; "
        "run scripts/install-test-deps.sh (as root) to install the test peers"
    )
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
    raise AssertionError("unreachable")  # pytest.skip raises; keeps type checkers calm


def _find_executable(name_or_path: str) -> str | None:
    """Resolve a bare name on PATH (plus sbin dirs) or check an explicit path."""
    if os.sep in name_or_path:
        path = Path(name_or_path)
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
    return shutil.which(name_or_path, path=search)


def random_secret(prefix: str = "", nbytes: int = 8) -> str:
    """A per-run secret (community, password) so runs never share credentials."""
    return f"{prefix}{secrets.token_hex(nbytes)}"


# --------------------------------------------------------------------------
# ports


def free_tcp_port(host: str = LOOPBACK) -> int:
    """Ask the kernel for a currently free TCP port on ``host``.

    There is an unavoidable window between closing this socket and the peer
    binding the port; :meth:`Peer.start` retries with fresh ports when a peer
    dies during start-up, which covers the rare collision.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_udp_port(host: str = LOOPBACK) -> int:
    """Ask the kernel for a currently free UDP port on ``host`` (see free_tcp_port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def tcp_port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """True when nothing listens on ``host:port`` any more (used to prove a stop)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def udp_port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """True when no socket is bound to UDP ``host:port`` any more."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _proc_net_sockets(kind: str) -> Iterator[tuple[str, int, str]]:
    """(ip, port, state hex) of every IPv4 socket in /proc/net/{tcp,udp}."""
    with open(f"/proc/net/{kind}") as handle:
        next(handle)  # header
        for line in handle:
            fields = line.split()
            address, port_hex = fields[1].split(":")
            ip = socket.inet_ntoa(bytes.fromhex(address)[::-1])
            yield ip, int(port_hex, 16), fields[3]


def udp_port_bound(port: int, host: str = LOOPBACK) -> bool:
    """True once some process has bound UDP ``host:port``.

    Read from /proc so the check cannot race with the peer's own bind (a
    test bind could steal the port).  Used as a start-up stage: a datagram
    sent before the bind is silently lost, which would cost a full timeout.
    """
    return any(p == port and ip in (host, "0.0.0.0") for ip, p, _ in _proc_net_sockets("udp"))


def tcp_port_listening(port: int, host: str = LOOPBACK) -> bool:
    """True once some process listens on TCP ``host:port`` (state 0A)."""
    return any(
        p == port and ip in (host, "0.0.0.0") and state == "0A"
        for ip, p, state in _proc_net_sockets("tcp")
    )


# --------------------------------------------------------------------------
# polling


def wait_until(
    condition: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.1,
    what: str = "condition",
    abort: Callable[[], str | None] | None = None,
) -> T:
    """Poll ``condition`` until it returns a truthy value, within ``timeout`` s.

    This is the only way the harness waits: a real condition polled at a short
    interval under a hard deadline.  ``abort`` is checked on every round and
    lets callers stop early (e.g. "the process exited") with a clear reason.
    Exceptions from ``condition`` count as "not yet"; the last one is reported.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = condition()
        except Exception as exc:  # any failure means "not ready yet"
            last_error = exc
            result = None
        if result:
            return result
        if abort is not None:
            reason = abort()
            if reason:
                raise PeerTimeout(f"gave up waiting for {what}: {reason}")
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise PeerTimeout(f"timed out after {timeout:.1f}s waiting for {what}{detail}")
        time.sleep(interval)


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET ``url`` and return (status, body); HTTP errors are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def http_post(
    url: str, body: bytes = b"", content_type: str = "application/json", timeout: float = 10.0
) -> tuple[int, bytes]:
    """POST ``body`` to ``url`` and return (status, body); HTTP errors are returned."""
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """Readiness probe for HTTP peers: True on a 200, False on anything else."""
    try:
        status, _ = http_get(url, timeout=timeout)
    except OSError:
        return False
    return status == 200


def run_tool(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 10.0,
    check: bool = True,
    user: str | None = None,
    cwd: str | Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a short-lived client tool (snmpget, upsc, psql, ...) and capture output.

    A hang past ``timeout`` becomes a PeerError, so during start-up it is
    reported like any other readiness failure (with the peer's log tail).
    """
    try:
        result = subprocess.run(  # argv comes from the harness itself
            list(argv),
            env=_merged_env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            user=user,
            cwd=cwd,
        )
    except subprocess.TimeoutExpired as exc:
        raise PeerError(f"{' '.join(argv)} did not finish within {timeout:g}s") from exc
    if check and result.returncode != 0:
        raise PeerError(
            f"{' '.join(argv)} exited {result.returncode}: "
            f"{(result.stderr or result.stdout).strip()[-2000:]}"
        )
    return result


def _merged_env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    if extra:
        env.update(extra)
    return env


def tail(path: Path, lines: int = 40) -> str:
    """Last ``lines`` lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def write_private(path: Path, text: str, mode: int = 0o600) -> Path:
    """Write a config file readable only by its owner (NUT and secrets need it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


# --------------------------------------------------------------------------
# processes


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Child-side hook: get SIGTERM if the test runner dies (even by SIGKILL).

    Without this, a crashed or killed pytest leaves daemons bound to loopback
    ports.  Linux-only; silently ignored elsewhere.
    """
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class ManagedProcess:
    """One long-running peer process with its output captured to a log file."""

    def __init__(
        self,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
    ) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self._env = env
        self._cwd = cwd
        self._user = user
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """PID of the started process (None before start)."""
        return self._popen.pid if self._popen else None

    def start(self) -> None:
        """Spawn the process; stdout and stderr are appended to ``log_path``."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"$ {' '.join(self.argv)}\n".encode())
            log.flush()
            self._popen = subprocess.Popen(  # argv built by the harness
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_merged_env(self._env),
                cwd=self._cwd,
                user=self._user,
                preexec_fn=_die_with_parent,  # only prctl, no locks
            )

    def exit_code(self) -> int | None:
        """Exit status if the process has ended, else None (reaps zombies)."""
        return self._popen.poll() if self._popen else None

    def is_running(self) -> bool:
        """True while the process exists and has not exited."""
        return self._popen is not None and self._popen.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop by PID: SIGTERM, wait up to ``timeout`` s, then SIGKILL."""
        if self._popen is None or self._popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._popen.pid, signal.SIGTERM)
        try:
            self._popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._popen.pid, signal.SIGKILL)
            self._popen.wait(timeout=timeout)

    def describe(self) -> str:
        """Short one-liner for error messages."""
        return f"{Path(self.argv[0]).name} (pid {self.pid}, exit {self.exit_code()})"


# --------------------------------------------------------------------------
# the peer life cycle


_LIVE_PEERS: weakref.WeakSet[Peer] = weakref.WeakSet()


@atexit.register
def _stop_leftover_peers() -> None:
    """Last resort when a test forgot to stop a peer: never leave daemons behind."""
    for peer in list(_LIVE_PEERS):
        with contextlib.suppress(Exception):
            peer.stop()


class Peer:
    """Base class: temp dir, processes, readiness polling, stop, context manager.

    Subclasses implement :meth:`_prepare` (choose ports, write configs) and
    :meth:`_launch` (start processes via :meth:`_spawn` and wait for each
    stage), plus :meth:`_is_ready` for the final readiness condition.
    """

    #: short name used in temp dir names and messages
    name = "peer"
    #: seconds to wait for readiness; subclasses raise it for slow starters
    ready_timeout = 30.0
    #: attempts with fresh ports when the process dies during start-up
    start_attempts = 3

    def __init__(self, *, keep_dir: bool | None = None, base_dir: Path | None = None) -> None:
        self.host = LOOPBACK
        self.dir = Path(tempfile.mkdtemp(prefix=f"peer-{self.name}-", dir=base_dir))
        self.keep_dir = (
            keep_dir if keep_dir is not None else bool(os.environ.get("PEERS_KEEP_DIRS"))
        )
        self._procs: list[ManagedProcess] = []
        self._started = False

    # -- subclass hooks ------------------------------------------------------

    def _check_requirements(self) -> None:
        """Call require_binary() for every executable the peer needs."""

    def _prepare(self) -> None:
        """Pick ports and write configuration; called before every attempt."""

    def _launch(self) -> None:
        """Start the processes (via _spawn) and wait for intermediate stages."""
        raise NotImplementedError

    def _is_ready(self) -> bool:
        """The real readiness condition (a query that answers)."""
        raise NotImplementedError

    def _after_ready(self) -> None:
        """Post-start setup that needs a running peer (e.g. create a database)."""

    def _shutdown(self) -> None:
        """Peer-specific graceful stop before the generic SIGTERM/SIGKILL."""

    # -- life cycle ----------------------------------------------------------

    @property
    def log_path(self) -> Path:
        """Main log file of the peer (the first process's log)."""
        return self.dir / f"{self.name}.log"

    def start(self) -> Self:
        """Start the peer and return once it answers a real query."""
        if self._started:
            return self
        self._check_requirements()
        last_error: PeerError | None = None
        for attempt in range(1, self.start_attempts + 1):
            try:
                self._start_once()
            except PeerStartError as exc:
                last_error = exc
                died = any(p.exit_code() is not None for p in self._procs)
                self._stop_processes()
                if not died or attempt == self.start_attempts:
                    break
                self._rotate_logs(attempt)
                continue
            except BaseException:
                # skip/fail from require_binary, a hung client tool, Ctrl-C...:
                # never leave a half-started daemon behind
                self._stop_processes()
                self._cleanup_dir()
                raise
            self._started = True
            _LIVE_PEERS.add(self)
            return self
        self._cleanup_dir()
        assert last_error is not None
        raise last_error

    def _start_once(self) -> None:
        self._procs = []
        self._prepare()
        try:
            self._launch()
            self.wait_ready(self._is_ready, what=f"{self.name} to answer")
            self._after_ready()
        except PeerStartError:
            raise
        except PeerError as exc:  # includes PeerTimeout
            raise PeerStartError(self._failure_report(str(exc))) from exc

    def _spawn(
        self,
        argv: Sequence[str],
        *,
        log_name: str | None = None,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
    ) -> ManagedProcess:
        """Start one process of this peer with output to a log in the temp dir."""
        log_path = self.dir / log_name if log_name else self.log_path
        proc = ManagedProcess(argv, log_path, env=env, cwd=self.dir, user=user)
        proc.start()
        self._procs.append(proc)
        return proc

    def wait_ready(
        self, condition: Callable[[], Any], *, what: str, timeout: float | None = None
    ) -> Any:
        """Poll ``condition`` but give up at once if one of our processes exits."""
        return wait_until(
            condition,
            timeout=self.ready_timeout if timeout is None else timeout,
            interval=0.1,
            what=what,
            abort=self._dead_process_reason,
        )

    def _dead_process_reason(self) -> str | None:
        for proc in self._procs:
            if proc.exit_code() is not None:
                return f"{proc.describe()} exited during start-up"
        return None

    def _failure_report(self, reason: str) -> str:
        parts = [
            f"{self.name} did not become ready: {reason}",
            f"temp dir: {self.dir} (removed unless PEERS_KEEP_DIRS=1)",
        ]
        logs = sorted({p.log_path for p in self._procs} | set(self._extra_logs()))
        for log in logs:
            if log.exists():
                parts.append(f"--- last lines of {log.name} ---\n{tail(log)}")
        return "\n".join(parts)

    def _extra_logs(self) -> list[Path]:
        """Additional log files worth showing on failure (peer-specific)."""
        return []

    def _rotate_logs(self, attempt: int) -> None:
        for log in {p.log_path for p in self._procs}:
            if log.exists():
                log.rename(log.with_suffix(f".attempt{attempt}.log"))

    def stop(self) -> None:
        """Stop all processes (peer-specific first, then by PID) and clean up."""
        try:
            if self._started:
                with contextlib.suppress(Exception):
                    self._shutdown()
            self._stop_processes()
        finally:
            self._started = False
            _LIVE_PEERS.discard(self)
            self._cleanup_dir()

    def _stop_processes(self) -> None:
        for proc in reversed(self._procs):
            proc.stop()

    def _cleanup_dir(self) -> None:
        """Remove the temp dir; PEERS_KEEP_DIRS=1 (or keep_dir=True) keeps it.

        A failed start already carries its log tail in the exception, so the
        dir is not kept by default: tests that provoke failures would
        otherwise litter /tmp.
        """
        if not self.keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def pids(self) -> list[int]:
        """PIDs of this peer's processes (for tests and debugging)."""
        return [p.pid for p in self._procs if p.pid is not None]

    @property
    def running(self) -> bool:
        """True when started and every process is still alive."""
        return self._started and all(p.is_running() for p in self._procs)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


PeerT = TypeVar("PeerT", bound=Peer)


def peer_fixture(
    factory: Callable[[], PeerT], *, scope: str = "session", name: str | None = None
) -> Callable[..., Iterator[PeerT]]:
    """Build a pytest fixture that starts ``factory()`` and stops it on teardown.

    The per-peer ``*_fixture`` functions use this so that any conftest can get
    its own instance with its own scope/config, e.g.
    ``snmpd_v2 = snmpd_fixture(scope="module", name="snmpd_v2", community="x")``.
    """

    def _fixture() -> Iterator[PeerT]:
        peer = factory()
        peer.start()
        try:
            yield peer
        finally:
            peer.stop()

    _fixture.__doc__ = f"Real peer from {getattr(factory, '__name__', factory)!s}."
    return pytest.fixture(scope=scope, name=name)(_fixture)  # type: ignore[call-overload]
