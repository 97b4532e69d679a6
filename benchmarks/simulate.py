#!/usr/bin/env python3
"""The fleet simulator's own cost: CPU, peak RSS and reports/s while it drives a real collector.

A fresh collector (SQLite, judge on) with a generated inventory of ``--sites``
communes; ``commune-collector simulate run`` issues the tokens, backfills a
day and reports live for ``--seconds``. Printed: backfill time, live reports/s,
the simulator's CPU seconds and peak RSS (its own figures at exit), and the
collector's CPU over the same time.

Usage: python benchmarks/simulate.py [--sites 3321] [--seconds 120]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from testsupport.peers._base import free_tcp_port, http_ok, wait_until  # noqa: E402

CLI = str(Path(sys.executable).parent / "commune-collector")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", type=int, default=3321)
    parser.add_argument("--seconds", type=float, default=120.0,
                        help="live reporting from the start (sites join as their backfill is in)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-simulate-"))
    port = free_tcp_port()
    config = work / "collector.yaml"
    config.write_text(f"listen: 127.0.0.1:{port}\ndata_dir: {work / 'data'}\n", encoding="utf-8")
    subprocess.run([CLI, "sites", "generate", "--count", str(args.sites), "-o", str(work / "inv.csv")], check=True)
    subprocess.run([CLI, "sites", "import", str(work / "inv.csv"), "-c", str(config)], check=True,
                   capture_output=True)
    server = subprocess.Popen([CLI, "serve", "-c", str(config)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/readyz"), timeout=60, what="the collector")
        collector = psutil.Process(server.pid)
        cpu0 = _tree_cpu(collector)
        started = time.monotonic()
        sim = subprocess.Popen([CLI, "simulate", "run", "-c", str(config), "--url", f"http://127.0.0.1:{port}",
                                "--duration", str(args.seconds), "--progress", "5"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        backfill_s = None
        lines = []
        for line in sim.stdout:  # type: ignore[union-attr]
            lines.append(line.rstrip())
            print(line.rstrip(), file=sys.stderr, flush=True)
            if backfill_s is None and "backfill done" in line:
                backfill_s = time.monotonic() - started
        sim.wait()
        elapsed = time.monotonic() - started
        collector_cpu = _tree_cpu(collector) - cpu0
    finally:
        server.terminate()
        try:
            server.wait(120)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(work, ignore_errors=True)
    final = next(line for line in reversed(lines) if "stopped." in line)
    acked = int(re.search(r"([\d,]+) reports acked", final).group(1).replace(",", ""))
    cpu = float(re.search(r"simulator CPU ([\d.]+) s", final).group(1))
    rss = float(re.search(r"peak RSS (\d+) MiB", final).group(1))
    results = int(re.search(r"\(([\d,]+) results\)", final).group(1).replace(",", ""))
    print(f"| {args.sites:,} sites | backfill {backfill_s:.0f} s | {acked:,} reports ({results:,} results) acked in "
          f"{elapsed:.0f} s, {acked / elapsed:,.0f} reports/s "
          f"| simulator {cpu:.0f} CPU s over {elapsed:.0f} s ({cpu / elapsed:.2f} cores), peak RSS {rss:.0f} MiB "
          f"| collector {collector_cpu / elapsed:.2f} cores |")
    print(final, file=sys.stderr)
    return 0


def _tree_cpu(proc: psutil.Process) -> float:
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


if __name__ == "__main__":
    sys.exit(main())
