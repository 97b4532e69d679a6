"""``commune-collector serve``: the HTTP(S) API, ingest, /metrics and the status page."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from typing import TYPE_CHECKING, Any

from commune_collector import __version__
from commune_collector.cli.common import add_config_arg, settings_from
from commune_collector.settings import CollectorSettings

if TYPE_CHECKING:
    import uvicorn


def cmd_serve(args: argparse.Namespace) -> int:
    # start-up: only `serve` loads FastAPI, uvicorn and the app; at the top, every other subcommand
    # (token, sites, migrate, ...) would pay about 0.4 s and 14 MB more for them
    import uvicorn

    from commune_collector.runtime.app import create_app

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
    if settings.database.dsn:
        from commune_collector.dbreach import ping
        ping(settings.database.dsn)  # unreachable: one line from main(), not the lifespan's traceback
    server = uvicorn.Server(uvicorn_config(create_app(settings, settle=True), settings))
    server.run()
    return 0 if server.started else 1  # uvicorn returns quietly when the app's startup failed


def uvicorn_config(app: Any, settings: CollectorSettings) -> uvicorn.Config:
    """The HTTP(S) server's settings: keep-alive, TLS, no access log (ingest would log 333 lines a second)."""
    import uvicorn  # start-up: see cmd_serve

    from commune_collector.api.arrival import ArrivalProtocol
    from commune_collector.httpguard import guarded_protocol

    host, port = settings.listen_address()
    return uvicorn.Config(app, host=host, port=port, log_level=settings.log_level, access_log=False,
                          http=guarded_protocol(settings.http, ArrivalProtocol),  # limits; stamps arrival times
                          server_header=False, lifespan="on", timeout_graceful_shutdown=10,
                          timeout_keep_alive=math.ceil(settings.keep_alive),
                          ssl_certfile=str(settings.tls.cert_file) if settings.tls.cert_file else None,
                          ssl_keyfile=str(settings.tls.key_file) if settings.tls.key_file else None)


def add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the HTTP(S) API: ingest, sites, /metrics, /docs",
                       description="Run the collector until SIGTERM/SIGINT.")
    add_config_arg(p)
    p.add_argument("--listen", metavar="HOST:PORT", help="override listen from the config")
    p.set_defaults(func=cmd_serve)
