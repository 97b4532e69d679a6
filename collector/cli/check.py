"""``check-config`` and ``check-criteria``: validate a file, exit 1 with file:line messages."""

from __future__ import annotations

import argparse
from pathlib import Path

from commune_collector.judge.criteria import load_criteria
from commune_collector.settings import load_settings


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = load_settings(args.file)
    store = "PostgreSQL" if settings.database.dsn else f"SQLite in {settings.data_dir}"
    print(f"{args.file}: OK, listen {settings.listen}, store {store}, "
          f"TLS {'on' if settings.tls.enabled else 'off'}, remote_write {'on' if settings.remote_write.url else 'off'}")
    return 0


def add_check_config(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check-config", help="validate a collector config; exit 1 with file:line messages")
    p.add_argument("file")
    p.set_defaults(func=cmd_check_config)


def cmd_check_criteria(args: argparse.Namespace) -> int:
    config = load_criteria(args.file)  # ConfigError -> located messages, exit 1 (commune_collector.cli.main)
    print(f"{args.file}: ok, {config.describe()}")
    return 0


def add_check_criteria(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("check-criteria", help="validate a criteria file (exit 1 with file:line messages)",
                       description="Load a criteria YAML and report every problem with its file, line and field.")
    c.add_argument("file", type=Path, help="criteria YAML, e.g. config/criteria.yaml")
    c.set_defaults(func=cmd_check_criteria)
