"""Versioned schema migrations: numbered SQL files applied in order, each once.

Files live in ``collector/store/migrations/`` and are named
``NNNN_name.sqlite.sql`` / ``NNNN_name.postgres.sql`` (one per dialect) or
``NNNN_name.sql`` (the same SQL for both). Any number works, so a feature
can claim its own range (the judge's verdict tables start at 0100). Applied
versions are recorded in ``schema_migrations``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

_FILE = re.compile(r"^(\d+)_([A-Za-z0-9_-]+?)(?:\.(sqlite|postgres))?\.sql$")
PACKAGE = "commune_collector.store.migrations"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def discover(dialect: str, package: str = PACKAGE) -> list[Migration]:
    """Every migration for ``dialect``, by version; two files for one version is an error."""
    found: dict[int, Migration] = {}
    for entry in resources.files(package).iterdir():
        match = _FILE.match(entry.name)
        if not match or match.group(3) not in (None, dialect):
            continue
        version = int(match.group(1))
        if version in found:
            raise ValueError(f"two migrations numbered {version}: {found[version].name} and {entry.name}")
        found[version] = Migration(version, entry.name, entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]
