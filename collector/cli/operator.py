"""``commune-collector operator``: operators' credentials, managed like site tokens.

``create`` prints a token once (only its hash is stored), with a role, a
province for the province role, and an expiry (90 days unless told); ``list``
shows them (never secrets), ``expiring`` those that lapse soon, ``revoke``
ends one or every credential of a name.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from commune_collector.access.roles import ROLE_HELP, Role, ScopeError
from commune_collector.cli.common import add_config_arg, open_store_from
from commune_collector.store.base import OperatorRecord

DEFAULT_EXPIRY = "90d"
LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")
NAME = re.compile(r"^[\w.@+-]{1,128}$")


def _when(ts: float | None) -> str:
    if ts is None:
        return "never"
    return datetime.fromtimestamp(ts, LOCAL).strftime("%Y-%m-%d %H:%M") + " (UTC+7)"


def _expiry(text: str, now: float) -> float | None:
    from commune_common.units import parse_duration
    if text == "never":
        return None
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--expires {text!r}: {exc} (e.g. 90d, 12h, or never)") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError("--expires must be positive (or never)")
    return now + seconds


def state_of(record: OperatorRecord, now: float) -> str:
    if record.revoked_at is not None:
        return "revoked " + _when(record.revoked_at)
    if record.expires_at is not None and record.expires_at <= now:
        return "expired " + _when(record.expires_at)
    return "live, expires " + _when(record.expires_at)


def cmd_create(args: argparse.Namespace) -> int:
    from commune_collector.access.tokens import new_operator_token
    from commune_collector.provinces import provinces

    now = time.time()
    if not NAME.match(args.name):
        print(f"error: name {args.name!r}: letters, digits and . _ @ + - only (e.g. nguyen.van.a@ha-noi)",
              file=sys.stderr)
        return 2
    if args.province and args.province not in provinces():
        print(f"error: unknown province {args.province!r}; known: {', '.join(provinces())}", file=sys.stderr)
        return 2
    try:
        expires_at = _expiry(args.expires, now)
        token, record = new_operator_token(args.name, Role(args.role), args.province, expires_at, now)
    except (ScopeError, argparse.ArgumentTypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    store = open_store_from(args)
    try:
        store.add_operator(record)
    finally:
        store.close()
    print(token)
    scope = f" for {args.province}" if args.province else ""
    print(f"operator token {record.id} for {args.name}: role {args.role}{scope}, expires {_when(expires_at)}; "
          "it is shown only once: hand it over now (Authorization: Bearer ...)", file=sys.stderr)
    return 0


def cmd_list(args: argparse.Namespace) -> int:

    store = open_store_from(args)
    try:
        records = store.list_operators(args.name)
    finally:
        store.close()
    now = time.time()
    shown = [r for r in records if args.all or (r.revoked_at is None and (r.expires_at is None or r.expires_at > now))]
    for r in shown:
        scope = f"{r.role}:{r.province}" if r.province else r.role
        print(f"{r.id}  {r.name:<32} {scope:<22} created {_when(r.created_at)}  {state_of(r, now)}")
    hidden = len(records) - len(shown)
    print(f"{len(shown)} credential(s)" + (f" ({hidden} revoked or expired: --all shows them)" if hidden else ""),
          file=sys.stderr)
    return 0


def cmd_expiring(args: argparse.Namespace) -> int:
    from commune_common.units import parse_duration

    within = parse_duration(args.within)
    store = open_store_from(args)
    try:
        records = store.list_operators()
    finally:
        store.close()
    now = time.time()
    soon = sorted((r for r in records if r.revoked_at is None and r.expires_at is not None
                   and now < r.expires_at <= now + within), key=lambda r: r.expires_at or 0)
    for r in soon:
        days = (r.expires_at - now) / 86400 if r.expires_at else 0
        print(f"{r.id}  {r.name:<32} {r.role:<9} {r.province or '':<16} expires {_when(r.expires_at)} "
              f"(in {days:.0f} days)")
    print(f"{len(soon)} credential(s) expire within {args.within}; create their successors with "
          "`commune-collector operator create`", file=sys.stderr)
    return 1 if soon and args.fail else 0


def cmd_revoke(args: argparse.Namespace) -> int:

    store = open_store_from(args)
    try:
        n = store.revoke_operators(args.target, time.time())
    finally:
        store.close()
    if n == 0:
        print(f"error: no live operator credential with id or name {args.target!r}", file=sys.stderr)
        return 1
    print(f"revoked {n} operator credential(s) (a running collector refuses them within auth.cache_ttl)")
    return 0


def add_operator(sub: Any) -> None:
    """``commune-collector operator``: registered in collector.cli.COMMANDS."""

    roles = "; ".join(f"{role.value}: {text}" for role, text in ROLE_HELP.items())
    p = sub.add_parser("operator", help="operators' credentials: create, list, expiring, revoke",
                       description=__doc__.split("\n\n")[1].replace("``", "") + f"\n\nRoles: {roles}.")
    osub = p.add_subparsers(dest="operator_command", required=True, metavar="ACTION")
    create = osub.add_parser("create", help="print a new operator token, once (only its hash is stored)")
    create.add_argument("name", help="who holds it, e.g. nguyen.van.a@ha-noi, or prometheus")
    create.add_argument("--role", required=True, choices=[r.value for r in Role], help=roles)
    create.add_argument("--province", metavar="SLUG", help="the province of the province role (e.g. ha-noi)")
    create.add_argument("--expires", default=DEFAULT_EXPIRY, metavar="DURATION",
                        help=f"lifetime, e.g. 30d, 12h, or never (default {DEFAULT_EXPIRY})")
    add_config_arg(create)
    create.set_defaults(func=cmd_create)
    lst = osub.add_parser("list", help="list live credentials (ids, names, roles; never secrets)")
    lst.add_argument("--name", help="only this operator")
    lst.add_argument("--all", action="store_true", help="revoked and expired ones too")
    add_config_arg(lst)
    lst.set_defaults(func=cmd_list)
    exp = osub.add_parser("expiring", help="live credentials that expire soon")
    exp.add_argument("--within", default="14d", metavar="DURATION", help="default 14d")
    exp.add_argument("--fail", action="store_true", help="exit 1 when any (for a cron job or a check)")
    add_config_arg(exp)
    exp.set_defaults(func=cmd_expiring)
    rev = osub.add_parser("revoke", help="revoke a credential by id, or every credential of a name")
    rev.add_argument("target", metavar="NAME|TOKEN_ID")
    add_config_arg(rev)
    rev.set_defaults(func=cmd_revoke)
