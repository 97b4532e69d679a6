"""``commune-collector maintenance``: declare, list, show and cancel maintenance windows.

The same rules as ``/api/v1/maintenance`` (collector.maintenance.service).
With ``--token-file`` (or $COMMUNE_OPERATOR_TOKEN) the command acts as that
operator, scoped by its role; without one it acts as the server's
administrator (who holds the database anyway) under the name ``--by``.
Times are read and shown in the collector's time zone unless one is given.
When alerting is configured, the Alertmanager silences follow at once.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from commune_collector.access.roles import Principal, Role
from commune_collector.cli.common import (
    add_config_arg,
    open_store_from,
    operator_token,
    settings_from,
)
from commune_collector.maintenance.service import (
    Declaration,
    MaintenanceError,
    NotAllowed,
    cancel,
    declare,
    listed,
    visible,
)
from commune_collector.maintenance.windows import PERIODS, MaintenanceWindow
from commune_collector.settings import CollectorSettings
from commune_collector.store.base import Store

TIME_HELP = "local time, e.g. '2026-12-06 08:00' (or ISO 8601 with a zone)"


def parse_time(text: str, zone: ZoneInfo, what: str) -> float:
    """'2026-12-06 08:00' in the collector's zone, or any ISO 8601 time that names its own zone."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise MaintenanceError(what, f"{text!r} is not a time: write e.g. 2026-12-06 08:00") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.timestamp()


def local(ts: float | None, zone: ZoneInfo) -> str:
    if ts is None:
        return "-"
    value = datetime.fromtimestamp(ts, zone)
    return f"{value:%d/%m/%Y %H:%M} {value.tzname()}"


def _principal(args: argparse.Namespace, store: Store, settings: CollectorSettings) -> Principal:
    token = operator_token(args)
    if token is None:
        return Principal(args.by or _login_name(), Role.NATIONAL, via="cli")
    from commune_collector.access.tokens import Denied, OperatorVerifier, parse_operator_token

    parsed = parse_operator_token(token)
    verifier = OperatorVerifier(store, cache_ttl=0.0)
    try:
        return verifier.verify(token, verifier.lookup(parsed[0]) if parsed else None)
    except Denied as exc:
        raise NotAllowed(f"the operator token: {exc}") from None


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def _sites(args: argparse.Namespace) -> tuple[str, ...]:
    names = list(args.site or [])
    if args.sites_file:
        try:
            text = Path(args.sites_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise MaintenanceError("sites", f"--sites-file {args.sites_file}: {exc.strerror}") from None
        names += [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]
    return tuple(names)


def _scope(args: argparse.Namespace) -> tuple[str, tuple[str, ...]]:
    sites = _sites(args)
    given = [(scope, targets) for scope, targets in (("sites", sites), ("province", (args.province,)),
                                                     ("group", (args.upstream,))) if targets and targets[0]]
    if len(given) != 1:
        raise MaintenanceError("sites", "give communes (--site, --sites-file), one --province or one --upstream")
    return given[0]


def cmd_add(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    zone = ZoneInfo(settings.judge.timezone)
    store = open_store_from(args)
    try:
        scope, targets = _scope(args)
        ask = Declaration(scope, targets,
                          parse_time(args.start, zone, "from"), parse_time(args.end, zone, "to"), args.reason,
                          args.every, parse_time(args.until, zone, "until") if args.until else None)
        window = declare(store, _principal(args, store, settings), ask, time.time())
        _print_window(window, zone)
        _sync_silences(settings, store)
    finally:
        store.close()
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    zone = ZoneInfo(settings.judge.timezone)
    store = open_store_from(args)
    now = time.time()
    try:
        windows = listed(store, _principal(args, store, settings), "all" if args.all else "current", now,
                         args.province)
    finally:
        store.close()
    if not windows:
        print("no maintenance windows" + ("" if args.all else " now or ahead (--all shows past ones)"))
        return 0
    for w in windows:
        state = ("cancelled" if w.cancelled_at is not None else "active" if w.active_at(now) else
                 "ended" if w.last_end <= now else "upcoming")
        repeat = f", every {w.every} until {local(w.until, zone)}" if w.every else ""
        print(f"{w.id}  {state:9}  {local(w.starts_at, zone)} -> {local(w.ends_at, zone)}{repeat}  "
              f"{_covers(w)}  {w.reason}  (by {w.created_by})")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    zone = ZoneInfo(settings.judge.timezone)
    store = open_store_from(args)
    try:
        window = store.get_window(args.id)
        if window is None or not visible(_principal(args, store, settings), [window]):
            raise MaintenanceError("id", f"no maintenance window {args.id!r} (commune-collector maintenance list)")
    finally:
        store.close()
    _print_window(window, zone)
    if window.cancelled_at is not None:
        note = f": {window.cancel_note}" if window.cancel_note else ""
        print(f"  cancelled {local(window.cancelled_at, zone)} by {window.cancelled_by}{note}")
    print("  communes: " + ", ".join(window.sites))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    zone = ZoneInfo(settings.judge.timezone)
    store = open_store_from(args)
    try:
        try:
            window = cancel(store, _principal(args, store, settings), args.id, time.time(), args.note)
        except LookupError as exc:
            raise MaintenanceError("id", f"{exc} (commune-collector maintenance list)") from None
        print(f"cancelled {window.id} at {local(window.cancelled_at, zone)}: {window.reason}; "
              "its verdicts stay held to the end of the current hour")
        _sync_silences(settings, store)
    finally:
        store.close()
    return 0


def _covers(window: MaintenanceWindow) -> str:
    if window.scope in ("province", "group"):
        what = "province" if window.scope == "province" else "upstream"
        return f"{what} {window.targets[0]} ({len(window.sites)} communes)"
    return window.sites[0] if len(window.sites) == 1 else f"{len(window.sites)} communes"


def _print_window(window: MaintenanceWindow, zone: ZoneInfo) -> None:
    repeat = f", every {window.every} until {local(window.until, zone)}" if window.every else ""
    print(f"{window.id}: {local(window.starts_at, zone)} -> {local(window.ends_at, zone)}{repeat}, "
          f"{_covers(window)}: {window.reason} (declared by {window.created_by})")


def _sync_silences(settings: CollectorSettings, store: Store) -> None:
    """Mirror the windows into Alertmanager now, rather than at the server's next sync."""
    if not settings.alerting.enabled:
        return
    from commune_collector.maintenance.silences import SilenceSync

    result = SilenceSync(settings.alerting).sync(store.list_windows(time.time()))
    if result.error:
        print(f"warning: Alertmanager not updated ({result.error}); the collector retries every minute",
              file=sys.stderr)
    else:
        print(f"Alertmanager silences: {result.created} created, {result.expired} expired", file=sys.stderr)


def _failing(func):  # noqa: ANN001, ANN202 - wraps a cmd_* function
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except MaintenanceError as exc:
            print(f"error: {exc.field}: {exc}", file=sys.stderr)
        except NotAllowed as exc:
            print(f"error: {exc}", file=sys.stderr)
        return 2
    return run


def add_maintenance(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("maintenance", help="declare, list and cancel maintenance windows",
                       description="Planned work (a scheduled power cut, a data-center move): the communes' time "
                                   "in a window counts neither for nor against them, their alerts are silenced "
                                   "for exactly that time, and their pages say why.")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    add = verbs.add_parser("add", help="declare a window", description="Declare a maintenance window.")
    add.add_argument("--site", action="append", metavar="ID", help="a commune's site id (repeat for several)")
    add.add_argument("--sites-file", metavar="FILE", help="site ids, one per line (# comments allowed)")
    add.add_argument("--province", metavar="SLUG", help="every commune of this province")
    add.add_argument("--upstream", metavar="NAME", help="every commune sharing this upstream (inventory column)")
    add.add_argument("--from", dest="start", required=True, metavar="TIME", help=TIME_HELP)
    add.add_argument("--to", dest="end", required=True, metavar="TIME", help="end of the (first) occurrence")
    add.add_argument("--every", choices=sorted(PERIODS), help="recurring: every day or week")
    add.add_argument("--until", metavar="TIME", help="a recurring window's last start is before this")
    add.add_argument("--reason", required=True, help="why, in the words the pages and alerts will show")
    add.set_defaults(func=_failing(cmd_add))
    ls = verbs.add_parser("list", help="windows now or ahead (--all: every one ever declared)")
    ls.add_argument("--all", action="store_true", help="include ended and cancelled windows (the history)")
    ls.add_argument("--province", metavar="SLUG", help="only windows touching this province")
    ls.set_defaults(func=_failing(cmd_list))
    show = verbs.add_parser("show", help="one window: its times, communes and history")
    show.add_argument("id", metavar="ID", help="e.g. mw-1a2b3c4d")
    show.set_defaults(func=_failing(cmd_show))
    stop = verbs.add_parser("cancel", help="end a window now (its record stays)")
    stop.add_argument("id", metavar="ID", help="e.g. mw-1a2b3c4d")
    stop.add_argument("--note", help="why (work finished early, postponed), kept in the history")
    stop.set_defaults(func=_failing(cmd_cancel))
    for parser in (add, ls, show, stop):
        add_config_arg(parser)
        parser.add_argument("--token-file", metavar="FILE",
                            help="act as this operator (scoped by its role); default: the administrator")
        parser.add_argument("--by", metavar="NAME", help="the name recorded without a token (default: login name)")
