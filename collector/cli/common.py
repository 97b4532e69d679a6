"""What every subcommand shares: --config, the settings and the store it names, progress, errors."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from commune_collector.settings import CollectorSettings, load_settings
from commune_collector.store import open_store
from commune_collector.store.base import Store
from commune_common.yamlconf import ConfigError

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def add_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", metavar="FILE",
                        help="collector YAML (default: built-in defaults, data in .state/collector)")


def settings_from(args: argparse.Namespace) -> CollectorSettings:
    """The settings named by --config, or the defaults; ConfigError on a bad file."""
    return load_settings(args.config) if getattr(args, "config", None) else CollectorSettings()


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
