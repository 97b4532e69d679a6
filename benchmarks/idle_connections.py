#!/usr/bin/env python3
"""What kept-alive agent connections cost the collector: memory per idle connection, plain and TLS.

With ``keep_alive`` (collector 75 s, agent 60 s) every site holds one idle
connection between its pushes instead of making a new one (and a TLS
handshake) every 30 s. This opens --connections connections to a real
``commune-collector serve`` on loopback, each making one request and then
staying open, and prints the server process's RSS before and after, per
connection, and how long the handshakes took.

    .venv/bin/python benchmarks/idle_connections.py [--connections 10000] [--tls]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from testsupport.collector import self_signed_cert  # noqa: E402 - a throwaway EC P-256 certificate

COLLECTOR = Path(sys.executable).with_name("commune-collector")


async def hold(port: int, n: int, tls: ssl.SSLContext | None, parallel: int) -> tuple[list, float]:
    """Open ``n`` connections (``parallel`` at a time), one GET /healthz each; return them, still open."""
    request = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    gate = asyncio.Semaphore(parallel)

    async def one() -> None:
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length"))
            await reader.readexactly(length)
            held.append((reader, writer))
            if len(held) % 2000 == 0:
                print(f"  {len(held)}/{n} connections open", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return held, time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=10000)
    parser.add_argument("--tls", action="store_true", help="the collector serves HTTPS (its own tls: setting)")
    parser.add_argument("--parallel", type=int, default=64, help="connections being opened at once")
    parser.add_argument("--port", type=int, default=18471)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.connections + 1000
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, soft), max(want, hard)))
    work = Path(tempfile.mkdtemp(prefix="bench-idle-"))
    try:
        tls_yaml, client_tls = "", None
        if args.tls:
            cert, key = self_signed_cert(work)
            tls_yaml = f"tls: {{cert_file: {cert}, key_file: {key}}}\n"
            client_tls = ssl.create_default_context()
            client_tls.check_hostname, client_tls.verify_mode = False, ssl.CERT_NONE
        (work / "collector.yaml").write_text(f"listen: 127.0.0.1:{args.port}\ndata_dir: {work / 'data'}\n"
                                             f"log_level: warning\njudge: {{enabled: false}}\n{tls_yaml}")
        scheme = "https" if args.tls else "http"
        log = open(work / "collector.log", "wb")  # noqa: SIM115 - closed below
        server = subprocess.Popen([str(COLLECTOR), "serve", "--config", str(work / "collector.yaml")],
                                  stdout=log, stderr=subprocess.STDOUT,
                                  preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (want, want)))
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{scheme}://127.0.0.1:{args.port}/readyz", verify=False, timeout=2).is_success:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    print((work / "collector.log").read_text()[-2000:], file=sys.stderr)
                    return 1
                time.sleep(0.2)
            proc = psutil.Process(server.pid)
            before = proc.memory_info().rss
            after, fds, took = asyncio.run(_hold_and_measure(args, client_tls, proc))
            per = (after - before) / args.connections
            print(f"{args.connections} idle {'TLS' if args.tls else 'plain HTTP'} connections: server RSS "
                  f"{before / 2**20:.0f} -> {after / 2**20:.0f} MiB, {per / 1024:.1f} KiB per connection "
                  f"({fds} open file descriptors); opened in {took:.1f} s, "
                  f"{took / args.connections * 1000:.2f} ms each, {args.parallel} at a time")
        finally:
            server.terminate()
            server.wait(60)
            log.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


async def _hold_and_measure(args: argparse.Namespace, tls: ssl.SSLContext | None,
                            proc: psutil.Process) -> tuple[int, int, float]:
    """Open the connections; the server's RSS and open descriptors while they are held, and how long
    opening them took. Then close them."""
    held, took = await hold(args.port, args.connections, tls, args.parallel)
    rss, fds = proc.memory_info().rss, proc.num_fds()
    for _reader, writer in held:
        writer.close()
    return rss, fds, took


if __name__ == "__main__":
    sys.exit(main())
