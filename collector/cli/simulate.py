"""``commune-collector simulate run|check``: drive a simulated fleet, and check the verdicts against its truth."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from pathlib import Path

from commune_collector.cli.common import Progress, add_config_arg, open_store_from, operator_token
from commune_collector.simulate.driver import Driver, issue_tokens, stderr, usage, write_truth
from commune_collector.simulate.fleet import (
    BACKBONE,
    MAINTENANCE,
    MAINTENANCE_REASON,
    NEVER,
    NEW,
    POWER,
    Fleet,
    build_fleet,
)

TRUTH_EVERY = 30.0


def _store_sites(args: argparse.Namespace) -> list[tuple[str, str]]:
    store = open_store_from(args)
    try:
        page = store.list_sites(None, 1_000_000, 0)
    finally:
        store.close()
    skip = set(args.exclude or ())
    return [(s.id, s.province) for s in page.items if s.id not in skip]


def _tokens(args: argparse.Namespace, fleet: Fleet) -> dict[str, str]:
    ids = [s.id for s in fleet.sites if s.kind != NEVER]
    store = open_store_from(args)
    try:
        return issue_tokens(store, ids, Progress("tokens issued"))
    finally:
        store.close()


def _declare_maintenance(args: argparse.Namespace, fleet: Fleet) -> str | None:
    """Declare the fleet's maintenance window in the store, as an operator would (the rules of the API)."""
    from commune_collector.access.roles import Principal, Role
    from commune_collector.maintenance.service import Declaration, declare

    sites = tuple(s.id for s in fleet.by_kind(MAINTENANCE))
    if not sites:
        return None
    store = open_store_from(args)
    try:
        ask = Declaration("sites", sites, fleet.maintenance_from, fleet.maintenance_to, MAINTENANCE_REASON)
        return declare(store, Principal("commune-collector simulate", Role.NATIONAL, via="cli"), ask,
                       fleet.start).id
    finally:
        store.close()


def describe(fleet: Fleet, url: str) -> list[str]:
    """What to look at, for a person starting the simulator."""
    lines = [f"simulated fleet: {len(fleet.sites):,} sites (seed {fleet.seed})"]
    if fleet.backbone_province:
        n = len(fleet.by_kind(BACKBONE))
        lines.append(f"  upstream outage   backbone of {fleet.backbone_province} cut 2 h ago ({n} communes on 4G): "
                     f"{url}/p/{fleet.backbone_province}")
    battery = [s for s in fleet.by_kind(POWER) if s.reporting(fleet.start, fleet)]
    if battery:
        lines.append(f"  power cut         {fleet.power_province}, 50 min ago; on battery e.g. "
                     f"{url}/s/{battery[0].id}")
    for kind, what in ((NEVER, "never installed"), (NEW, "installed 20 min ago (waiting)"),
                       (MAINTENANCE, "in maintenance")):
        members = fleet.by_kind(kind)
        if members:
            lines.append(f"  {what:<17} {len(members)} communes, e.g. {url}/s/{members[0].id}")
    return lines


async def _run(args: argparse.Namespace, fleet: Fleet, tokens: dict[str, str]) -> int:
    driver = Driver(fleet, args.url, tokens, interval=args.interval, concurrency=args.concurrency)
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, main.cancel)
    shown = [time.monotonic(), time.time()]

    def tick() -> None:
        now = time.monotonic()
        if args.truth and time.time() - shown[1] >= TRUTH_EVERY:
            write_truth(fleet, args.truth, time.time(), driver.history_sent)
            shown[1] = time.time()
        if now - shown[0] >= args.progress:
            stderr(f"simulate: {driver.stats.line()}")
            shown[0] = now

    async def backfill() -> None:
        await driver.backfill(lambda line: stderr(f"simulate: {line}"))
        if args.truth:
            write_truth(fleet, args.truth, time.time(), driver.history_sent)
        print("simulate: backfill done, every site reporting live", flush=True)

    until = time.time() + args.duration if args.duration else float("inf")
    live = asyncio.ensure_future(driver.live(until, tick))
    try:
        await backfill()
        await live
    except asyncio.CancelledError:  # SIGINT/SIGTERM: stop sending, say what was done
        live.cancel()
        await asyncio.gather(live, return_exceptions=True)
    finally:
        await driver.close()
    cpu, rss = usage()
    stderr(f"simulate: stopped. {driver.stats.line()}; simulator CPU {cpu:.1f} s, peak RSS {rss:.0f} MiB")
    if driver.stats.first_error:
        stderr(f"simulate: first error: {driver.stats.first_error}")
    return 1 if driver.stats.acked == 0 and driver.stats.reports else 0


def cmd_run(args: argparse.Namespace) -> int:
    sites = _store_sites(args)
    if not sites:
        print("error: the inventory is empty: import sites first (commune-collector sites import)", file=sys.stderr)
        return 1
    fleet = build_fleet(sites, args.seed, time.time())
    tokens = _tokens(args, fleet)
    window = _declare_maintenance(args, fleet)
    for line in describe(fleet, args.url):
        print(line, flush=True)
    if window:
        print(f"  maintenance       window {window}: {MAINTENANCE_REASON} "
              f"(commune-collector maintenance show {window})", flush=True)
    if args.truth:
        write_truth(fleet, args.truth, fleet.start, set())
        print(f"ground truth: {args.truth} (check it: commune-collector simulate check --truth {args.truth} "
              f"--url {args.url})", flush=True)
    return asyncio.run(_run(args, fleet, tokens))


def cmd_check(args: argparse.Namespace) -> int:
    from commune_collector.simulate.check import compare, fetch_verdicts
    deadline = time.monotonic() + args.wait
    while True:
        truth = json.loads(Path(args.truth).read_text(encoding="utf-8"))
        try:
            result = compare(truth, fetch_verdicts(args.url, token=operator_token(args)))
        except Exception as exc:  # noqa: BLE001 - a collector not ready yet is retried until --wait runs out
            result, error = None, exc
        if result is not None and result.ok and (result.pending == 0 or not args.settled):
            break
        if time.monotonic() >= deadline:
            break
        time.sleep(5.0)
    if result is None:
        print(f"error: cannot read verdicts from {args.url}: {error}", file=sys.stderr)
        return 1
    for line in result.lines():
        print(line)
    return 0 if result.ok else 1


def add_simulate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="a simulated fleet pushing real reports, with its ground truth",
                       description="Drive simulated commune sites through the ingest API (demo, tests, "
                                   "benchmarks), and check the verdicts against what they must be.")
    ssub = p.add_subparsers(dest="simulate_command", required=True, metavar="ACTION")
    run = ssub.add_parser("run", help="issue a token per site, backfill a day, then report live",
                          description="Simulates every inventory site except --exclude: a day of history "
                                      "first, then live reports every --interval until --duration or Ctrl-C.")
    add_config_arg(run)
    run.add_argument("--url", default="http://127.0.0.1:8470", help="the collector (default %(default)s)")
    run.add_argument("--seed", type=int, default=1, help="same seed and inventory, same fleet (default 1)")
    run.add_argument("--exclude", action="append", metavar="SITE", help="a site a real agent reports for")
    run.add_argument("--duration", type=float, default=0.0,
                     help="seconds of live reporting from the start; the backfill always completes "
                          "(default: until Ctrl-C)")
    run.add_argument("--interval", type=float, default=30.0, help="seconds between a site's reports (default 30)")
    run.add_argument("--concurrency", type=int, default=32, help="requests in flight (default 32)")
    run.add_argument("--truth", type=Path, help="write the ground truth here (JSON), refreshed every 30 s")
    run.add_argument("--progress", type=float, default=10.0, help="seconds between progress lines (default 10)")
    run.set_defaults(func=cmd_run)
    chk = ssub.add_parser("check", help="compare the collector's verdicts with the ground truth; exit 1 if wrong",
                          description="Fails on any false 'completed', wrong state or wrong cause.")
    chk.add_argument("--url", default="http://127.0.0.1:8470", help="the collector (default %(default)s)")
    chk.add_argument("--truth", type=Path, required=True, help="the file simulate run --truth wrote")
    chk.add_argument("--token-file", metavar="FILE", help="a file holding an operator token (default: "
                                                          "$COMMUNE_OPERATOR_TOKEN; the verdicts are for operators)")
    chk.add_argument("--wait", type=float, default=0.0, help="retry up to this many seconds until right")
    chk.add_argument("--settled", action="store_true", help="with --wait: also wait until nothing is pending")
    chk.set_defaults(func=cmd_check)
