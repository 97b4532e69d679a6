"""``commune-collector rollout start|status|promote|rollback|list``: a staged rollout of the agent profile.

Works on the store directly, like ``enroll-token``: the collector follows
what it finds there within ``fleet.rollout.check_every``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from pathlib import Path
from typing import Any

from commune_collector.cli.common import add_config_arg, open_store_from, settings_from
from commune_collector.cli.fleet import _local
from commune_collector.fleet import rollouts
from commune_collector.fleet.db import FleetDb
from commune_collector.fleet.desired import ProfileSource
from commune_collector.fleet.rollout_db import RolloutDb
from commune_collector.store.base import all_sites

STATE_WORDS = {"running": "đang triển khai (running)", "halted": "đã tự dừng (halted)",
               "promoted": "đã áp dụng toàn bộ (promoted)", "rolled_back": "đã hoàn tác (rolled back)"}


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _run(args: argparse.Namespace, work: Any) -> int:
    """Open the store, do ``work(db, source, store)``; a RolloutError is a clear message and exit 1."""
    settings = settings_from(args)
    store = open_store_from(args)
    fleet_db = FleetDb(store)
    db = RolloutDb(fleet_db.db)
    source = ProfileSource(settings.fleet)
    try:
        source.promoted = tuple(db.promoted())
        return int(work(db, source, store, settings.fleet.rollout))
    except rollouts.RolloutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        fleet_db.close()
        store.close()  # type: ignore[attr-defined]


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.1%}"


def print_status(s: dict[str, Any]) -> None:
    a, new, old = s["adoption"], s["new"], s["old"]
    where = f" of {', '.join(s['provinces'])}" if s["provinces"] else ""
    print(f"rollout {s['id']}: {STATE_WORDS.get(s['state'], s['state'])}, {s['percent']:g} %{where} of "
          f"{a['touched']} sites the profile {s['candidate']} changes")
    print(f"  started {_local(s['started_at'])} by {s['started_by']}" + (f" ({s['note']})" if s["note"] else ""))
    print(f"  adoption: {a['canaries_on_new']}/{a['canaries']} canaries on the new version "
          f"({a['canaries_on_old']} still on the old), {a['others_on_old']}/{a['touched'] - a['canaries']} others on "
          f"the old, {a['apply_errors']} refusing a config")
    print(f"  {'':<26} {'LỖI KIỂM TRA (CHECK FAILURES)':<32} ĐANG BÁO CÁO (REPORTING)")
    for name, g in (("bản mới (new version)", new), ("bản cũ (old version)", old)):
        print(f"  {name:<26} {_pct(g['fail_rate']):>7} of {g['results']:<21} {g['reporting']:>4}/{g['sites']:<5} "
              f"{_pct(g['reporting_rate'])}")
    if s["halt_reason"]:
        print(f"  halted: {s['halt_reason']}")
    for w in s["warnings"]:
        print(f"  warning: {w}")
    for e in s["history"]:
        print(f"  {_local(e['at'])}  {e['action']:<12} {e['actor']:<16} {e['detail']}")


def cmd_start(args: argparse.Namespace) -> int:
    try:
        text = Path(args.profile).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error: --profile {args.profile}: {exc}", file=sys.stderr)
        return 2
    provinces = [p.strip() for p in (args.provinces or "").split(",") if p.strip()]

    def work(db: RolloutDb, source: ProfileSource, store: Any, settings: Any) -> int:
        started = rollouts.start(db, source, all_sites(store), text, str(args.profile), args.percent, provinces,
                                 args.note or "", _actor(), time.time())
        print(started.rollout.id)
        print(f"rollout {started.rollout.id} started: {started.canaries} of the {started.touched} sites the profile "
              f"changes get it first; the collector serves it within fleet.rollout.check_every. Watch it: "
              f"commune-collector rollout status", file=sys.stderr)
        for issue in started.issues:
            print(f"warning: the agent model here refuses {issue}", file=sys.stderr)
        return 0
    return _run(args, work)


def cmd_status(args: argparse.Namespace) -> int:
    def work(db: RolloutDb, source: ProfileSource, store: Any, settings: Any) -> int:
        s = rollouts.status(db, source, args.id, settings, time.time())
        if args.json:
            print(json.dumps(s, ensure_ascii=False, indent=2))
        else:
            print_status(s)
        return 0
    return _run(args, work)


def cmd_promote(args: argparse.Namespace) -> int:
    def work(db: RolloutDb, source: ProfileSource, store: Any, settings: Any) -> int:
        r = rollouts.promote(db, args.id, args.percent, args.force, _actor(), time.time())
        if r.state == "promoted":
            print(f"rollout {r.id} promoted: every site it changes gets the candidate. Install it as fleet.profile "
                  "(the collector serves it until that file changes)", file=sys.stderr)
        else:
            print(f"rollout {r.id} widened to {r.percent:g} %", file=sys.stderr)
        return 0
    return _run(args, work)


def cmd_rollback(args: argparse.Namespace) -> int:
    def work(db: RolloutDb, source: ProfileSource, store: Any, settings: Any) -> int:
        r = rollouts.rollback(db, args.id, args.reason or "", _actor(), time.time())
        print(f"rollout {r.id} rolled back: every site is served the old version again", file=sys.stderr)
        return 0
    return _run(args, work)


def cmd_list(args: argparse.Namespace) -> int:
    def work(db: RolloutDb, source: ProfileSource, store: Any, settings: Any) -> int:
        for r in db.recent():
            print(f"{r.id}  {r.state:<11}  {r.percent:>5g} %  {_local(r.started_at):<24}  {r.started_by:<16}  "
                  f"{r.candidate_name}")
        return 0
    return _run(args, work)


def add_rollout(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rollout", help="roll a profile change out to a share of the sites first",
                       description="A staged rollout: the candidate profile goes to a share of the sites it changes "
                                   "(chosen by a hash of the site id) or to chosen provinces; the others keep the "
                                   "old version. It halts by itself when its sites fail checks or stop reporting "
                                   "markedly more than the others (fleet.rollout in the collector's config).")
    rsub = p.add_subparsers(dest="rollout_command", required=True, metavar="ACTION")
    start = rsub.add_parser("start", help="serve a candidate profile to a share of the sites")
    start.add_argument("--profile", required=True, metavar="FILE", help="the candidate agent profile")
    start.add_argument("--percent", type=float, default=25.0, help="share of the sites it changes (default 25)")
    start.add_argument("--provinces", metavar="A,B", help="only the sites of these provinces")
    start.add_argument("--note", help="why (kept in the history)")
    start.set_defaults(func=cmd_start)
    status = rsub.add_parser("status", help="adoption, failure and reporting rates of new vs old, history")
    status.add_argument("id", nargs="?", metavar="ID", help="default: the open rollout")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)
    promote = rsub.add_parser("promote", help="widen the share, or give the candidate to every site")
    promote.add_argument("id", nargs="?", metavar="ID", help="default: the open rollout")
    promote.add_argument("--percent", type=float, help="a wider share; without it: every site")
    promote.add_argument("--force", action="store_true", help="promote a rollout that halted by itself")
    promote.set_defaults(func=cmd_promote)
    rollback = rsub.add_parser("rollback", help="every site back on the old version")
    rollback.add_argument("id", nargs="?", metavar="ID", help="default: the open rollout")
    rollback.add_argument("--reason", help="why (kept in the history)")
    rollback.set_defaults(func=cmd_rollback)
    lst = rsub.add_parser("list", help="the latest rollouts")
    lst.set_defaults(func=cmd_list)
    for action in (start, status, promote, rollback, lst):
        add_config_arg(action)
