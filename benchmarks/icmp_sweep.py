#!/usr/bin/env python3
"""ICMP sweep: the agent against fping and blackbox_exporter, in one run, on loopback.

500 targets across 127.0.0.0/8 (127.0.1.1-250, 127.0.2.1-250: all answer on
Linux loopback), 5 echoes each, 200 ms apart, 2 s reply timeout. Each figure
covers this work:

* agent, probe-once process: the whole child process, as the parent sees it
  (os.wait4): interpreter start-up, imports, config, the sweep, exit.
* agent, config + sweep: inside the child, from loading the config (500 icmp
  targets, default ``agent:`` settings) to having every result.
* agent, sweep: inside the child, ``asyncio.run(Agent.probe_once())``: event
  loop, scheduler, runner, probe and engine for every target, then shutdown.
  A running agent pays only this: the rows above it are paid once at start.
* agent, sweep start-up (1 target, 1 echo): the same for one echo to one
  target: the sweep's fixed part (event loop up and down, socket opened and
  closed), measured exactly as fping's start-up below, so that "agent sweep
  work" = sweep - its start-up is compared with "fping sweep" = fping - its
  start-up, like for like.
* agent, ICMP engine alone: the same 500 rounds as ``IcmpEngine.ping`` calls,
  without scheduler, runner or results (a separate child): what the engine
  itself costs next to fping, and so what the rest of the round costs.
* fping: ``fping -C 5 -q -p 200 -i 0 -t 2000 <targets>``, the whole process:
  -p is the per-target period (the agent's packet_interval), -t the reply
  timeout (echo_timeout), -i 0 no gap between targets (the agent starts every
  target at once). fping's own start-up is measured on its own
  (``fping -C 1 -q 127.0.0.1``) so that "fping sweep" = fping - start-up is
  the same work as "agent, sweep". A row with ``-i 1`` (fping's floor for
  non-root users) is shown for context.
* blackbox_exporter (Debian's prometheus-blackbox-exporter, icmp module):
  one echo per /probe request, so 5 rounds of 500 concurrent /probe requests
  200 ms apart; its CPU is read from /proc/PID/stat around the sweep, its peak
  RSS from VmHWM.

Peak RSS of a child is its VmHWM sampled every 2 ms until it exits: wait4's
ru_maxrss would also count the forked copy of this Python process before exec.
Wall time, CPU seconds (user+sys) and peak RSS per tool, the median of
--repeat runs (agent and fping alternate which goes first), then the ratios
and the goals: wall no worse than fping's (agent sweep work against fping
sweep, each without its start-up; the agent's sweep with its start-up is shown
beside), CPU within 3x of fping's, RSS of the whole agent process under 60 MB. The load
average before and after is printed: on a shared machine it moves the figures.

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
    """500 icmp targets and otherwise defaults (agent.concurrency included: icmp rounds take no slot)."""
    lines = ["site: {id: bench, province: ha-noi, commune: Bench}",
             f"agent: {{state_dir: {directory / 'state'}}}",
             "host: {enabled: false}",
             "links:", "  - name: lo", "    targets:"]
    round_s = (count - 1) * period_ms / 1000 + timeout_ms / 1000
    lines += [f"      - {{probe: icmp, host: {h}, count: {count}, packet_interval: {period_ms}ms, "
              f"echo_timeout: {timeout_ms}ms, timeout: {round_s + 1:g}s, interval: {max(30, round_s + 1):g}s}}"
              for h in hosts]
    path = directory / "agent.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def agent_child(config: str) -> None:
    """In the child: load, sweep once, report the sweep's own wall/CPU and the answers as JSON."""
    from commune_agent.app import Agent
    from commune_agent.config import load_agent_config

    loading_cpu, loading = _cpu_s(), time.perf_counter()
    agent = Agent(load_agent_config(config))
    sweep_cpu, sweep = _cpu_s(), time.perf_counter()
    results = asyncio.run(agent.probe_once())
    done_cpu, done = _cpu_s(), time.perf_counter()
    answered = sum(int(r.value("icmp_packets_received") or 0) for _, r in results)
    print(json.dumps({"sweep_wall_s": done - sweep, "sweep_cpu_s": done_cpu - sweep_cpu,
                      "config_sweep_wall_s": done - loading, "config_sweep_cpu_s": done_cpu - loading_cpu,
                      "answered": answered, "socket": results[0][1].info.get("socket", "?")}))


def engine_child(hosts: list[str], count: int, period_ms: int, timeout_ms: int) -> None:
    """In a child: the same rounds straight through IcmpEngine.ping (no scheduler, runner or results)."""
    from commune_agent.icmp_engine import IcmpEngine

    async def sweep() -> int:
        engine = IcmpEngine()
        try:
            rounds = await asyncio.gather(*(engine.ping(h, socket.AF_INET, count, period_ms / 1000, timeout_ms / 1000)
                                            for h in hosts))
        finally:
            engine.close()
        return sum(rtt is not None for rtts in rounds for rtt in rtts)

    cpu, wall = _cpu_s(), time.perf_counter()
    answered = asyncio.run(sweep())
    print(json.dumps({"wall_s": time.perf_counter() - wall, "cpu_s": _cpu_s() - cpu, "answered": answered}))


def _child(argv: list[str]) -> tuple[dict, float, float, float]:
    """Run this script as a child; its JSON, and its wall, CPU and peak RSS as the parent sees them."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, *argv], stdout=subprocess.PIPE, env=env)
    rss_sampler = PeakRss(proc.pid)
    assert proc.stdout is not None
    out = proc.stdout.read()
    cpu, rss = reap(proc, rss_sampler)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"child {argv[0]} failed with {proc.returncode}")
    return json.loads(out), wall, cpu, rss


def run_agent(config: Path, expected: int) -> tuple[Run, Run, Run]:
    """The whole probe-once process (start-up included), config + sweep inside it, and the sweep alone."""
    child, wall, cpu, rss = _child(["--agent-child", str(config)])
    process = Run("agent, probe-once process", wall, cpu, rss, child["answered"], expected)
    config_sweep = Run("agent, config + sweep", child["config_sweep_wall_s"], child["config_sweep_cpu_s"], rss,
                       child["answered"], expected)
    sweep = Run(f"agent, sweep ({child['socket']} socket)", child["sweep_wall_s"], child["sweep_cpu_s"], rss,
                child["answered"], expected)
    return process, config_sweep, sweep


def run_engine(args: argparse.Namespace, expected: int) -> Run:
    child, _wall, _cpu, rss = _child(["--engine-child", str(args.targets), str(args.count), str(args.period_ms),
                                      str(args.timeout_ms)])
    return Run("agent, ICMP engine alone", child["wall_s"], child["cpu_s"], rss, child["answered"], expected)


# ---------------------------------------------------------------- fping


def run_fping(hosts: list[str], count: int, period_ms: int, timeout_ms: int, gap_ms: float,
              tool: str | None = None) -> Run:
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
    return Run(tool or f"fping -i {gap_ms:g}", wall, cpu, rss, answered, count * len(hosts))


def run_fping_startup(timeout_ms: int) -> Run:
    """fping's start-up and exit: one echo to one target, the part of an fping run that is not sweep."""
    return run_fping(["127.0.0.1"], 1, 1000, timeout_ms, 0, tool="fping start-up (1 target, 1 echo)")


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


def ratios(rows: dict[str, Run], markdown: bool) -> list[str]:
    """agent against fping (like for like, and whole processes) and blackbox_exporter; then the goals."""
    sweep, process, fping, startup = rows["sweep"], rows["process"], rows["fping0"], rows["fping_startup"]
    fping_sweep = Run("fping sweep", fping.wall_s - startup.wall_s, max(fping.cpu_s - startup.cpu_s, 0.0),
                      fping.rss_mb, fping.answered, fping.expected)

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}x" if b > 0 else "n/a"

    agent_start = rows["agent_startup"]
    work = Run("agent sweep work", sweep.wall_s - agent_start.wall_s, max(sweep.cpu_s - agent_start.cpu_s, 0.0),
               sweep.rss_mb, sweep.answered, sweep.expected)
    pairs = [("agent sweep work / fping sweep (each without its start-up)", work, fping_sweep, True),
             ("agent sweep / fping sweep (fping -i 0 - start-up)", sweep, fping_sweep, True),
             ("agent sweep / fping -i 0 (whole process)", sweep, fping, True),
             ("agent probe-once process / fping -i 0 (whole processes)", process, fping, False)]
    if "blackbox" in rows:
        pairs.append(("agent sweep / blackbox_exporter", sweep, rows["blackbox"], True))
    body = [(name, ratio(a.wall_s, b.wall_s), ratio(a.cpu_s, b.cpu_s), ratio(a.rss_mb, b.rss_mb) if rss else "")
            for name, a, b, rss in pairs]
    head = ("ratio", "wall", "CPU", "RSS")
    if markdown:
        lines = [f"| {' | '.join(head)} |", f"|{' --- |' * len(head)}", *(f"| {' | '.join(r)} |" for r in body)]
    else:
        widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [head, *body]]
    goals = [(f"wall time no worse than fping's: agent sweep work {work.wall_s:.3f} s, fping sweep "
              f"{fping_sweep.wall_s:.3f} s (agent sweep with its start-up {sweep.wall_s:.3f} s)",
              work.wall_s <= fping_sweep.wall_s),
             (f"CPU within 3x of fping's: {ratio(work.cpu_s, fping_sweep.cpu_s)}",
              work.cpu_s <= 3 * fping_sweep.cpu_s),
             (f"RSS under 60 MB: agent process {process.rss_mb:.1f} MB", process.rss_mb < 60)]
    return lines + [f"goal: {name}: {'met' if ok else 'MISSED'}" for name, ok in goals]


def load_average() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=500, help="loopback targets (default 500)")
    parser.add_argument("--count", type=int, default=5, help="echoes per target (default 5)")
    parser.add_argument("--period-ms", type=int, default=200, help="time between a target's echoes (default 200)")
    parser.add_argument("--timeout-ms", type=int, default=2000, help="reply timeout (default 2000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per tool; the median is reported (default 3)")
    parser.add_argument("--no-blackbox", action="store_true", help="skip blackbox_exporter")
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    parser.add_argument("--agent-child", metavar="CONFIG", help=argparse.SUPPRESS)
    parser.add_argument("--engine-child", nargs=4, type=int, metavar="N", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.agent_child:
        agent_child(args.agent_child)
        return 0
    if args.engine_child:
        targets_n, count, period_ms, timeout_ms = args.engine_child
        engine_child(targets(targets_n), count, period_ms, timeout_ms)
        return 0
    if not 1 <= args.targets <= 250 * 254 or not 1 <= args.repeat <= 20:
        parser.error("--targets must be 1..63500 and --repeat 1..20")
    hosts = targets(args.targets)
    expected = args.targets * args.count
    workdir = Path(tempfile.mkdtemp(prefix="icmp-sweep-"))
    load_before = load_average()
    blackbox = None if args.no_blackbox else Blackbox(workdir)
    runs: dict[str, list[Run]] = {}

    def record(key: str, run: Run) -> None:
        runs.setdefault(key, []).append(run)

    def agent() -> None:
        for key, run in zip(("process", "config_sweep", "sweep"), run_agent(config, expected), strict=True):
            record(key, run)

    def fping() -> None:
        record("fping0", run_fping(hosts, args.count, args.period_ms, args.timeout_ms, 0))

    try:
        config = write_agent_config(workdir, hosts, args.count, args.period_ms, args.timeout_ms)
        (workdir / "one").mkdir()
        one_target = write_agent_config(workdir / "one", ["127.0.0.1"], 1, args.period_ms, args.timeout_ms)
        for i in range(1, args.repeat + 1):
            log(f"run {i}/{args.repeat}: agent and fping -i 0 ...")
            for step in ((agent, fping) if i % 2 else (fping, agent)):  # neither always goes first
                step()
            log(f"run {i}/{args.repeat}: agent ICMP engine alone, fping start-up, fping -i 1 ...")
            record("engine", run_engine(args, expected))
            start = run_agent(one_target, 1)[2]
            record("agent_startup", Run("agent, sweep start-up (1 target, 1 echo)", start.wall_s, start.cpu_s,
                                        start.rss_mb, start.answered, start.expected))
            record("fping_startup", run_fping_startup(args.timeout_ms))
            record("fping1", run_fping(hosts, args.count, args.period_ms, args.timeout_ms, 1))
            if blackbox:
                log(f"run {i}/{args.repeat}: blackbox_exporter ...")
                record("blackbox", run_blackbox(blackbox, hosts, args.count, args.period_ms))
    finally:
        if blackbox:
            blackbox.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    order = ["process", "config_sweep", "sweep", "agent_startup", "engine", "fping0", "fping_startup", "fping1", "blackbox"]
    rows = {key: median_run(runs[key]) for key in order if key in runs}
    print(f"{args.targets} targets x {args.count} echoes, {args.period_ms} ms apart, {args.timeout_ms} ms reply "
          f"timeout; median of {args.repeat} runs (RSS: the largest); load average (1/5/15 min) "
          f"{load_before} before, {load_average()} after")
    print("\n".join(report(list(rows.values()), args.markdown)))
    print()
    print("\n".join(ratios(rows, args.markdown)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
