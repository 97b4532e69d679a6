"""``commune-collector enroll-token create|list|revoke|allow-reenroll``: the operator's side of enrollment."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from zoneinfo import ZoneInfo

from commune_collector.cli.common import add_config_arg, open_store_from, settings_from
from commune_collector.fleet.db import FleetDb
from commune_collector.fleet.tokens import EnrollToken, new_enroll_token
from commune_collector.provinces import provinces
from commune_common.units import format_duration, parse_duration

LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")


def _local(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, LOCAL).strftime("%Y-%m-%d %H:%M (UTC+7)")


def _open(args: argparse.Namespace) -> tuple[object, FleetDb]:
    store = open_store_from(args)
    return store, FleetDb(store)


def _scope(args: argparse.Namespace, store: object) -> tuple[str | None, tuple[str, ...]] | str:
    """(province, sites) or an error message."""
    if args.province:
        if args.province not in provinces():
            return f"unknown province {args.province!r} (see provinces.csv)"
        return args.province, ()
    sites = tuple(dict.fromkeys(s.strip() for s in args.sites.split(",") if s.strip()))
    if not sites:
        return "--sites needs at least one site id"
    unknown = [s for s in sites if store.get_site(s) is None]  # type: ignore[attr-defined]
    if unknown:
        return f"not in the inventory: {', '.join(unknown)} (import them first: commune-collector sites import)"
    return None, sites


def cmd_create(args: argparse.Namespace) -> int:
    try:
        ttl = parse_duration(args.expires)
    except ValueError as exc:
        print(f"error: --expires {args.expires!r}: {exc}", file=sys.stderr)
        return 2
    if not 1 <= args.max_uses <= 1_000_000 or ttl <= 0:
        print("error: --max-uses must be at least 1 and --expires longer than 0s", file=sys.stderr)
        return 2
    store, db = _open(args)
    try:
        scope = _scope(args, store)
        if isinstance(scope, str):
            print(f"error: {scope}", file=sys.stderr)
            return 1
        now = time.time()
        text, record = new_enroll_token(scope[0], scope[1], now, now + ttl, args.max_uses,
                                        allow_reenroll=args.allow_reenroll, note=args.note or "")
        db.add_enroll_token(record)
    finally:
        db.close()
        store.close()  # type: ignore[attr-defined]
    print(text)
    print(f"enrollment token {record.id} for {record.scope_text()}: up to {record.max_uses} enrollment(s), "
          f"valid until {_local(record.expires_at)}. It is shown this once; only its hash is stored. "
          f"At each site: commune-agent enroll --collector URL --token-file FILE --site SITE", file=sys.stderr)
    return 0


def _row(t: EnrollToken, now: float) -> dict[str, object]:
    return {"id": t.id, "scope": t.scope_text(), "uses": t.uses, "max_uses": t.max_uses, "state": t.state(now),
            "expires": _local(t.expires_at), "created": _local(t.created_at), "allow_reenroll": t.allow_reenroll,
            "note": t.note}


def cmd_list(args: argparse.Namespace) -> int:
    store, db = _open(args)
    try:
        tokens = db.list_enroll_tokens()
    finally:
        db.close()
        store.close()  # type: ignore[attr-defined]
    now = time.time()
    rows = [_row(t, now) for t in tokens]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    print(f"{'ID':<12}  {'STATE':<8}  {'USES':>9}  {'EXPIRES':<24}  SCOPE")
    for r in rows:
        print(f"{r['id']:<12}  {r['state']:<8}  {r['uses']:>4}/{r['max_uses']:<4}  {r['expires']:<24}  {r['scope']}")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    store, db = _open(args)
    try:
        n = db.revoke_enroll_token(args.id, time.time())
    finally:
        db.close()
        store.close()  # type: ignore[attr-defined]
    if not n:
        print(f"error: no live enrollment token {args.id!r} (see: commune-collector enroll-token list)",
              file=sys.stderr)
        return 1
    print(f"revoked enrollment token {args.id}; sites it already enrolled keep their own tokens", file=sys.stderr)
    return 0


def cmd_allow_reenroll(args: argparse.Namespace) -> int:
    store, db = _open(args)
    try:
        if store.get_site(args.site) is None:  # type: ignore[attr-defined]
            print(f"error: site {args.site!r} is not in the inventory", file=sys.stderr)
            return 1
        db.allow_reenroll(args.site, time.time())
    finally:
        db.close()
        store.close()  # type: ignore[attr-defined]
    print(f"site {args.site}: the next enrollment may replace its live agent (once); the old agent's token is "
          "revoked when the new box enrolls", file=sys.stderr)
    return 0


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("enroll-token", help="enrollment tokens: let sites' agents enroll themselves",
                       description="An enrollment token lets `commune-agent enroll` at a site exchange it for "
                                   "the site's own token. Scoped to a province or to listed sites, expiring, "
                                   "limited in uses; shown once, stored hashed, revocable.")
    tsub = p.add_subparsers(dest="enroll_command", required=True, metavar="ACTION")
    create = tsub.add_parser("create", help="print a new enrollment token, once")
    scope = create.add_mutually_exclusive_group(required=True)
    scope.add_argument("--province", metavar="SLUG", help="every site of this province")
    scope.add_argument("--sites", metavar="A,B,...", help="only these site ids")
    create.add_argument("--expires", default="7d", metavar="DURATION", help="valid for this long (default 7d)")
    create.add_argument("--max-uses", type=int, default=1, metavar="N",
                        help="at most N enrollments (default 1; a province: its number of sites)")
    create.add_argument("--allow-reenroll", action="store_true",
                        help="may replace a site's live agent (a replaced mini PC)")
    create.add_argument("--note", help="why this token exists (shown by list)")
    add_config_arg(create)
    create.set_defaults(func=cmd_create)
    lst = tsub.add_parser("list", help="enrollment tokens: scope, uses, state (never secrets)")
    lst.add_argument("--json", action="store_true")
    add_config_arg(lst)
    lst.set_defaults(func=cmd_list)
    revoke = tsub.add_parser("revoke", help="revoke an enrollment token by id")
    revoke.add_argument("id", metavar="ID")
    add_config_arg(revoke)
    revoke.set_defaults(func=cmd_revoke)
    allow = tsub.add_parser("allow-reenroll", help="let the next enrollment of SITE replace its live agent, once")
    allow.add_argument("site", metavar="SITE")
    add_config_arg(allow)
    allow.set_defaults(func=cmd_allow_reenroll)
    add_fleet_view(sub)


def cmd_fleet(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from commune_collector.fleet.desired import ProfileSource
    from commune_collector.fleet.rollout_db import RolloutDb
    from commune_collector.fleet.rollouts import serving
    from commune_collector.fleet.view import fleet_rows, province_counts, to_csv

    if args.province and args.province not in provinces():
        print(f"error: unknown province {args.province!r}", file=sys.stderr)
        return 2
    settings = settings_from(args)
    store, db = _open(args)
    try:
        source = ProfileSource(settings.fleet)
        serving(RolloutDb(db.db), source)  # a staged rollout decides what some sites should run
        rows = fleet_rows(store, db, source, time.time(), args.province,  # type: ignore[arg-type]
                          settings.fleet.live_within, settings.fleet.duplicate_window)
    finally:
        db.close()
        store.close()  # type: ignore[attr-defined]
    if args.format == "json":
        print(json.dumps({"sites": [asdict(r) for r in rows], "provinces": province_counts(rows)},
                         ensure_ascii=False, indent=2))
    elif args.format == "csv":
        sys.stdout.write(to_csv(rows))
    else:
        print(f"{'SITE':<28} {'AGENT':<8} {'LAST REPORT':<24} {'CONFIG':<8} {'BACKLOG':<14} {'ENROLLED':<24} NOTE")
        for r in rows:
            config = "-" if r.applied_config is None else ("ok" if r.on_desired else "drift")
            note = "; ".join(x for x in (r.config_error and f"error: {r.config_error[:60]}",
                                         r.duplicate_instance and "two agents",
                                         r.spool_dropped_results and f"dropped {r.spool_dropped_results} results")
                             if x)
            print(f"{r.site:<28} {r.agent_version or '-':<8} {_local(r.last_report_at):<24} {config:<8} "
                  f"{_backlog(r):<14} {_local(r.enrolled_at):<24} {note}")
        for province, c in province_counts(rows).items():
            print(f"{province}: {c['sites']} sites, {c['enrolled']} enrolled, {c['reporting']} reporting, "
                  f"{c['on_desired_config']} on the desired config, {c['config_errors']} refusing it, "
                  f"{c['with_backlog']} with a backlog, {c['with_drops']} that dropped data; agent "
                  f"versions {c['agent_versions'] or '-'}", file=sys.stderr)
    return 0


def _backlog(r: object) -> str:
    """``12 / 35m``: reports unsent and the oldest one's age; ``-`` when the agent does not say (older agents)."""
    reports, age = getattr(r, "spool_reports", None), getattr(r, "spool_oldest_age_s", None)
    if reports is None:
        return "-"
    if not reports or age is None:
        return str(reports)
    return f"{reports} / {format_duration(age)}"


def add_fleet_view(sub: argparse._SubParsersAction) -> None:

    p = sub.add_parser("fleet", help="per site: agent version, desired vs applied config, last report, enrollment",
                       description="The fleet view: every site's agent (version, last report, clock offset), "
                                   "the config it should run and the one it applied (drift, apply errors), "
                                   "when and with which enrollment token it enrolled; per province the counts.")
    p.add_argument("--province", metavar="SLUG")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    add_config_arg(p)
    p.set_defaults(func=cmd_fleet)
