#!/usr/bin/env python3
"""What ``commune-collector rollout start`` costs with a national inventory, and how soon the collector serves it.

A real store (SQLite in a temp dir, or ``--postgres``: a throwaway PostgreSQL
on loopback from testsupport) gets a generated inventory of ``--sites``
communes (``sites generate`` + ``sites import``) and the shipped agent profile
as ``fleet.profile``; a real ``commune-collector serve`` runs on it. Then, as
an operator does, ``commune-collector rollout start --profile candidate.yaml
--percent 25`` runs as its own process. The candidate adds a DNS check to
every site's fiber link, so every site's config changes: the start renders
every site with the old and the new profile (the worst case). Printed: the
command's wall time, CPU (user+sys) and peak RSS; then how long after it
returned the collector served the candidate to a canary site
(``GET /api/v1/agent-config`` with that site's token; bounded by
``--check-every``, the collector's ``fleet.rollout.check_every``); then the
wall time of ``rollout status`` and ``rollout rollback``.

    .venv/bin/python benchmarks/rollout.py --sites 3321
    .venv/bin/python benchmarks/rollout.py --sites 10000 --postgres
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from commune_collector.fleet.rollout import is_canary  # noqa: E402
from commune_collector.generate import generate_sites  # noqa: E402
from testsupport.collector import CollectorProcess  # noqa: E402
from testsupport.peers._base import wait_until  # noqa: E402

CLI = str(Path(sys.executable).parent / "commune-collector")
FIBER_TARGETS = "      - {probe: tcp, name: collector-https, host: \"{{ dc_host }}\", port: 8470}\n"
DNS_TARGET = "      - {probe: dns, name: dns, server: \"{{ dc_host }}\", query: \"{{ site }}.commune.internal\"}\n"


@dataclass(frozen=True)
class Run:
    """One command's cost as the kernel accounted it (os.wait4)."""

    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    stdout: str


def step(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def measured(argv: list[str]) -> Run:
    """Run ``argv`` to its end; its wall time and, from the kernel (os.wait4), its CPU and peak RSS."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}: {err.read()}")
        return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out.read())


def collector(work: Path, dsn: str | None, check_every: float) -> CollectorProcess:
    """A collector on the store, the shipped agent profile as its fleet.profile (not started yet)."""
    profile = work / "agent-profile.yaml"
    profile.write_text(subprocess.run([CLI, "agent-config", "--show-profile"], capture_output=True, text=True,
                                      check=True).stdout, encoding="utf-8")
    database = f"database: {{dsn: '{dsn}'}}\n" if dsn else ""
    return CollectorProcess(work, f"{database}aggregator: {{process: false}}\n"
                                  f"fleet: {{profile: {profile}, rollout: {{check_every: {check_every:g}s}}}}\n")


def candidate_of(work: Path) -> Path:
    """The shipped profile with a DNS check added to every fiber link: every site's config changes."""
    text = (work / "agent-profile.yaml").read_text(encoding="utf-8")
    if FIBER_TARGETS not in text:
        raise SystemExit("the shipped profile's fiber targets changed: update FIBER_TARGETS in this script")
    path = work / "candidate.yaml"
    path.write_text(text.replace(FIBER_TARGETS, FIBER_TARGETS + DNS_TARGET), encoding="utf-8")
    return path


def served(url: str, token: str) -> str:
    response = httpx.get(f"{url}/api/v1/agent-config", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    response.raise_for_status()
    return str(response.json()["version"])


def bench(work: Path, args: argparse.Namespace, dsn: str | None) -> None:
    server = collector(work, dsn, args.check_every)
    config = str(server.config)
    step(f"generating and importing {args.sites:,} sites ({'PostgreSQL' if dsn else 'SQLite'})")
    subprocess.run([CLI, "sites", "generate", "--count", str(args.sites), "-o", str(work / "sites.csv")],
                   check=True, capture_output=True)
    server.cli("sites", "import", str(work / "sites.csv"))
    canary = next(s for s in generate_sites(args.sites) if is_canary(s.id, s.province, 25, ()))
    token = server.cli("token", "issue", canary.id).strip()
    step("starting the collector")
    server.start()
    try:
        before = served(server.url, token)
        candidate = candidate_of(work)
        step("commune-collector rollout start --profile candidate.yaml --percent 25")
        start = measured([CLI, "rollout", "start", "--profile", str(candidate), "--percent", "25", "-c", config])
        returned = time.perf_counter()
        step(f"started {start.stdout.strip()}; waiting for the collector to serve it to {canary.id}")
        wait_until(lambda: served(server.url, token) != before, timeout=args.check_every + 60, interval=0.05,
                   what="the collector to serve the candidate")
        follow_s = time.perf_counter() - returned
        step("commune-collector rollout status")
        status = measured([CLI, "rollout", "status", "-c", config])
        step("commune-collector rollout rollback")
        rollback = measured([CLI, "rollout", "rollback", "-c", config])
    finally:
        server.stop()
    store = "PostgreSQL" if dsn else "SQLite"
    print(f"| {args.sites:,} sites, {store} | rollout start: {start.wall_s:.1f} s wall, {start.cpu_s:.1f} s CPU, "
          f"peak RSS {start.peak_rss_mib:.0f} MiB | served to a canary {follow_s:.1f} s after it returned "
          f"(check_every {args.check_every:g} s) | rollout status {status.wall_s:.1f} s, rollback "
          f"{rollback.wall_s:.1f} s |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", type=int, default=3321, help="communes in the generated inventory")
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL instead of SQLite")
    parser.add_argument("--check-every", type=float, default=15.0,
                        help="the collector's fleet.rollout.check_every, seconds (default 15, the shipped value)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (its path is printed)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-rollout-"))
    try:
        with ExitStack() as stack:
            dsn = None
            if args.postgres:
                from testsupport.peers.postgres import PostgresPeer
                step("starting a throwaway PostgreSQL on loopback")
                dsn = stack.enter_context(PostgresPeer()).dsn
            bench(work, args, dsn)
    finally:
        if args.keep:
            step(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
