"""What every subcommand shares: --config, the settings and the store it names, progress, errors."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from commune_collector.settings import CollectorSettings, load_settings
from commune_collector.store import open_store
from commune_collector.store.base import Store
from commune_common.yamlconf import ConfigError

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


DEFAULT_CONFIG = Path("/etc/commune-collector/collector.yaml")


class UsageError(Exception):
    """A command line that cannot be carried out as given (an unreadable file it names); exit 2."""


def operator_token(args: argparse.Namespace) -> str | None:
    """--token-file, else $COMMUNE_OPERATOR_TOKEN (never an argument of its own: ps would show it)."""
    if getattr(args, "token_file", None):
        try:
            return Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UsageError(f"--token-file {args.token_file}: {exc.strerror}") from None
    return os.environ.get("COMMUNE_OPERATOR_TOKEN") or None


class NoConfig(Exception):
    """No --config and no installed config: which store to open is unknown, so nothing is created."""


def add_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", metavar="FILE",
                        help=f"collector YAML (default: {DEFAULT_CONFIG} when it exists)")


def settings_from(args: argparse.Namespace) -> CollectorSettings:
    """The settings named by --config, else the installed config; never a store made up in the cwd."""
    if getattr(args, "config", None):
        return load_settings(args.config)
    if DEFAULT_CONFIG.exists():
        return load_settings(DEFAULT_CONFIG)
    raise NoConfig(f"no --config given and no {DEFAULT_CONFIG}: say which collector config to use "
                   "(its data_dir or database.dsn says where the store is), e.g. --config config/collector.yaml")


def configured_dsn(args: argparse.Namespace) -> str | None:
    """The DSN the arguments name, only for naming its host in an error message."""
    try:
        return settings_from(args).database.dsn
    except Exception:
        return None


def open_store_from(args: argparse.Namespace) -> Store:
    """The configured store, migrated and ready."""
    store = open_store(settings_from(args))
    store.migrate()
    return store


def print_config_error(exc: ConfigError) -> None:
    for issue in exc.issues:
        print(f"error: {issue}", file=sys.stderr)
    print(f"{len(exc.issues)} error(s)", file=sys.stderr)



class Progress:
    """Progress on stderr, at most a few lines a second, for imports of thousands of sites."""

    def __init__(self, what: str):
        self.what = what
        self.shown = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - self.shown > 0.5:
            print(f"  {self.what} {done}/{total}", file=sys.stderr, flush=True)
            self.shown = now
