#!/usr/bin/env python3
"""How long one judge pass takes for 10,000 sites, and how much memory the judge needs.

The collector's real SQLite store is filled with a realistic fleet:
10,000 sites (generated inventory over the 34 provinces), 50 checks each in
the current and previous hour (what every site reports), the ~7 checks the
criteria read for the 24 hours before (the older hours of the other checks
change nothing the judge reads but would multiply generation time and disk),
a ``latest`` row per check, and 35 days of verdict history (state, 4
transitions per site, daily roll-up rows). Then, in a fresh child process so
its peak RSS is the judge's own:

- packing: what the running judge does between passes, once an hour
  (judge/packs.py): every closed hour of the window packed, timed an hour at
  a time (a store from an earlier run has lost some packs to the backfill
  pass below: they are packed again first);
- cold pass: the first after a start, reading 24 h of evidence (from the
  packs; ``--no-packs``: from the rows, with the cold helper);
- steady passes: the aggregator has folded another minute into the current
  bucket of every check of every site (the normal case, every 30 s);
- rollover pass: the first pass in a new hour;
- backfill pass: 500 sites' spooled evidence folded into 20 old buckets each.

Usage: python benchmarks/judge.py [--sites 10000] [--data-dir DIR] [--keep]
Goal (docs/benchmarks.md, "Judge"): under 2 s per pass, under 1 GB peak RSS.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from commune_collector.evidence import BUCKET_SECONDS  # noqa: E402
from commune_collector.generate import generate_sites  # noqa: E402
from commune_collector.judge import Judge, load_criteria  # noqa: E402
from commune_collector.judge.persist import StateRow, Transition  # noqa: E402
from commune_collector.runtime.judge_process import PassReceiver, PassSender, decode  # noqa: E402
from commune_collector.store.judge_evidence import StoreEvidence  # noqa: E402
from commune_collector.store.judge_helper import ColdHelper  # noqa: E402
from commune_collector.store.sql import SQL_SUMMARY_UPSERT, _summary_row  # noqa: E402
from commune_collector.store.sqlite import SQLiteStore  # noqa: E402
from commune_collector.store.verdicts import SqlVerdictStore  # noqa: E402
from testsupport.synth import RTT_AVG, fast_bucket  # noqa: E402

H = BUCKET_SECONDS
CHECKS_PER_SITE = 50
HISTORY_HOURS = 26

ICMP_VALUES = {RTT_AVG: (0.025, 0.01), 'icmp_rtt_seconds{stat="min"}': (0.02, 0.005),
               'icmp_rtt_seconds{stat="max"}': (0.04, 0.02), 'icmp_rtt_seconds{stat="stddev"}': (0.003, 0.002),
               "icmp_jitter_seconds": (0.003, 0.002), "icmp_loss_ratio": (0.002, 0.002),
               "icmp_packets_sent": (5, 0), "icmp_packets_received": (5, 0)}
UPS_VALUES = {"power_on_battery": (0.0, 0.0), "power_battery_runtime_seconds": (2400.0, 100.0),
              "power_battery_charge_ratio": (1.0, 0.0), "power_input_voltage_volts": (228.0, 3.0),
              "power_load_ratio": (0.3, 0.05)}


def judged_checks() -> list[tuple[str, str, dict[str, str], dict]]:
    """The checks the default criteria read: (check id, probe, labels, values)."""
    out = [("link/fiber/icmp/provincial-dc", "icmp", {"link": "fiber", "role": "primary", "target": "provincial-dc"},
            ICMP_VALUES),
           ("link/lte/icmp/provincial-dc", "icmp", {"link": "lte", "role": "backup", "target": "provincial-dc"},
            ICMP_VALUES),
           ("power/ups", "ups_nut", {"ups": "ups", "source": "nut", "target": "ups"}, UPS_VALUES)]
    for device, role in (("video-conference", "video_conference"), ("camera", "camera"), ("pc-1", "pc"),
                         ("kiosk", "kiosk")):
        out.append((f"device/{device}/icmp", "icmp",
                    {"device": device, "kind": "ping", "required": "true", "target": device, "role": role},
                    ICMP_VALUES))
    return out


def other_checks() -> list[tuple[str, str, dict[str, str], dict]]:
    """The rest of a site's ~50 checks (per-target TCP/HTTP/DNS, optional devices, host)."""
    out = []
    for link, role in (("fiber", "primary"), ("lte", "backup"), ("adsl", "other"), ("fiber2", "other"),
                       ("vsat", "other")):
        for probe in ("tcp", "http", "dns"):
            for target in ("provincial-dc", "national-dc"):
                out.append((f"link/{link}/{probe}/{target}", probe, {"link": link, "role": role, "target": target},
                            {f"{probe}_duration_seconds": (0.05, 0.02)}))
    out.append(("host", "host", {"target": "host"}, {"host_cpu_usage_ratio": (0.2, 0.1),
                                                     "host_memory_used_ratio": (0.5, 0.1)}))
    n = 0
    while len(out) + len(judged_checks()) < CHECKS_PER_SITE:
        n += 1
        out.append((f"device/printer-{n}/snmp_system", "snmp_system",
                    {"device": f"printer-{n}", "kind": "printer", "required": "false", "target": f"printer-{n}"},
                    {"snmp_uptime_seconds": (86400.0, 0.0)}))
    return out


def _labels_text(labels: dict[str, str]) -> str:
    """As ingest writes them (msgspec, compact): the same text the summaries carry."""
    return msgspec.json.encode(labels).decode()


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def build(db_path: Path, n_sites: int, now: float, seed: int) -> None:
    """Fill a fresh store: inventory, latest, site_state, summaries, verdict history."""
    store = SQLiteStore(db_path, synchronous="NORMAL")
    store.migrate()
    sites = generate_sites(count=n_sites, seed=seed)
    store.upsert_sites(sites)
    store.close()
    rng = random.Random(seed)
    current = now // H * H
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    judged, others = judged_checks(), other_checks()
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO site_state (site, instance, agent_version, last_seq, last_report_at, last_sent_at, "
                     "clock_offset_s, clock_flagged) VALUES (?, 'bench', 'bench', 1, ?, ?, 0, 0)",
                     [(s.id, now - 10, now - 10) for s in sites])
    conn.executemany("INSERT INTO latest VALUES (?, ?, ?, ?, 1, 0.01, '', ?, '{}')",
                     [(s.id, c, p, now - 10, _labels_text(labels)) for s in sites
                      for c, p, labels, _ in judged + others])
    conn.execute("COMMIT")
    for n, site in enumerate(sites):
        rows = []
        for check, probe, labels, values in judged:
            for h in range(HISTORY_HOURS):
                bucket = current - h * H
                rounds = 120 if h else int((now - current) // 30) + 1
                failed = 1 if rng.random() < 0.05 else 0
                rows.append(_summary_row(fast_bucket(site.id, check, probe, labels, bucket, rounds, failed, values,
                                                     rng)))
        for check, probe, labels, values in others:
            for h in (0, 1):
                rounds = 120 if h else int((now - current) // 30) + 1
                rows.append(_summary_row(fast_bucket(site.id, check, probe, labels, current - h * H, rounds, 0,
                                                     values, rng)))
        conn.execute("BEGIN")
        conn.executemany(SQL_SUMMARY_UPSERT, rows)
        conn.execute("COMMIT")
        if (n + 1) % 1000 == 0:
            progress(f"evidence for {n + 1}/{len(sites)} sites")
    conn.close()
    _history(db_path, sites, now, rng)


def _history(db_path: Path, sites: list, now: float, rng: random.Random) -> None:
    """35 days of verdict history: states, 4 transitions per site, a roll-up row per day and province."""
    store = SQLiteStore(db_path, synchronous="NORMAL")
    verdicts = SqlVerdictStore.for_store(store)
    items = list(load_criteria(ROOT / "config" / "criteria.yaml").items)
    states, transitions = [], []
    for s in sites:
        t0 = now - 35 * 86400 + rng.uniform(0, 86400)
        states.append(StateRow(s.id, 2, t0 + 20 * 86400, t0 + 19 * 86400, 2,
                               {item: (2, t0 + 20 * 86400, t0 + 19 * 86400, 2) for item in items}))
        for k, (a, b) in enumerate((("unknown", "not_completed"), ("not_completed", "completed"),
                                    ("completed", "not_completed"), ("not_completed", "completed"))):
            transitions.append(Transition(s.id, s.province, t0 + k * 5 * 86400, a, b, k == 2,
                                          ["primary-loss"] if k == 2 else [], "loss 3% over 24h" if k == 2 else ""))
    verdicts.save_states(states, now)
    verdicts.add_transitions(transitions)
    provinces = sorted({s.province for s in sites})
    for d in range(35, 0, -1):
        day = time.strftime("%Y-%m-%d", time.gmtime(now - d * 86400))
        counts = {"total": 300, "completed": 300 - 8 * d, "not_completed": 8 * d, "unknown": 0,
                  "items": {i: {"completed": 300 - 8 * d, "done": d < 10} for i in items}}
        verdicts.save_history(day, [(p, counts) for p in provinces] + [("", counts)], now)
    verdicts.close()
    store.close()


def reset_peak_rss() -> None:
    """Start a new peak: VmHWM falls back to the current RSS (Linux ``clear_refs`` 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:  # not Linux, or not allowed: the peak then spans the passes before too
        pass


def helper_peak_rss_mib() -> float:
    """The peak RSS of the cold pass's helper process (reaped by then), 0 without one."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def peak_rss_mib() -> float:
    """The process's peak RSS since the last reset (VmHWM), else since it started (getrusage)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prepare_packs(db_path: Path, now: float) -> dict:
    """Runs in a fresh process: a judge that has judged (one pass), then packing hour by hour as the
    collector's judge does between passes; timed per hour, and the packs' size on disk."""
    store = SQLiteStore(db_path, synchronous="NORMAL")
    store.migrate()  # a store an earlier version built: the packs' table and triggers
    judge = Judge(load_criteria(ROOT / "config" / "criteria.yaml"), StoreEvidence(store),
                  SqlVerdictStore.for_store(store), clock=lambda: now)
    judge.run_pass(now)
    hours: list[tuple[float, float]] = []
    while True:
        started, cpu = time.perf_counter(), time.process_time()
        if not judge.pack_hours(budget=1):
            break
        hours.append((time.perf_counter() - started, time.process_time() - cpu))
        progress(f"packed an hour in {hours[-1][0]:.2f}s wall, {hours[-1][1]:.2f}s CPU")
    judge.close()
    conn = sqlite3.connect(db_path)
    packs, size, buckets = conn.execute("SELECT COUNT(*), COALESCE(SUM(length(body)), 0), "
                                        "COUNT(DISTINCT bucket_start) FROM summary_packs").fetchone()
    conn.close()
    return {"pack_hours": hours, "packs": packs, "pack_bytes": size, "packed_hours": buckets}


def measure(db_path: Path, now: float, helper: bool, packs: bool = True) -> dict:
    """Runs in a fresh process: every pass kind, timed, then peak RSS."""
    store = SQLiteStore(db_path, synchronous="NORMAL")
    config = load_criteria(ROOT / "config" / "criteria.yaml")
    checkpoint = db_path.with_name("judge-evidence.npz")
    checkpoint.unlink(missing_ok=True)
    source = StoreEvidence(store)
    source.use_packs = packs
    if helper:  # as the collector does (judge.cold_helper): the cold pass shares its reading
        source.helper = ColdHelper(config, db_path.parent)
    judge = Judge(config, source, SqlVerdictStore.for_store(store), clock=lambda: now,
                  checkpoint=checkpoint, checkpoint_interval=1e9)
    out: dict = {"phases": {}}

    def timed(name: str, at: float) -> None:
        reset_peak_rss()
        started, cpu = time.perf_counter(), time.process_time()
        judge.run_pass(at)
        took, cpu = time.perf_counter() - started, time.process_time() - cpu
        rss = peak_rss_mib()
        out.setdefault("rss", {})[name] = max(out.get("rss", {}).get(name, 0.0), rss)
        out.setdefault(name, []).append(took)
        out.setdefault(f"{name}_cpu", []).append(cpu)
        out["phases"][name] = {k: round(v, 3) for k, v in judge.last_stats.seconds.items()}
        out.setdefault("buckets", {})[name] = judge.last_stats.buckets_read
        progress(f"{name} pass: {took:.2f}s wall, {cpu:.2f}s CPU, peak RSS {rss:.0f} MiB "
                 f"({judge.last_stats.buckets_read} buckets read)")

    current = now // H * H
    timed("cold", now)
    out["helper_rss"] = helper_peak_rss_mib()
    snap = judge.snapshot
    assert snap is not None
    out["states"] = {s: int((snap.track.state == code).sum()) for code, s in enumerate(("unknown", "nc", "c"))}
    conn = sqlite3.connect(db_path, timeout=30)
    at = now
    for _ in range(5):
        at += 30
        _fold_a_minute(conn, current, at)
        timed("steady", at)
    out["handover"] = handover(judge)
    at = current + H + 60
    conn.execute("INSERT OR REPLACE INTO summaries SELECT bucket_start + ?, site, check_id, probe, labels, 2, 0, ?, ?, "
                 "'', values_json FROM summaries WHERE bucket_start = ?", (H, at - 60, at, current))
    conn.execute("UPDATE site_state SET last_report_at = ?, last_sent_at = ?", (at, at))
    conn.commit()
    timed("rollover", at)
    at += 30
    _fold_a_minute(conn, current + H, at)
    timed("steady", at)
    sites = [r[0] for r in conn.execute("SELECT id FROM sites ORDER BY id LIMIT 500")]
    marks = ",".join("?" * len(sites))
    conn.execute(f"UPDATE summaries SET rounds_ok = rounds_ok + 1 WHERE site IN ({marks}) AND bucket_start < ? "
                 "AND bucket_start >= ?", [*sites, current - H, current - 21 * H])
    conn.commit()
    at += 30
    timed("backfill", at)
    conn.close()
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["matrix_mb"] = judge.matrix.nbytes() / 2**20
    out["matrix_rows"] = judge.matrix.rows
    started = time.perf_counter()
    judge.close()  # saves the checkpoint a restart starts from
    out["checkpoint_save_s"] = time.perf_counter() - started
    out["checkpoint_mb"] = checkpoint.stat().st_size / 2**20
    out["last_at"] = at
    return out


def handover(judge: Judge) -> dict:
    """What the server pays per pass with the judge in its own process (``commune_collector.runtime.judge_process``):
    the message's size, the child's time to encode it, the server's to decode it and rebuild the
    snapshot; the first message after a start carries criteria, inventory and every check id."""
    sender, receiver = PassSender(None), PassReceiver()  # type: ignore[arg-type]
    out = {}
    for name in ("first", "steady"):
        started = time.perf_counter()
        data = sender.encode(judge, judge.snapshot, [])
        encoded = time.perf_counter()
        receiver.snapshot(decode(data))
        out[name] = {"bytes": len(data), "encode_s": encoded - started, "decode_s": time.perf_counter() - encoded}
        progress(f"hand-over, {name} message: {len(data) / 2**20:.1f} MiB, encoded in {out[name]['encode_s']:.3f}s, "
                 f"decoded in {out[name]['decode_s']:.3f}s")
    return out


def measure_restart(db_path: Path, at: float) -> dict:
    """A restarted collector: the checkpoint, plus what the aggregator folded meanwhile."""
    store = SQLiteStore(db_path, synchronous="NORMAL")
    config = load_criteria(ROOT / "config" / "criteria.yaml")
    conn = sqlite3.connect(db_path, timeout=30)
    _fold_a_minute(conn, at // H * H, at + 60)
    conn.close()
    judge = Judge(config, StoreEvidence(store), SqlVerdictStore.for_store(store), clock=lambda: at + 90,
                  checkpoint=db_path.with_name("judge-evidence.npz"), checkpoint_interval=1e9)
    reset_peak_rss()
    started, cpu = time.perf_counter(), time.process_time()
    snapshot = judge.run_pass(at + 90)
    rss = peak_rss_mib()
    out = {"restart": [time.perf_counter() - started], "restart_cpu": [time.process_time() - cpu],
           "phases": {"restart": {k: round(v, 3) for k, v in judge.last_stats.seconds.items()}},
           "restart_buckets": judge.last_stats.buckets_read,
           "restart_states": {s: int((snapshot.track.state == code).sum())
                              for code, s in enumerate(("unknown", "nc", "c"))},
           "restart_rss_mb": rss}
    progress(f"restart pass: {out['restart'][0]:.2f}s wall, {out['restart_cpu'][0]:.2f}s CPU, peak RSS {rss:.0f} MiB "
             f"({out['restart_buckets']} buckets read)")
    return out


def _fold_a_minute(conn: sqlite3.Connection, bucket: float, at: float) -> None:
    """What the aggregator does to the bucket in progress every minute: two more rounds per check, from
    reports every site's agent delivered (a fleet that stopped reporting an hour ago is another benchmark)."""
    conn.execute("UPDATE summaries SET rounds_ok = rounds_ok + 2, last_ts = ? WHERE bucket_start = ?", (at, bucket))
    conn.execute("UPDATE site_state SET last_report_at = ?, last_sent_at = ?", (at, at))
    conn.commit()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--sites", type=int, default=10_000, help="sites in the fleet (default 10000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, help="where the SQLite file goes (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--reuse", action="store_true", help="measure the store --data-dir already holds")
    parser.add_argument("--no-cold-helper", action="store_true",
                        help="the cold pass without its helper process (judge.cold_helper: false)")
    parser.add_argument("--no-packs", action="store_true",
                        help="the cold pass reads rows, not hour packs (judge.hour_packs: false)")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--pack", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--restart", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--now", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.now, not args.no_cold_helper, not args.no_packs)))
        return 0
    if args.pack:
        print(json.dumps(prepare_packs(args.pack, args.now)))
        return 0
    if args.restart:
        print(json.dumps(measure_restart(args.restart, args.now)))
        return 0
    workdir = args.data_dir or Path(tempfile.mkdtemp(prefix="bench-judge-"))
    workdir.mkdir(parents=True, exist_ok=True)
    db, meta = workdir / "collector.db", workdir / "bench.json"
    try:
        if args.reuse and meta.exists():
            now, sites = json.loads(meta.read_text())
            progress(f"reusing the {sites}-site store in {db}")
        else:
            now, sites = time.time() // H * H + 40 * 60, args.sites  # 40 minutes into the hour
            db.unlink(missing_ok=True)
            started = time.perf_counter()
            progress(f"building a {sites}-site store in {db}")
            build(db, sites, now, args.seed)
            meta.write_text(json.dumps([now, sites]))
            progress(f"built in {time.perf_counter() - started:.0f}s ({db.stat().st_size / 2**20:.0f} MiB)")
        packing = {} if args.no_packs else _child("--pack", db, now)
        result = _child("--measure", db, now, *(["--no-cold-helper"] if args.no_cold_helper else []),
                        *(["--no-packs"] if args.no_packs else []))
        result.update(packing)
        restart = _child("--restart", db, result["last_at"])
        result["phases"].update(restart.pop("phases"))
        result.update(restart)
        report(sites, result)
    finally:
        if not args.keep and not args.data_dir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _child(flag: str, db: Path, at: float, *extra: str) -> dict:
    """Run one measurement in a fresh process (its peak RSS is then its own) and read its JSON."""
    child = subprocess.run([sys.executable, __file__, flag, str(db), "--now", repr(at), *extra], stdout=subprocess.PIPE,
                           text=True, check=True)
    return json.loads(child.stdout.strip().splitlines()[-1])


def report(sites: int, r: dict) -> None:
    steady = r["steady"]
    print(f"\njudge benchmark: {sites} sites, {CHECKS_PER_SITE} checks each, "
          f"{r['matrix_rows']} checks judged, 35 days of verdict history")
    cpu, rss = r["steady_cpu"], r["rss"]
    if r.get("pack_hours"):
        took = [h[0] for h in r["pack_hours"]]
        print(f"  packing a closed hour (between passes):    median {statistics.median(took):.2f} s, "
              f"max {max(took):.2f} s wall ({len(took)} hours packed now); {r['packs']} packs of "
              f"{r['packed_hours']} hours, {r['pack_bytes'] / 2**20:.0f} MiB "
              f"({r['pack_bytes'] / max(r['packed_hours'], 1) * 24 / sites / 1024:.0f} KiB per site-day)")
    print(f"  cold pass (first after start, 24h read):   {r['cold'][0]:.2f} s wall, {r['cold_cpu'][0]:.2f} s CPU, "
          f"peak RSS {rss['cold']:.0f} MiB" + (f" (its helper process: {r['helper_rss']:.0f} MiB)"
                                                if r.get("helper_rss") else " (no helper process)"))
    print(f"  steady pass (median of {len(steady)}, max):       {statistics.median(steady):.2f} s, "
          f"{max(steady):.2f} s wall; CPU {statistics.median(cpu):.2f} s, {max(cpu):.2f} s; "
          f"peak RSS {rss['steady']:.0f} MiB")
    print(f"  hour rollover pass:                        {r['rollover'][0]:.2f} s wall, "
          f"{r['rollover_cpu'][0]:.2f} s CPU, peak RSS {rss['rollover']:.0f} MiB")
    print(f"  backfill pass (500 sites x 20 buckets):    {r['backfill'][0]:.2f} s wall, "
          f"{r['backfill_cpu'][0]:.2f} s CPU, peak RSS {rss['backfill']:.0f} MiB")
    print(f"  restart pass (checkpoint + changes):       {r['restart'][0]:.2f} s wall, "
          f"{r['restart_cpu'][0]:.2f} s CPU, peak RSS {r['restart_rss_mb']:.0f} MiB")
    print(f"  checkpoint: {r['checkpoint_mb']:.0f} MiB, saved in {r['checkpoint_save_s']:.2f} s")
    for name, h in r["handover"].items():
        print(f"  hand-over to the server, {name} message: {h['bytes'] / 2**20:.1f} MiB; child encodes in "
              f"{h['encode_s']:.3f} s, server decodes in {h['decode_s']:.3f} s")
    print(f"  peak RSS of the judging process, all passes: {r['peak_rss_mb']:.0f} MiB "
          f"(evidence matrix {r['matrix_mb']:.0f} MiB)")
    print(f"  verdicts after the cold pass:              {r['states']}")
    print(f"  verdicts after the restart:                {r['restart_states']}")
    for name, phases in r["phases"].items():
        print(f"  phases of the last {name} pass: {phases}")


if __name__ == "__main__":
    raise SystemExit(main())
