"""``commune-collector token``: issue, revoke and list the per-site tokens."""

from __future__ import annotations

import argparse
import sys
import time

from commune_collector.auth import new_token
from commune_collector.cli.common import add_config_arg, open_store_from


def cmd_token_issue(args: argparse.Namespace) -> int:
    store = open_store_from(args)
    try:
        token, record = new_token(args.site)
        store.add_token(record)
    finally:
        store.close()
    print(token)
    print(f"token {record.id} issued for site {args.site}; it is shown only once: put it in the agent's "
          f"token_file now", file=sys.stderr)
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    store = open_store_from(args)
    try:
        n = store.revoke_tokens(args.target, time.time())
    finally:
        store.close()
    if n == 0:
        print(f"error: no live token with id or site {args.target!r}", file=sys.stderr)
        return 1
    print(f"revoked {n} token(s) (a running collector stops accepting them within auth.cache_ttl)")
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    store = open_store_from(args)
    try:
        tokens = store.list_tokens(args.site)
    finally:
        store.close()
    for t in tokens:
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(t.created_at))
        state = "revoked " + time.strftime("%Y-%m-%d %H:%M", time.localtime(t.revoked_at)) if t.revoked_at else "live"
        print(f"{t.id}  {t.site:<40} created {created}  {state}")
    print(f"{len(tokens)} token(s)", file=sys.stderr)
    return 0


def add_token(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("token", help="per-site tokens: issue, revoke, list")
    tsub = p.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    issue = tsub.add_parser("issue", help="print a new token for SITE, once (only its hash is stored)")
    issue.add_argument("site")
    add_config_arg(issue)
    issue.set_defaults(func=cmd_token_issue)
    revoke = tsub.add_parser("revoke", help="revoke a token by id, or every token of a site")
    revoke.add_argument("target", metavar="SITE|TOKEN_ID")
    add_config_arg(revoke)
    revoke.set_defaults(func=cmd_token_revoke)
    lst = tsub.add_parser("list", help="list tokens (ids and sites, never secrets)")
    lst.add_argument("--site")
    add_config_arg(lst)
    lst.set_defaults(func=cmd_token_list)
