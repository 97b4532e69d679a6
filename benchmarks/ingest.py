#!/usr/bin/env python3
"""Ingest throughput of the collector on SQLite, with Prometheus as the anchor.

A fleet of simulated agents on loopback (several sender processes, async
httpx, keep-alive) pushes realistic reports (50 results each, gzip, one every
``--interval`` seconds per site at a random phase) to a real
``commune-collector serve`` process on SQLite. Printed: offered and sustained
reports/s and samples/s (one sample = one check result), p50/p99 request
latency, the collector's CPU and RSS, and disk per site-day.

In the same run, Prometheus (Debian) takes the same reports through its
remote-write receiver (each report as a WriteRequest of its values, snappy)
from the same fleet: its CPU per report is the anchor the collector is
measured against.

Usage: python benchmarks/ingest.py [--sites 10000] [--interval 30] [--seconds 60]
Goal (docs/benchmarks.md, "Ingest"): 10,000 sites at 30 s (~16,700 samples/s)
with p99 under 250 ms on 2 cores with SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import multiprocessing as mp
import os
import random
import resource
import shutil
import signal
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psutil  # noqa: E402

from commune_collector.auth import new_token  # noqa: E402
from commune_collector.generate import generate_sites  # noqa: E402
from commune_collector.remote_write import encode_write_request, series_of, snappy_block  # noqa: E402
from commune_collector.store.sqlite import SQLiteStore  # noqa: E402
from commune_common.wire import CheckResult, Report, encode_report, value_key  # noqa: E402
from testsupport.collector import self_signed_cert  # noqa: E402 - a throwaway EC P-256 certificate

VENV_BIN = Path(sys.executable).parent
EVIDENCE_CACHE_AGE_S = 3600.0
RW_HEADERS = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
              "X-Prometheus-Remote-Write-Version": "0.1.0"}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- what one site reports ------------------------------------------------------------------

def _check_templates(n: int) -> list[tuple[str, str, dict[str, str], list[str]]]:
    """``n`` distinct checks shaped like a commune site: links, devices, UPS, host, DNS."""
    kinds = [
        ("icmp", lambda i: f"link/l{i % 5}/icmp/t{i}", lambda i: {"link": f"l{i % 5}", "role": "primary",
                                                                   "target": f"t{i}"},
         [value_key("icmp_rtt_seconds", {"stat": s}) for s in ("avg", "min", "max")] +
         ["icmp_loss_ratio", "icmp_jitter_seconds"]),
        ("tcp", lambda i: f"link/l{i % 5}/tcp/t{i}", lambda i: {"link": f"l{i % 5}", "role": "primary",
                                                                 "target": f"t{i}"}, ["tcp_connect_seconds"]),
        ("http", lambda i: f"link/l{i % 5}/http/t{i}", lambda i: {"link": f"l{i % 5}", "role": "primary",
                                                                   "target": f"t{i}"},
         ["http_status_code", "http_duration_seconds", "http_tls_cert_expiry_seconds"]),
        ("snmp_system", lambda i: f"device/d{i}/snmp", lambda i: {"device": f"d{i}", "kind": "switch"},
         ["snmp_uptime_seconds", "snmp_response_seconds", value_key("snmp_if_oper_up", {"ifname": "ge-0/0/1"}),
          value_key("snmp_if_oper_up", {"ifname": "ge-0/0/2"})]),
        ("ups_snmp", lambda i: f"power/ups{i}/snmp", lambda i: {"device": f"ups{i}"},
         ["ups_on_battery", "ups_battery_charge_ratio", "ups_battery_runtime_seconds", "ups_input_voltage_volts",
          "ups_load_ratio", "ups_output_voltage_volts"]),
        ("host", lambda i: f"host{i}", lambda i: {"target": "host"},
         ["host_cpu_usage_ratio", "host_memory_used_ratio", "host_disk_used_ratio", "host_uptime_seconds",
          "host_load1", "host_clock_offset_seconds"]),
    ]
    weights = [0.36, 0.16, 0.12, 0.22, 0.06, 0.08]
    out = []
    for i in range(n):
        probe, check, labels, values = kinds[_pick(i, weights)]
        out.append((check(i), probe, labels(i), values))
    return out


def _pick(i: int, weights: list[float]) -> int:
    x = ((i * 0.6180339887) % 1.0)
    for k, w in enumerate(weights):
        if x < w:
            return k
        x -= w
    return len(weights) - 1


def build_report(site: str, seq: int, now: float, templates: list, rng: random.Random) -> Report:
    """One round of every check: values near a per-check level with 10% noise, like real links and devices.

    Round times increase from one report to the next (Prometheus refuses samples out of order).
    """
    results = []
    for n, (check, probe, labels, values) in enumerate(templates):
        ok = rng.random() > 0.02
        level = 0.005 + (hash((site, n)) % 1000) / 10_000  # 5-105 ms, fixed per site and check
        results.append(CheckResult(check=check, probe=probe, ts=now - 1.0 + n / 100, ok=ok,
                                   duration_s=level * rng.uniform(0.9, 1.1), reason="" if ok else "timeout",
                                   labels=labels,
                                   values={k: level * (1 + i) * rng.uniform(0.9, 1.1) for i, k in enumerate(values)}
                                   if ok else {}))
    return Report(site=site, instance="bench", seq=seq, sent_at=now, agent_version="bench", results=results)


# -- the fleet -----------------------------------------------------------------------------------

@dataclass
class SenderResult:
    latencies: list[float] = field(default_factory=list)
    sent: int = 0
    ok_reports: int = 0
    ok_results: int = 0
    ok_values: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    late: int = 0  # requests that started more than 1 s after their time (every connection busy)
    started: list[float] = field(default_factory=list)  # wall time each request started (for the timeline)
    planned: int = 0  # requests the fleet planned for the phase (set by run_fleet)


@dataclass
class Planned:
    due: float
    body: bytes
    head: bytes
    results: int
    values: int
    site: int  # the site's index in this sender (--connection-per-site: its own connection)


def _plan(target: str, path: str, port: int, sites: list[tuple[str, str]], args: dict,
          start_at: float) -> list[Planned]:
    """Every request of this sender, built before the clock starts so the fleet costs little CPU.

    Each report carries the time it is due as ``sent_at`` and rounds just before it, exactly
    what it would carry if built at that moment.
    """
    rng = random.Random(hash(sites[0][0]) & 0xFFFF)
    templates = _check_templates(args["results"])
    planned: list[Planned] = []
    for index, (site, token) in enumerate(sites):
        phase = rng.uniform(0, args["interval"])
        seq = 1
        while (due := start_at + phase + (seq - 1) * args["interval"]) < start_at + args["seconds"]:
            report = build_report(site, seq, due, templates, rng)
            if target == "collector":
                body = gzip.compress(encode_report(report), compresslevel=6)
                headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                           "Content-Encoding": "gzip"}
            else:
                series: dict = {}
                for labels, ts, value in series_of(site, report.results, 0.0):
                    series.setdefault(labels, []).append((ts, value))
                body = snappy_block(encode_write_request(series))
                headers = RW_HEADERS
            head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len(body)}\r\n"
                    + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()
            planned.append(Planned(due, body, head, len(report.results),
                                   sum(2 + len(r.values) for r in report.results), index))
            seq += 1
    planned.sort(key=lambda p: p.due)
    return planned


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, item: Planned) -> tuple[int, bool]:
    """One HTTP/1.1 request on a kept-alive connection: (status, server wants to close)."""
    writer.write(item.head + item.body)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    await reader.readexactly(int(fields.get("content-length", "0")))
    return status, fields.get("connection", "").lower() == "close"


async def _fleet(target: str, url: str, sites: list[tuple[str, str]], args: dict, planned: list[Planned]
                 ) -> SenderResult:
    """A minimal HTTP/1.1 client over a pool of kept-alive connections (httpx costs more CPU
    per request than the collector does, so with it the load generator, not the collector, was measured)."""
    parsed = httpx.URL(url)
    out = SenderResult()
    tls = None
    if parsed.scheme == "https":  # the collector's own throwaway certificate, on loopback: encryption, no trust
        tls = ssl.create_default_context()
        tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(parsed.host, parsed.port, ssl=tls)

    async def connection(queue: asyncio.Queue[Planned | None]) -> None:
        reader = writer = None
        while (item := await queue.get()) is not None:
            if time.time() - item.due > 1.0:
                out.late += 1
            started = time.perf_counter()
            out.started.append(time.time())
            try:
                if writer is not None and reader is not None and reader.at_eof():
                    writer.close()  # the server closed it while idle (keep-alive timeout): as httpx, reconnect
                    reader = writer = None
                reused = writer is not None
                if writer is None:
                    reader, writer = await connect()
                try:
                    status, close = await _exchange(reader, writer, item)
                except (ConnectionError, asyncio.IncompleteReadError) as exc:
                    if not reused or (isinstance(exc, asyncio.IncompleteReadError) and exc.partial):
                        raise
                    # closed by the server as the request went out: nothing of it was answered, and the
                    # collector takes a report id once, so send it again on a new connection
                    writer.close()
                    reader, writer = await connect()
                    status, close = await _exchange(reader, writer, item)
                code = str(status)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                code, close = type(exc).__name__, True
            out.latencies.append(time.perf_counter() - started)
            out.sent += 1
            out.statuses[code] = out.statuses.get(code, 0) + 1
            if code in ("200", "204"):
                out.ok_reports += 1
                out.ok_results += item.results
                out.ok_values += item.values
            if (close or args["reconnect"]) and writer is not None:
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    # a pool of connections taking whichever report is due, or (--connection-per-site) one per site, as
    # agents keeping their connection between pushes hold them: 10,000 mostly idle connections
    queues: list[asyncio.Queue[Planned | None]] = [
        asyncio.Queue() for _ in range(len(sites) if args["per_site"] else 1)]
    workers = [asyncio.create_task(connection(q)) for q in queues
               for _ in range(1 if args["per_site"] else args["connections"])]
    for item in planned:
        delay = item.due - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        queues[item.site if args["per_site"] else 0].put_nowait(item)
    for q in queues:
        for _ in range(1 if args["per_site"] else args["connections"]):
            q.put_nowait(None)
    await asyncio.wait(workers, timeout=120)
    return out


def _allow_files(n: int) -> None:
    """Raise this process's open-file limit to ``n`` (within the hard limit); children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        if hard != resource.RLIM_INFINITY and hard < n:
            raise SystemExit(f"{n} open files needed, the hard limit is {hard} (ulimit -Hn)")
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))


def _sender_main(target: str, url: str, sites: list[tuple[str, str]], args: dict, planned_start: float,
                 queue: mp.Queue, ready: mp.Queue, start: mp.Queue) -> None:
    """Plan every request, say so, wait for the common start, then send on time."""
    parsed = httpx.URL(url)
    if args["per_site"]:
        _allow_files(len(sites) + 256)
    planned = _plan(target, parsed.raw_path.decode(), parsed.port or 80, sites, args, planned_start)
    ready.put(len(planned))
    shift = start.get() - planned_start  # the bodies keep their planned times; a late start only shifts sending
    for item in planned:
        item.due += shift
    queue.put(asdict(asyncio.run(_fleet(target, url, sites, args, planned))))


# -- measuring a target process ----------------------------------------------------------------

@dataclass
class ProcessUsage:
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    rss_max_bytes: int = 0
    rss_tree_max_bytes: int = 0  # with the child processes (aggregator, judge)
    started_at: float = 0.0
    senders_cpu_seconds: float = 0.0
    machine_busy_seconds: float = 0.0  # every process on the machine, ours included

    @property
    def others_cores(self) -> float:
        """CPU used by processes that are neither the target nor the fleet (other people's work)."""
        rest = self.machine_busy_seconds - self.cpu_seconds - self.senders_cpu_seconds
        return max(0.0, rest / self.wall_seconds) if self.wall_seconds else 0.0

    @property
    def cores(self) -> float:
        return self.cpu_seconds / self.wall_seconds if self.wall_seconds else 0.0


def _machine_busy() -> float:
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0)


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    total = t.user + t.system
    for child in proc.children(recursive=True):
        try:
            c = child.cpu_times()
            total += c.user + c.system
        except psutil.NoSuchProcess:
            pass
    return total


def _tree_rss(proc: psutil.Process) -> int:
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def run_fleet(target: str, url: str, pid: int, sites: list[tuple[str, str]], args: argparse.Namespace,
              ) -> tuple[SenderResult, ProcessUsage]:
    proc = psutil.Process(pid)
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    ready: mp.Queue = ctx.Queue()
    starts: list[mp.Queue] = [ctx.Queue() for _ in range(args.senders)]
    planned_start = time.time() + 30.0
    settings = {"seconds": args.seconds, "interval": args.interval, "results": args.results,
                "connections": args.connections, "reconnect": args.reconnect,
                "per_site": args.connection_per_site}
    workers = [ctx.Process(target=_sender_main, args=(target, url, sites[i::args.senders], settings, planned_start,
                                                      queue, ready, starts[i]))
               for i in range(args.senders)]
    for w in workers:
        w.start()
    planned = sum(ready.get(timeout=1800) for _ in workers)
    start_at = time.time() + 1.0
    log(f"  {target}: {planned} requests planned; sending for {args.seconds:.0f}s")
    for q in starts:
        q.put(start_at)
    while time.time() < start_at:
        time.sleep(0.05)
    usage = ProcessUsage()
    senders = [psutil.Process(w.pid) for w in workers]
    cpu0, t0, busy0 = _cpu(proc), time.monotonic(), _machine_busy()
    usage.started_at = time.time()
    senders0 = sum(_cpu(p) for p in senders)
    shown = time.monotonic()
    while time.monotonic() - t0 < args.seconds:
        usage.rss_max_bytes = max(usage.rss_max_bytes, proc.memory_info().rss)
        usage.rss_tree_max_bytes = max(usage.rss_tree_max_bytes, _tree_rss(proc))
        time.sleep(0.5)
        if time.monotonic() - shown >= 10:
            log(f"  {target}: {time.monotonic() - t0:.0f}/{args.seconds}s, CPU "
                f"{(_cpu(proc) - cpu0) / (time.monotonic() - t0):.2f} cores, RSS {usage.rss_max_bytes / 2**20:.0f} MiB")
            shown = time.monotonic()
    usage.cpu_seconds, usage.wall_seconds = _cpu(proc) - cpu0, time.monotonic() - t0
    usage.senders_cpu_seconds = sum(_cpu(p) for p in senders) - senders0
    usage.machine_busy_seconds = _machine_busy() - busy0
    merged = SenderResult(planned=planned)
    for _ in workers:
        part = SenderResult(**queue.get(timeout=300))
        merged.latencies += part.latencies
        merged.started += part.started
        for name in ("sent", "ok_reports", "ok_results", "ok_values", "late"):
            setattr(merged, name, getattr(merged, name) + getattr(part, name))
        for status, n in part.statuses.items():
            merged.statuses[status] = merged.statuses.get(status, 0) + n
    for w in workers:
        w.join(60)
    return merged, usage


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarise(name: str, result: SenderResult, usage: ProcessUsage, args: argparse.Namespace) -> dict:
    window = args.seconds
    return {
        "target": name, "offered_reports_per_s": args.sites / args.interval,
        "offered_samples_per_s": args.sites / args.interval * args.results,
        "reports_per_s": result.ok_reports / window, "samples_per_s": result.ok_results / window,
        # of the reports the fleet planned (its random phases put a few more or fewer in the window than
        # sites / interval), the share acknowledged
        "acked_ratio": result.ok_reports / result.planned if result.planned else 0.0,
        "values_per_s": result.ok_values / window, "p50_ms": _quantile(result.latencies, 0.5) * 1000,
        "p99_ms": _quantile(result.latencies, 0.99) * 1000, "max_ms": max(result.latencies, default=0) * 1000,
        "cpu_cores": usage.cores, "rss_max_mib": usage.rss_max_bytes / 2**20,
        "rss_tree_max_mib": usage.rss_tree_max_bytes / 2**20, "statuses": result.statuses,
        "late_starts": result.late, "cpu_ms_per_report": usage.cpu_seconds * 1000 / max(1, result.ok_reports),
        "fleet_cores": usage.senders_cpu_seconds / usage.wall_seconds, "others_cores": usage.others_cores,
        "slowest_windows": _slowest_windows(result, usage.started_at),
    }


def _slowest_windows(result: SenderResult, origin: float, width: float = 5.0, shown: int = 8) -> list[dict]:
    """The ``width``-second stretches of the phase with the worst p99: when the tail happens (a pass?)."""
    windows: dict[int, list[float]] = {}
    for at, latency in zip(result.started, result.latencies, strict=True):
        windows.setdefault(int((at - origin) // width), []).append(latency)
    ranked = sorted(((_quantile(v, 0.99), k) for k, v in windows.items() if len(v) >= 20), reverse=True)
    return [{"from_s": k * width, "to_s": (k + 1) * width, "p99_ms": p99 * 1000} for p99, k in ranked[:shown]]


def print_row(row: dict) -> None:
    print(f"{row['target']:<11} offered {row['offered_reports_per_s']:6.0f} rep/s  sustained {row['reports_per_s']:6.0f} "
          f"rep/s = {row['samples_per_s']:7.0f} samples/s ({row['values_per_s']:7.0f} values/s)  "
          f"p50 {row['p50_ms']:6.1f} ms  p99 {row['p99_ms']:6.1f} ms  CPU {row['cpu_cores']:.2f} cores "
          f"({row['cpu_ms_per_report']:.2f} ms/report)  RSS {row['rss_max_mib']:.0f} MiB "
          f"(with children {row['rss_tree_max_mib']:.0f} MiB)  statuses {row['statuses']}  late {row['late_starts']}")
    worst = ", ".join(f"{w['from_s']:.0f}-{w['to_s']:.0f}s {w['p99_ms']:.0f} ms" for w in row["slowest_windows"])
    print(f"            slowest 5 s windows by p99: {worst}")
    print(f"{'':<11} fleet {row['fleet_cores']:.2f} cores; other processes on the machine {row['others_cores']:.2f} cores"
          + ("  (the machine was busy: figures are pessimistic)" if row["others_cores"] > 0.2 else ""))


# -- the collector under test -------------------------------------------------------------------

def _judge_benchmark():  # noqa: ANN202 - a module loaded by path (benchmarks/ is no package)
    import importlib.util

    spec = importlib.util.spec_from_file_location("judge_benchmark", ROOT / "benchmarks" / "judge.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fill_with_a_day(db: Path, args: argparse.Namespace) -> None:
    """benchmarks/judge.py's day of evidence, or a copy of ``--evidence-cache`` made within the hour."""
    db.parent.mkdir(parents=True, exist_ok=True)
    cache = Path(args.evidence_cache) if args.evidence_cache else None
    fresh = cache is not None and cache.exists() and time.time() - cache.stat().st_mtime < EVIDENCE_CACHE_AGE_S
    if fresh:
        log(f"copying the day of evidence from {cache}")
        shutil.copy(cache, db)
        return
    log("filling the store with a day of the judged checks' evidence first (benchmarks/judge.py's fleet)")
    _judge_benchmark().build(db, args.sites, time.time(), 1)
    if args.evidence_days > 1:
        _extend_to_days(db, args.evidence_days)
    if cache is not None:
        shutil.copy(db, cache)


def _extend_to_days(db: Path, days: int) -> None:
    """Every check's summaries for every hour of ``days`` days: the newest full hour, copied back in time.

    benchmarks/judge.py writes a day of the checks the criteria read and two hours of the rest, all the
    judge needs; a store at the end of its retention holds 8 days of all of them (10,000 sites: 96M rows).
    Copies are made in SQL, an hour at a time, with the judge's backfill log off (its cursor is unset).
    """
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA synchronous = OFF")
        newest = conn.execute("SELECT MAX(bucket_start) FROM summaries").fetchone()[0]
        template = newest - 3600.0  # the newest full hour: every check of every site has a row there
        columns = [r[1] for r in conn.execute("PRAGMA table_info(summaries)")]
        rest = ", ".join(c for c in columns if c != "bucket_start")
        hours = days * 24
        for h in range(2, hours):
            with conn:
                conn.execute(f"INSERT OR IGNORE INTO summaries (bucket_start, {rest}) SELECT ?, {rest} "
                             "FROM summaries WHERE bucket_start = ?", (newest - h * 3600.0, template))
            if (h + 1) % 24 == 0:
                log(f"  evidence for {(h + 1) // 24}/{days} days of every check")
        total = conn.execute("SELECT COUNT(*) FROM summaries").fetchone()[0]
    finally:
        conn.close()
    log(f"the store holds {total:,} summary rows ({db.stat().st_size / 2**30:.1f} GiB)")


def _add_an_expired_hour(db: Path) -> float:
    """A copy of the newest hour, dated just past the 8-day retention: the first prune deletes it in the phase.

    In production an hour of every site's checks (10,000 x 50 rows) expires every hour.
    """
    conn = sqlite3.connect(db)
    try:
        newest = conn.execute("SELECT MAX(bucket_start) FROM summaries").fetchone()[0]
        expired = newest - (8 * 24 + 2) * 3600.0
        columns = [r[1] for r in conn.execute("PRAGMA table_info(summaries)")]
        rest = ", ".join(c for c in columns if c != "bucket_start")
        with conn:
            n = conn.execute(f"INSERT INTO summaries (bucket_start, {rest}) SELECT ?, {rest} FROM summaries "
                             "WHERE bucket_start = ?", (expired, newest)).rowcount
    finally:
        conn.close()
    log(f"added {n} summary rows past the retention (the aggregator's first prune deletes them)")
    return expired


def _rows_in_bucket(db: Path, bucket: float) -> int:
    """Summary rows left in ``bucket``, read while the collector runs (a read-only WAL reader)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM summaries WHERE bucket_start = ?", (bucket,)).fetchone()[0])
    finally:
        conn.close()


def prepare_collector(work: Path, args: argparse.Namespace) -> tuple[Path, list[tuple[str, str]]]:
    data = work / "collector-data"
    if args.evidence_day:
        _fill_with_a_day(data / "collector.db", args)
        if args.expired_hour:
            args.expired_bucket = _add_an_expired_hour(data / "collector.db")
    store = SQLiteStore(data / "collector.db", synchronous=args.sqlite_sync)
    store.migrate()
    sites = generate_sites(args.sites, seed=1)
    store.upsert_sites(sites)
    tokens: list[tuple[str, str]] = []
    records = []
    for site in sites:
        text, record = new_token(site.id)
        tokens.append((site.id, text))
        records.append(record)
    with ThreadPoolExecutor(32) as pool:  # group commit batches these
        list(pool.map(store.add_token, records))
    store.close()
    config = work / "collector.yaml"
    tls = ""
    if args.tls:
        cert, key = self_signed_cert(work)
        tls = f"tls: {{cert_file: {cert}, key_file: {key}}}\n"
    config.write_text(f"listen: 127.0.0.1:{args.port}\ndata_dir: {data}\nlog_level: warning\n{tls}"
                      f"database: {{sqlite_synchronous: {args.sqlite_sync}}}\n"
                      f"aggregator: {{interval: {args.aggregate_every}}}\nauth: {{cache_ttl: 1h}}\n"
                      f"judge: {{enabled: {'true' if args.judge == 'on' else 'false'}}}\n")
    return config, tokens


def start_process(argv: list[str], log_path: Path, ready_url: str) -> subprocess.Popen:
    out = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{argv[0]} exited: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(ready_url, timeout=2, verify=False).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{argv[0]} did not become ready: {log_path.read_text()[-2000:]}")


def stop_process(proc: subprocess.Popen, timeout: float = 120) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _writer_figures(metrics: str) -> dict[str, float]:
    """The server's writer counters from its /metrics text (``commune_collector_store_write_*``)."""
    prefix = "commune_collector_store_write_"
    out = {}
    for line in metrics.splitlines():
        if line.startswith(prefix) and line.split()[0].endswith("_total"):
            name, value = line.split()
            out[name[len(prefix):-len("_total")]] = float(value)
    return out


def disk_per_site_day(db_path: Path, sites: int, checks: int) -> dict:
    """Bytes per summary row measured, projected to a site-day (checks x 24 hourly rows)."""
    db = sqlite3.connect(db_path)
    try:
        sizes = dict(db.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall())
        rows = db.execute("SELECT COUNT(*) FROM summaries").fetchone()[0]
        latest = db.execute("SELECT COUNT(*) FROM latest").fetchone()[0]
    finally:
        db.close()
    per_row = sizes.get("summaries", 0) / rows if rows else float("nan")
    return {"summary_rows": rows, "summary_bytes_per_row": per_row,
            "site_day_bytes": per_row * checks * 24,
            "retained_8d_bytes_10k_sites": per_row * checks * 24 * 8 * 10_000,
            "latest_bytes_per_site": sizes.get("latest", 0) / max(1, latest) * checks,
            "report_ranges_bytes": sizes.get("report_ranges", 0), "file_bytes": db_path.stat().st_size}


# -- main --------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between a site's reports")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each measured phase")
    parser.add_argument("--results", type=int, default=50, help="results (samples) per report")
    parser.add_argument("--senders", type=int, default=2, help="sender processes")
    parser.add_argument("--connections", type=int, default=64, help="connections per sender process")
    parser.add_argument("--port", type=int, default=18470)
    parser.add_argument("--prom-port", type=int, default=19490)
    parser.add_argument("--sqlite-sync", choices=["FULL", "NORMAL"], default="FULL")
    parser.add_argument("--aggregate-every", default="1m", help="collector aggregator.interval")
    parser.add_argument("--judge", choices=["on", "off"], default="on",
                        help="run the judge in the collector, as production does (default on)")
    parser.add_argument("--no-prometheus", action="store_true", help="skip the Prometheus anchor")
    parser.add_argument("--evidence-day", action="store_true",
                        help="start from a store holding a day of evidence (as benchmarks/judge.py builds it), so "
                             "the judge makes production-sized passes during the phase")
    parser.add_argument("--evidence-days", type=int, default=1, metavar="N",
                        help="with --evidence-day: every check's hourly summaries for N days (8: a store at the end "
                             "of its retention: 96M rows, 33 GiB at 10,000 sites, 10 minutes to fill) instead of the judged "
                             "checks' day")
    parser.add_argument("--expired-hour", action="store_true",
                        help="with --evidence-day: add an hour of every site's checks past the 8-day retention, "
                             "so the aggregator's first prune (during the phase) deletes it as production does "
                             "every hour")
    parser.add_argument("--evidence-cache", metavar="FILE",
                        help="with --evidence-day: keep the filled store in FILE and reuse it while it is less "
                             "than an hour old (filling takes minutes; evidence is dated from when it was made)")
    parser.add_argument("--reconnect", action="store_true",
                        help="a new connection for every report, as agents pushed before their keep_alive (their "
                             "5 s idle connection had expired by the next push 30 s later), instead of the fleet's "
                             "kept-alive pool")
    parser.add_argument("--connection-per-site", action="store_true",
                        help="each site keeps its own connection between its pushes, as agents do with their "
                             "keep_alive (10,000 sites: 10,000 mostly idle connections), instead of a busy pool")
    parser.add_argument("--tls", action="store_true",
                        help="the collector serves HTTPS itself (tls: cert_file/key_file, a throwaway EC P-256 "
                             "certificate); with --reconnect, a full TLS handshake per report")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    if args.evidence_days != 1 and not args.evidence_day:
        parser.error("--evidence-days needs --evidence-day")
    if not 1 <= args.evidence_days <= 8:
        parser.error("--evidence-days: 1 to 8 (the retention)")

    if args.connection_per_site:
        _allow_files(args.sites + 1024)  # the collector (a child) holds one connection per site
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    rows: list[dict] = []
    figures: dict = {"args": vars(args), "machine": {"cpus": os.cpu_count()}}
    try:
        log(f"preparing {args.sites} sites and tokens in {work}")
        config, tokens = prepare_collector(work, args)
        url = f"{'https' if args.tls else 'http'}://127.0.0.1:{args.port}"
        collector = start_process([str(VENV_BIN / "commune-collector"), "serve", "--config", str(config)],
                                  work / "collector.log", f"{url}/readyz")
        log(f"collector pid {collector.pid}; {args.senders} senders push for {args.seconds:.0f}s")
        try:
            result, usage = run_fleet("collector", f"{url}/api/v1/reports", collector.pid, tokens, args)
            scraper = subprocess.run([str(VENV_BIN / "commune-collector"), "operator", "create", "bench", "--role",
                                      "metrics", "--config", str(config)], capture_output=True, text=True, check=True)
            metrics = httpx.get(f"{url}/metrics", timeout=30, verify=False,  # /metrics needs a scraper's token
                                headers={"Authorization": f"Bearer {scraper.stdout.strip()}"}).text
            if args.expired_hour:  # did the prune land inside the phase? (the way out prunes too)
                figures["expired_rows_left_at_end"] = _rows_in_bucket(work / "collector-data" / "collector.db",
                                                                      args.expired_bucket)
        finally:
            log("stopping the collector (it folds the journal on the way out)")
            stop_process(collector)
        rows.append(summarise("collector", result, usage, args))
        figures["collector_backlog_at_end"] = [ln for ln in metrics.splitlines()
                                               if ln.startswith("commune_collector_journal_backlog_reports ")]
        figures["writer"] = _writer_figures(metrics)
        figures["disk"] = disk_per_site_day(work / "collector-data" / "collector.db", args.sites, args.results)

        if not args.no_prometheus:
            prom_bin = shutil.which("prometheus")
            if prom_bin is None:
                log("prometheus not installed (apt-get install prometheus): anchor skipped")
            else:
                (work / "prometheus.yml").write_text("global: {scrape_interval: 1m}\n")
                purl = f"http://127.0.0.1:{args.prom_port}"
                prom = start_process([prom_bin, f"--config.file={work / 'prometheus.yml'}",
                                      f"--storage.tsdb.path={work / 'tsdb'}",
                                      f"--web.listen-address=127.0.0.1:{args.prom_port}",
                                      "--web.enable-remote-write-receiver", "--log.level=warn"],
                                     work / "prometheus.log", f"{purl}/-/ready")
                log(f"prometheus pid {prom.pid}: the same fleet through remote write")
                try:
                    presult, pusage = run_fleet("prometheus", f"{purl}/api/v1/write", prom.pid, tokens, args)
                finally:
                    stop_process(prom)
                rows.append(summarise("prometheus", presult, pusage, args))
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    print()
    for row in rows:
        print_row(row)
    disk = figures["disk"]
    print(f"disk: {disk['summary_bytes_per_row']:.0f} B per hourly summary row -> "
          f"{disk['site_day_bytes'] / 1024:.0f} KiB per site-day ({args.results} checks x 24 h); "
          f"8 days x 10,000 sites = {disk['retained_8d_bytes_10k_sites'] / 2**30:.1f} GiB; "
          f"latest {disk['latest_bytes_per_site'] / 1024:.1f} KiB per site")
    backlog = figures.get("collector_backlog_at_end") or []
    if backlog:
        print(f"journal at the end of the phase: {backlog[0].split()[-1]} reports not yet folded "
              f"(one aggregator interval's worth is normal; more means folding falls behind)")
    writer = figures["writer"]
    if writer.get("groups"):
        print(f"server's writer: {writer['groups']:.0f} commits of {writer['jobs'] / writer['groups']:.1f} jobs; "
              f"waited {writer['lock_wait_seconds']:.1f} s for the write lock (aggregator, judge), "
              f"held it {writer['held_seconds']:.1f} s")
    if len(rows) == 2 and rows[1]["cpu_ms_per_report"]:
        ratio = rows[0]["cpu_ms_per_report"] / rows[1]["cpu_ms_per_report"]
        print(f"anchor: the collector spends {ratio:.2f}x Prometheus' CPU per report "
              f"({rows[0]['cpu_ms_per_report']:.2f} vs {rows[1]['cpu_ms_per_report']:.2f} ms)")
        figures["anchor_cpu_ratio"] = ratio
    if "expired_rows_left_at_end" in figures:
        left = figures["expired_rows_left_at_end"]
        print(f"expired hour: {'pruned during the phase' if left == 0 else f'{left} rows still there at its end'}")
    goal = rows[0]
    met = goal["acked_ratio"] >= 0.98 and goal["p99_ms"] < 250
    print(f"goal ({args.sites} sites every {args.interval:.0f}s, p99 < 250 ms): {'MET' if met else 'NOT MET'}")
    figures["rows"] = rows
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
