#!/usr/bin/env python3
"""What a hostile request costs the collector: one huge header, and a thousand idle half-requests.

Starts a real collector on loopback (SQLite, judge off) and, while a probe
client asks GET /healthz every 20 ms, sends one request whose single header
is --header-mib MiB, sent without any token. Printed: how long until the
answer (431 with the limits), the server's CPU seconds and peak RSS growth
(VmHWM) meanwhile, and the probe's slowest answer (what every other client
waited). Then --idle connections each send half a request and wait: printed
is whether the probe is still answered, and how long until the server has
closed them (``http.header_timeout``, set to --timeout here).

``--unguarded`` runs the same server with uvicorn's plain httptools protocol,
as the collector ran before ``commune_collector.httpguard``: the "before".

    .venv/bin/python benchmarks/hostile_requests.py [--header-mib 64] [--idle 1000] [--unguarded]
"""

from __future__ import annotations

import argparse
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

SERVE = """
import sys, uvicorn
from commune_collector.runtime.app import create_app
from commune_collector.cli import uvicorn_config
from commune_collector.settings import load_settings
settings = load_settings(sys.argv[1])
config = uvicorn_config(create_app(settings), settings)
if sys.argv[2] == "unguarded":
    config.http = "httptools"  # uvicorn's own protocol, no limits: the collector before httpguard
uvicorn.Server(config).run()
"""


class Probe(threading.Thread):
    """GET /healthz every 20 ms on its own connection; remembers the slowest answer."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url = url
        self.slowest = 0.0
        self.failures = 0
        self.answered = 0
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=60) as client:
            while not self.stop.is_set():
                started = time.perf_counter()
                try:
                    ok = client.get(self.url).status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.slowest = max(self.slowest, time.perf_counter() - started)
                self.answered += ok
                self.failures += not ok
                self.stop.wait(0.02)


def peak_rss_mib(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", text).group(1)) / 1024  # type: ignore[union-attr]


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def big_header(port: int, mib: int) -> tuple[bytes, float, int]:
    """Send a ``mib`` MiB header; (the first bytes of the answer, seconds to it, bytes sent)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=120)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
    chunk, sent, answer, total, finished = b"a" * 65536, 0, b"", mib * 2**20, False
    started = time.perf_counter()
    sock.setblocking(False)
    while not answer and time.perf_counter() - started < 300:
        if not finished:
            try:
                sent += sock.send(chunk)
            except BlockingIOError:
                pass
            except (BrokenPipeError, ConnectionResetError):
                finished = True
            if sent >= total:
                sock.setblocking(True)
                sock.sendall(b"\r\n\r\n")
                sock.setblocking(False)
                finished = True
        if select.select([sock], [], [], 0.5 if finished else 0)[0]:
            try:
                answer = sock.recv(200) or b"(closed)"
            except ConnectionResetError:
                answer = b"(reset)"
    took = time.perf_counter() - started
    sock.close()
    return answer, took, sent


def idle_half_requests(port: int, n: int, pid: int, timeout: float, probe: Probe) -> tuple[int, float, int]:
    """Open ``n`` half-requests; (descriptors they held, seconds until the server closed them, probe failures)."""
    base = len(list(Path(f"/proc/{pid}/fd").iterdir()))
    socks = []
    failures = probe.failures
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(b"POST /api/v1/reports HTTP/1.1\r\nHost: x\r\nContent-Type: appl")
        socks.append(s)
    opened = time.perf_counter()
    held = 0
    while held < n and time.perf_counter() - opened < 10:  # until the server has accepted them all
        held = max(held, len(list(Path(f"/proc/{pid}/fd").iterdir())) - base)
        time.sleep(0.05)
    deadline = opened + timeout + 20
    while len(list(Path(f"/proc/{pid}/fd").iterdir())) > base + 5 and time.perf_counter() < deadline:
        time.sleep(0.1)
    closed_after = time.perf_counter() - opened
    for s in socks:
        s.close()
    return held, closed_after, probe.failures - failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--header-mib", type=int, default=64, help="size of the one header (MiB)")
    parser.add_argument("--idle", type=int, default=1000, help="idle half-requests to open (0: none)")
    parser.add_argument("--timeout", type=float, default=5.0, help="http.header_timeout for this run (s)")
    parser.add_argument("--unguarded", action="store_true", help="uvicorn's plain protocol (before httpguard)")
    parser.add_argument("--port", type=int, default=18473)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-hostile-"))
    mode = "unguarded" if args.unguarded else "guarded"
    try:
        (work / "collector.yaml").write_text(
            f"listen: 127.0.0.1:{args.port}\ndata_dir: {work / 'data'}\nlog_level: warning\n"
            f"judge: {{enabled: false}}\nhttp: {{header_timeout: {args.timeout}s}}\n")
        log = open(work / "collector.log", "wb")  # noqa: SIM115 - closed below
        server = subprocess.Popen([sys.executable, "-c", SERVE, str(work / "collector.yaml"), mode],
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{args.port}/healthz"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(url, timeout=2).is_success:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    print((work / "collector.log").read_text()[-2000:], file=sys.stderr)
                    return 1
                time.sleep(0.2)
            proc = psutil.Process(server.pid)
            probe = Probe(url)
            probe.start()
            time.sleep(0.5)  # the probe's connection is made and its first answers are in
            cpu, peak = cpu_seconds(proc), peak_rss_mib(server.pid)
            probe.slowest = 0.0
            answer, took, sent = big_header(args.port, args.header_mib)
            time.sleep(0.5)  # what the server still does with it shows in its CPU time
            status = answer.split(b"\r\n")[0].decode(errors="replace") or "(no answer)"
            print(f"[{mode}] one {args.header_mib} MiB header: {status} after {took:.2f} s "
                  f"({sent / 2**20:.1f} MiB sent); server CPU {cpu_seconds(proc) - cpu:.2f} s, "
                  f"peak RSS +{peak_rss_mib(server.pid) - peak:.0f} MiB; "
                  f"other clients' slowest answer {probe.slowest * 1000:.0f} ms")
            if args.idle:
                probe.slowest = 0.0
                held, closed, failed = idle_half_requests(args.port, args.idle, server.pid, args.timeout, probe)
                print(f"[{mode}] {args.idle} idle half-requests: {held} descriptors held; "
                      f"{'all closed by the server after ' + format(closed, '.1f') + ' s' if closed < args.timeout + 20 else 'still open after ' + format(closed, '.0f') + ' s'}"
                      f" (header_timeout {args.timeout:g} s); other clients' failed requests meanwhile: {failed}, "
                      f"slowest answer {probe.slowest * 1000:.0f} ms")
            probe.stop.set()
            probe.join(10)
        finally:
            server.terminate()
            server.wait(60)
            log.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
