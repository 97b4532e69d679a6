"""``commune-collector``: serve the API, manage the inventory and the per-site tokens.

Subcommands are registered in ``COMMANDS``: each entry is one function that
adds its parser(s); a feature adds a subcommand with one function and one line.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from commune_collector import __version__
from commune_collector.settings import CollectorSettings, load_settings
from commune_collector.store.base import Store, StoreError
from commune_common.yamlconf import ConfigError

if TYPE_CHECKING:
    import uvicorn

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


# -- shared helpers (other subcommands use them too) ------------------------------------


def add_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", metavar="FILE",
                        help="collector YAML (default: built-in defaults, data in .state/collector)")


def settings_from(args: argparse.Namespace) -> CollectorSettings:
    """The settings named by --config, or the defaults; ConfigError on a bad file."""
    return load_settings(args.config) if getattr(args, "config", None) else CollectorSettings()


def open_store_from(args: argparse.Namespace) -> Store:
    """The configured store, migrated and ready."""
    from commune_collector.store import open_store
    store = open_store(settings_from(args))
    store.migrate()
    return store


def _print_config_error(exc: ConfigError) -> None:
    for issue in exc.issues:
        print(f"error: {issue}", file=sys.stderr)
    print(f"{len(exc.issues)} error(s)", file=sys.stderr)


# -- serve ---------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from commune_collector.app import create_app
    settings = settings_from(args)
    if args.listen:
        settings = settings.model_copy(update={"listen": args.listen})
    logging.basicConfig(level=getattr(logging, settings.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    host, port = settings.listen_address()
    scheme = "https" if settings.tls.enabled else "http"
    where = settings.database.dsn and "PostgreSQL" or f"SQLite {settings.data_dir / settings.database.sqlite_file}"
    print(f"commune-collector {__version__}: {scheme}://{host}:{port}/ (store: {where})", file=sys.stderr,
          flush=True)
    uvicorn.Server(uvicorn_config(create_app(settings, settle=True), settings)).run()
    return 0


def uvicorn_config(app: Any, settings: CollectorSettings) -> uvicorn.Config:
    """The HTTP(S) server's settings: keep-alive, TLS, no access log (ingest would log 333 lines a second)."""
    import uvicorn

    host, port = settings.listen_address()
    return uvicorn.Config(app, host=host, port=port, log_level=settings.log_level, access_log=False,
                          server_header=False, lifespan="on", timeout_graceful_shutdown=10,
                          timeout_keep_alive=math.ceil(settings.keep_alive),
                          ssl_certfile=str(settings.tls.cert_file) if settings.tls.cert_file else None,
                          ssl_keyfile=str(settings.tls.key_file) if settings.tls.key_file else None)


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the HTTP(S) API: ingest, sites, /metrics, /docs",
                       description="Run the collector until SIGTERM/SIGINT.")
    add_config_arg(p)
    p.add_argument("--listen", metavar="HOST:PORT", help="override listen from the config")
    p.set_defaults(func=cmd_serve)


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = load_settings(args.file)
    store = "PostgreSQL" if settings.database.dsn else f"SQLite in {settings.data_dir}"
    print(f"{args.file}: OK, listen {settings.listen}, store {store}, "
          f"TLS {'on' if settings.tls.enabled else 'off'}, remote_write {'on' if settings.remote_write.url else 'off'}")
    return 0


def _add_check_config(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check-config", help="validate a collector config; exit 1 with file:line messages")
    p.add_argument("file")
    p.set_defaults(func=cmd_check_config)


def cmd_migrate(args: argparse.Namespace) -> int:
    from commune_collector.store import open_store
    store = open_store(settings_from(args))
    try:
        applied = store.migrate()
    finally:
        store.close()
    print(f"applied {len(applied)} migration(s){': ' + ', '.join(applied) if applied else ''}")
    return 0


def cmd_aggregate(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    logging.basicConfig(level=getattr(logging, settings.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.once:
        store = open_store_from(args)
        try:
            folded = store.aggregate_now()
            pruned = store.prune(time.time(), settings.retention.evidence, settings.retention.reports_seen)
        finally:
            store.close()
        print(f"folded {folded} report(s) into summaries; pruned {pruned.summaries} summaries, "
              f"{pruned.report_ranges} report-id ranges")
        return 0
    from commune_collector.aggregator import run_until_stopped
    print(f"folding the journal every {settings.aggregator.interval:g}s until SIGTERM", file=sys.stderr)
    run_until_stopped(settings)
    return 0


def _add_aggregate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("aggregate", help="fold the journal into hourly summaries (serve does it in a child process)",
                       description="Run the aggregator on its own: every aggregator.interval until SIGTERM, or once.")
    add_config_arg(p)
    p.add_argument("--once", action="store_true", help="fold what is there now, prune, and exit")
    p.set_defaults(func=cmd_aggregate)


def _add_migrate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("migrate", help="apply pending schema migrations (serve does it too)")
    add_config_arg(p)
    p.set_defaults(func=cmd_migrate)


# -- sites ---------------------------------------------------------------------------


class _Progress:
    """Progress on stderr, at most a few lines a second, for imports of thousands of sites."""

    def __init__(self, what: str):
        self.what = what
        self.shown = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - self.shown > 0.5:
            print(f"  {self.what} {done}/{total}", file=sys.stderr, flush=True)
            self.shown = now


def cmd_sites_import(args: argparse.Namespace) -> int:
    from commune_collector.inventory import load_inventory
    sites = load_inventory(args.file)
    print(f"{args.file}: {len(sites)} sites valid", file=sys.stderr)
    if args.dry_run:
        return 0
    store = open_store_from(args)
    try:
        counts = store.upsert_sites(sites, progress=_Progress("stored"))
    finally:
        store.close()
    print(f"imported {len(sites)} sites: {counts.inserted} new, {counts.updated} updated, "
          f"{counts.unchanged} unchanged")
    return 0


def cmd_sites_list(args: argparse.Namespace) -> int:
    from commune_collector.provinces import provinces
    if args.province and args.province not in provinces():
        print(f"error: unknown province {args.province!r}; known: {', '.join(provinces())}", file=sys.stderr)
        return 2
    store = open_store_from(args)
    try:
        page = store.list_sites(args.province, args.limit, args.offset)
        status = store.site_status([s.id for s in page.items]) if page.items else {}
    finally:
        store.close()
    if args.json:
        print(json.dumps({"total": page.total, "items": [_site_json(s, status.get(s.id)) for s in page.items]},
                         ensure_ascii=False, indent=2))
        return 0
    for s in page.items:
        st = status.get(s.id)
        seen = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st.last_report_at)) if st else "never"
        print(f"{s.id:<40} {s.province:<12} {s.commune:<30} last report {seen}")
    print(f"{len(page.items)} of {page.total} sites", file=sys.stderr)
    return 0


def _site_json(site: object, status: object) -> dict:
    from dataclasses import asdict
    return {**asdict(site), "status": asdict(status) if status else None}  # type: ignore[call-overload]


def cmd_sites_generate(args: argparse.Namespace) -> int:
    from commune_collector.generate import generate_sites
    from commune_collector.inventory import sites_to_csv, sites_to_yaml
    sites = generate_sites(args.count, args.seed)
    fmt = args.format or ("yaml" if args.output and args.output.endswith((".yaml", ".yml")) else "csv")
    text = sites_to_yaml(sites) if fmt == "yaml" else sites_to_csv(sites)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {len(sites)} sites over {len({s.province for s in sites})} provinces to {args.output}",
              file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _add_sites(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sites", help="the site inventory: import, list, generate")
    ssub = p.add_subparsers(dest="sites_command", required=True, metavar="ACTION")
    imp = ssub.add_parser("import", help="import sites from CSV or YAML (idempotent, all or nothing)",
                          description="Columns: id,name,province,commune[,links,devices,power]; "
                                      "lists separated by ';'. Errors name the line.")
    imp.add_argument("file", help="inventory .csv, .yaml or .yml")
    imp.add_argument("--dry-run", action="store_true", help="validate only")
    add_config_arg(imp)
    imp.set_defaults(func=cmd_sites_import)
    lst = ssub.add_parser("list", help="list sites with their last report time")
    lst.add_argument("--province", help="only this province (slug, e.g. ha-noi)")
    lst.add_argument("--limit", type=int, default=100)
    lst.add_argument("--offset", type=int, default=0)
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    add_config_arg(lst)
    lst.set_defaults(func=cmd_sites_list)
    gen = ssub.add_parser("generate", help="write a realistic inventory (34 provinces, Vietnamese names)")
    gen.add_argument("--count", type=int, default=3321, help="number of sites (default 3321)")
    gen.add_argument("--seed", type=int, default=1, help="same seed, same inventory (default 1)")
    gen.add_argument("--format", choices=["csv", "yaml"], help="default: from -o's suffix, else csv")
    gen.add_argument("--output", "-o", help="file to write (default: stdout)")
    gen.set_defaults(func=cmd_sites_generate)


# -- tokens --------------------------------------------------------------------------


def cmd_token_issue(args: argparse.Namespace) -> int:
    from commune_collector.auth import new_token
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


def _add_token(sub: argparse._SubParsersAction) -> None:
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


def _add_agent_config(sub: argparse._SubParsersAction) -> None:
    from commune_collector.agentconfig import add_subcommand  # the feature lives in its own module
    add_subcommand(sub)


def _add_report(sub: argparse._SubParsersAction) -> None:
    from commune_collector.report import (
        add_subcommands,  # report and check-criteria live with the judge
    )
    add_subcommands(sub)


# one function per subcommand (tree); a feature adds its own with one line
COMMANDS: list[Register] = [_add_serve, _add_check_config, _add_migrate, _add_aggregate, _add_sites, _add_token,
                            _add_agent_config, _add_report]

def _add_fleet(sub: argparse._SubParsersAction) -> None:
    from commune_collector.fleet.cli import add_subcommands

    add_subcommands(sub)


COMMANDS.append(_add_fleet)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="commune-collector", description=(
        "Collect commune-agent reports, keep the evidence, serve the API and the status page."))
    parser.add_argument("--version", action="version", version=f"commune-collector {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in COMMANDS:
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        _print_config_error(exc)
        return 1
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
