#!/usr/bin/env python3
"""ICMP sweep: the agent against fping and blackbox_exporter, in one run, on loopback.

500 targets across 127.0.0.0/8 (127.0.1.1-250, 127.0.2.1-250: all answer on
Linux loopback), 5 echoes each, 200 ms apart, 2 s reply timeout:

* agent: a config with 500 icmp targets run by ``Agent.probe_once`` in a child
  process (the real code path: config, checks, scheduler, runner, probe, engine);
  the child reports the sweep itself (after interpreter start-up and imports)
  and the parent the whole process (os.wait4).
* fping: ``fping -C 5 -q -p 200 -i 0 -t 2000 <targets>``: -p is the per-target
  period (the agent's packet_interval), -t the reply timeout (echo_timeout),
  -i 0 no gap between targets (the agent starts all targets at once). A second
  row with ``-i 1`` (fping's floor for non-root users) is shown for context.
* blackbox_exporter (Debian's prometheus-blackbox-exporter, icmp module):
  one echo per /probe request, so 5 rounds of 500 concurrent /probe requests
  200 ms apart; its CPU is read from /proc/PID/stat around the sweep, its peak
  RSS from VmHWM.

Peak RSS of a child is its VmHWM sampled every 2 ms until it exits: wait4's
ru_maxrss would also count the forked copy of this Python process before exec.
Wall time, CPU seconds (user+sys) and peak RSS per tool, the median of
--repeat runs, then the ratios agent/fping and agent/blackbox and the goals
(wall no worse than fping, CPU within 3x of fping, RSS under 60 MB).

    .venv/bin/python benchmarks/icmp_sweep.py [--repeat 5] [--markdown]

Needs root (raw ICMP sockets here), fping and prometheus-blackbox-exporter.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    tool: str
    wall_s: float
    cpu_s: float
    rss_mb: float
    answered: int
    expected: int


def targets(n: int) -> list[str]:
    """n loopback addresses, 250 per /24 starting at 127.0.1.1 (no .0, no .255)."""
    return [f"127.0.{1 + i // 250}.{1 + i % 250}" for i in range(n)]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def vm_hwm_mb(pid: int) -> float | None:
    """The process's peak resident set (VmHWM), or None once it has exited."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class PeakRss:
    """Samples a child's VmHWM until it exits (VmHWM only grows, so the last reading is the peak)."""

    def __init__(self, pid: int):
        self.pid, self.peak_mb, self._stop = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            value = vm_hwm_mb(self.pid)
            if value is None:
                return
            self.peak_mb = max(self.peak_mb, value)
            self._stop.wait(0.002)

    def done(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_mb


def reap(proc: subprocess.Popen, rss: PeakRss) -> tuple[float, float]:
    """Wait for the child; its CPU seconds (user+sys, from wait4) and peak RSS in MB."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime, rss.done()


# ---------------------------------------------------------------- the agent


def write_agent_config(directory: Path, hosts: list[str], count: int, period_ms: int, timeout_ms: int) -> Path:
    lines = ["site: {id: bench, province: bench, commune: Bench}",
             f"agent: {{concurrency: {len(hosts) + 10}, state_dir: {directory / 'state'}}}",
             "host: {enabled: false}",
             "links:", "  - name: lo", "    targets:"]
    round_s = (count - 1) * period_ms / 1000 + timeout_ms / 1000
    lines += [f"      - {{probe: icmp, host: {h}, count: {count}, packet_interval: {period_ms}ms, "
              f"echo_timeout: {timeout_ms}ms, timeout: {round_s + 1:g}s, interval: {max(30, round_s + 1):g}s}}"
              for h in hosts]
    path = directory / "agent.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def agent_child(config: str) -> None:
    """In the child: load, sweep once, report the sweep's own wall/CPU and the answers as JSON."""
    started = resource.getrusage(resource.RUSAGE_SELF)
    from agent.app import Agent
    from agent.config import load_agent_config

    agent = Agent(load_agent_config(config))
    before, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    results = asyncio.run(agent.probe_once())
    after, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    answered = sum(int(r.value("icmp_packets_received") or 0) for _, r in results)
    print(json.dumps({"sweep_wall_s": t1 - t0,
                      "sweep_cpu_s": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
                      "startup_cpu_s": before.ru_utime + before.ru_stime - started.ru_utime - started.ru_stime,
                      "answered": answered, "socket": results[0][1].info.get("socket", "?")}))


def run_agent(config: Path, expected: int) -> tuple[Run, Run]:
    """The whole probe-once process (start-up included) and the sweep inside it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--agent-child", str(config)], stdout=subprocess.PIPE, env=env)
    rss_sampler = PeakRss(proc.pid)
    assert proc.stdout is not None
    out = proc.stdout.read()
    cpu, rss = reap(proc, rss_sampler)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"agent child failed with {proc.returncode}")
    child = json.loads(out)
    process = Run("agent, probe-once process", wall, cpu, rss, child["answered"], expected)
    sweep = Run(f"agent, sweep ({child['socket']} socket)", child["sweep_wall_s"], child["sweep_cpu_s"], rss,
                child["answered"], expected)
    return process, sweep


# ---------------------------------------------------------------- fping


def run_fping(hosts: list[str], count: int, period_ms: int, timeout_ms: int, gap_ms: float) -> Run:
    fping = shutil.which("fping") or "/usr/bin/fping"
    argv = [fping, "-C", str(count), "-q", "-p", str(period_ms), "-i", f"{gap_ms:g}", "-t", str(timeout_ms), *hosts]
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    rss_sampler = PeakRss(proc.pid)
    assert proc.stderr is not None
    err = proc.stderr.read()
    cpu, rss = reap(proc, rss_sampler)
    wall = time.perf_counter() - t0
    answered = sum(1 for line in err.splitlines() if " : " in line for tok in line.split(" : ", 1)[1].split()
                   if tok != "-")
    return Run(f"fping -i {gap_ms:g}", wall, cpu, rss, answered, count * len(hosts))


# ---------------------------------------------------------------- blackbox_exporter


class Blackbox:
    """prometheus-blackbox-exporter on a free loopback port; stopped by PID."""

    def __init__(self, directory: Path):
        binary = shutil.which("prometheus-blackbox-exporter")
        if binary is None:
            raise SystemExit("prometheus-blackbox-exporter not found: apt-get install prometheus-blackbox-exporter")
        (directory / "blackbox.yml").write_text(
            "modules:\n  icmp:\n    prober: icmp\n    timeout: 2s\n    icmp:\n"
            "      preferred_ip_protocol: ip4\n      ip_protocol_fallback: false\n")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log = open(directory / "blackbox.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([binary, f"--config.file={directory / 'blackbox.yml'}",
                                      f"--web.listen-address=127.0.0.1:{self.port}"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while not self._healthy():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"blackbox_exporter did not start; see {directory / 'blackbox.log'}")
            time.sleep(0.1)

    def _healthy(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"GET /-/healthy HTTP/1.0\r\n\r\n")
                return s.recv(64).startswith(b"HTTP/1.0 200")
        except OSError:
            return False

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime

    def rss_mb(self) -> float:
        return vm_hwm_mb(self.proc.pid) or float("nan")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


async def _probe(port: int, host: str, limit: asyncio.Semaphore) -> bool:
    async with limit:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(f"GET /probe?module=icmp&target={host} HTTP/1.0\r\n\r\n".encode())
            body = await reader.read()
        finally:
            writer.close()
    return b"\nprobe_success 1" in body


async def _blackbox_sweep(port: int, hosts: list[str], count: int, period_ms: int) -> int:
    limit = asyncio.Semaphore(512)
    loop = asyncio.get_running_loop()
    start, answered = loop.time(), 0
    for r in range(count):
        await asyncio.sleep(max(0.0, start + r * period_ms / 1000 - loop.time()))
        answered += sum(await asyncio.gather(*(_probe(port, h, limit) for h in hosts)))
    return answered


def run_blackbox(blackbox: Blackbox, hosts: list[str], count: int, period_ms: int) -> Run:
    cpu0, t0 = blackbox.cpu_s(), time.perf_counter()
    answered = asyncio.run(_blackbox_sweep(blackbox.port, hosts, count, period_ms))
    wall, cpu = time.perf_counter() - t0, blackbox.cpu_s() - cpu0
    return Run("blackbox_exporter", wall, cpu, blackbox.rss_mb(), answered, count * len(hosts))


# ---------------------------------------------------------------- report


def median_run(runs: list[Run]) -> Run:
    return Run(runs[0].tool, statistics.median(r.wall_s for r in runs), statistics.median(r.cpu_s for r in runs),
               max(r.rss_mb for r in runs), min(r.answered for r in runs), runs[0].expected)


def report(rows: list[Run], markdown: bool) -> list[str]:
    head = ("tool", "wall s", "CPU s", "peak RSS MB", "echoes answered")
    body = [(r.tool, f"{r.wall_s:.3f}", f"{r.cpu_s:.3f}", f"{r.rss_mb:.1f}", f"{r.answered}/{r.expected}")
            for r in rows]
    if markdown:
        return [f"| {' | '.join(head)} |", f"|{' --- |' * len(head)}",
                *(f"| {' | '.join(row)} |" for row in body)]
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in [head, *body]]


def ratios(sweep: Run, process: Run, fping: Run, blackbox: Run | None) -> list[str]:
    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}x" if b > 0 else "n/a (reference below clock resolution)"

    lines = [f"agent sweep / fping -i 0:       wall {ratio(sweep.wall_s, fping.wall_s)}, "
             f"CPU {ratio(sweep.cpu_s, fping.cpu_s)}, RSS {ratio(sweep.rss_mb, fping.rss_mb)}",
             f"agent process / fping -i 0:     wall {ratio(process.wall_s, fping.wall_s)}, "
             f"CPU {ratio(process.cpu_s, fping.cpu_s)}"]
    if blackbox:
        lines.append(f"agent sweep / blackbox_exporter: wall {ratio(sweep.wall_s, blackbox.wall_s)}, "
                     f"CPU {ratio(sweep.cpu_s, blackbox.cpu_s)}, RSS {ratio(sweep.rss_mb, blackbox.rss_mb)}")
    goals = [("wall time no worse than fping's", sweep.wall_s <= fping.wall_s),
             ("CPU within 3x of fping's", sweep.cpu_s <= 3 * max(fping.cpu_s, 0.01)),
             ("RSS under 60 MB", process.rss_mb < 60)]
    lines += [f"goal: {name}: {'met' if ok else 'MISSED'}" for name, ok in goals]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=500, help="loopback targets (default 500)")
    parser.add_argument("--count", type=int, default=5, help="echoes per target (default 5)")
    parser.add_argument("--period-ms", type=int, default=200, help="time between a target's echoes (default 200)")
    parser.add_argument("--timeout-ms", type=int, default=2000, help="reply timeout (default 2000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per tool; the median is reported (default 3)")
    parser.add_argument("--no-blackbox", action="store_true", help="skip blackbox_exporter")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--agent-child", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.agent_child:
        agent_child(args.agent_child)
        return 0
    if not 1 <= args.targets <= 250 * 254 or not 1 <= args.repeat <= 20:
        parser.error("--targets must be 1..63500 and --repeat 1..20")
    hosts = targets(args.targets)
    expected = args.targets * args.count
    workdir = Path(tempfile.mkdtemp(prefix="icmp-sweep-"))
    blackbox = None if args.no_blackbox else Blackbox(workdir)
    runs: dict[str, list[Run]] = {}
    try:
        config = write_agent_config(workdir, hosts, args.count, args.period_ms, args.timeout_ms)
        for i in range(1, args.repeat + 1):
            log(f"run {i}/{args.repeat}: agent ...")
            process, sweep = run_agent(config, expected)
            runs.setdefault("process", []).append(process)
            runs.setdefault("sweep", []).append(sweep)
            for gap in (0, 1):
                log(f"run {i}/{args.repeat}: fping -i {gap} ...")
                runs.setdefault(f"fping{gap}", []).append(
                    run_fping(hosts, args.count, args.period_ms, args.timeout_ms, gap))
            if blackbox:
                log(f"run {i}/{args.repeat}: blackbox_exporter ...")
                runs.setdefault("blackbox", []).append(run_blackbox(blackbox, hosts, args.count, args.period_ms))
    finally:
        if blackbox:
            blackbox.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    rows = {key: median_run(value) for key, value in runs.items()}
    print(f"{args.targets} targets x {args.count} echoes, {args.period_ms} ms apart, {args.timeout_ms} ms reply "
          f"timeout; median of {args.repeat} runs (RSS: the largest)")
    print("\n".join(report(list(rows.values()), args.markdown)))
    print("\n".join(ratios(rows["sweep"], rows["process"], rows["fping0"], rows.get("blackbox"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
