"""``migrate`` and ``aggregate``: the database's schema and the journal's folding, run by hand."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from commune_collector.aggregator import fold_journal, prune_evidence
from commune_collector.cli.common import add_config_arg, open_store_from, settings_from
from commune_collector.runtime.aggregator_process import run_until_stopped
from commune_collector.store import open_store


def cmd_migrate(args: argparse.Namespace) -> int:
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
            folded = fold_journal(store)
            pruned = prune_evidence(store, time.time(), settings.retention.evidence, settings.retention.reports_seen)
        finally:
            store.close()
        print(f"folded {folded} report(s) into summaries; pruned {pruned.summaries} summaries, "
              f"{pruned.report_ranges} report-id ranges")
        return 0
    print(f"folding the journal every {settings.aggregator.interval:g}s until SIGTERM", file=sys.stderr)
    run_until_stopped(settings)
    return 0


def add_aggregate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("aggregate", help="fold the journal into hourly summaries (serve does it in a child process)",
                       description="Run the aggregator on its own: every aggregator.interval until SIGTERM, or once.")
    add_config_arg(p)
    p.add_argument("--once", action="store_true", help="fold what is there now, prune, and exit")
    p.set_defaults(func=cmd_aggregate)


def add_migrate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("migrate", help="apply pending schema migrations (serve does it too)")
    add_config_arg(p)
    p.set_defaults(func=cmd_migrate)
