#!/usr/bin/env python3
"""The floor of any pure-Python asyncio ICMP sweep, against fping, in one run, on loopback.

benchmarks/icmp_sweep.py measures the agent: a task per check, a result per
round, structured samples. This script measures the least a Python 3.11
asyncio sweep can do for the same work (500 targets, 5 echoes 200 ms apart,
one raw socket, kernel receive times): no task, future or result per target,
every reply matched into one flat table, the statistics made in one pass at
the end. Its wall time minus fping's sweep (fping - fping's start-up, as in
icmp_sweep.py) is the interpreter's share that no agent design can remove;
what the agent spends beyond it is what its per-target isolation costs.

    .venv/bin/python benchmarks/icmp_floor.py [--repeat 7]

Needs root (a raw ICMP socket) and fping. Traffic goes to 127.0.1.1-127.0.2.250 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import time

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_SOL_RAW, _ICMP_FILTER = 255, 1
HEADER = struct.Struct("!BBHHH")
TIMESPEC = struct.Struct("qq")
PAYLOAD = (b"commune-monitor " * 4)[:56]


def targets(n: int) -> list[str]:
    """The same addresses as benchmarks/icmp_sweep.py."""
    return [f"127.0.{1 + i // 250}.{1 + i % 250}" for i in range(n)]


def checksum(data: bytes) -> int:
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


async def floor_sweep(hosts: list[str], count: int, spacing: float, reply_timeout: float) -> int:
    """Every echo through one socket, one timer per burst; the answered echoes (stats made at the end)."""
    loop = asyncio.get_running_loop()
    n = len(hosts)
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.setsockopt(_SOL_RAW, _ICMP_FILTER, struct.pack("I", ~1 & 0xFFFFFFFF))  # echo replies only
    ident = os.getpid() & 0xFFFF
    sent, received = [0] * (n * count), [0] * (n * count)
    left = [n * count]
    done = loop.create_future()

    def on_readable() -> None:
        while True:
            try:
                data, ancdata, _flags, _addr = sock.recvmsg(200, 64)
            except OSError:
                return
            kind, _code, _sum, rid, seq = HEADER.unpack_from(data, (data[0] & 0x0F) * 4)
            if kind != 0 or rid != ident or seq >= len(received) or received[seq]:
                continue
            sec, nsec = TIMESPEC.unpack_from(ancdata[0][2])
            received[seq] = sec * 1_000_000_000 + nsec
            left[0] -= 1
            if not left[0] and not done.done():
                done.set_result(None)

    def burst(k: int) -> None:
        for j, host in enumerate(hosts):
            seq = k * n + j
            packet = HEADER.pack(8, 0, checksum(HEADER.pack(8, 0, 0, ident, seq) + PAYLOAD), ident, seq) + PAYLOAD
            sent[seq] = time.time_ns()
            sock.sendto(packet, (host, 0))
        if k + 1 < count:
            loop.call_at(start + (k + 1) * spacing, burst, k + 1)

    loop.add_reader(sock.fileno(), on_readable)
    start = loop.time()
    burst(0)
    try:
        await asyncio.wait_for(done, (count - 1) * spacing + reply_timeout)
    except TimeoutError:
        pass
    finally:
        loop.remove_reader(sock.fileno())
        sock.close()
    answered = 0
    for j in range(n):  # the statistics every round needs, in one pass
        rtts = [(received[k * n + j] - sent[k * n + j]) / 1e9 for k in range(count) if received[k * n + j]]
        answered += len(rtts)
        if rtts:
            avg = math.fsum(rtts) / len(rtts)
            _stats = (min(rtts), avg, max(rtts), math.dist(rtts, (avg,) * len(rtts)) / math.sqrt(len(rtts)))
    return answered


def child(n: int, count: int, period_ms: int, timeout_ms: int) -> None:
    t0 = time.perf_counter()
    answered = asyncio.run(floor_sweep(targets(n), count, period_ms / 1000, timeout_ms / 1000))
    print(json.dumps({"wall_s": time.perf_counter() - t0, "answered": answered}))


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="runs of each (median)")
    parser.add_argument("--targets", type=int, default=500)
    parser.add_argument("--count", type=int, default=5)
    parser.add_argument("--period-ms", type=int, default=200)
    parser.add_argument("--timeout-ms", type=int, default=2000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.targets, args.count, args.period_ms, args.timeout_ms)
        return 0
    fping = shutil.which("fping")
    if fping is None or os.geteuid() != 0:
        print("needs root (a raw ICMP socket) and fping", file=sys.stderr)
        return 2
    fping_sweep = [fping, "-C", str(args.count), "-q", "-p", str(args.period_ms), "-i", "0", "-t",
                   str(args.timeout_ms), *targets(args.targets)]
    floors, sweeps = [], []
    expected = args.targets * args.count
    for i in range(args.repeat):
        out = subprocess.run([sys.executable, __file__, "--child", "--targets", str(args.targets), "--count",
                              str(args.count), "--period-ms", str(args.period_ms), "--timeout-ms",
                              str(args.timeout_ms)], capture_output=True, text=True, check=True)
        figures = json.loads(out.stdout)
        if figures["answered"] != expected:
            print(f"run {i + 1}: {figures['answered']}/{expected} echoes answered", file=sys.stderr)
        floors.append(figures["wall_s"])
        sweeps.append(timed(fping_sweep) - timed([fping, "-C", "1", "-q", "127.0.0.1"]))
        print(f"run {i + 1}/{args.repeat}: floor {floors[-1]:.4f} s, fping sweep {sweeps[-1]:.4f} s",
              file=sys.stderr, flush=True)
    floor, sweep = statistics.median(floors), statistics.median(sweeps)
    print(f"{args.targets} targets x {args.count} echoes, {args.period_ms} ms apart; median of {args.repeat}")
    print(f"pure-Python asyncio floor {floor:.4f} s, fping sweep {sweep:.4f} s: "
          f"{(floor - sweep) * 1000:+.1f} ms ({floor / sweep:.3f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
