"""Storage: one protocol (``base.Store``), SQLite by default, PostgreSQL with a DSN."""

from __future__ import annotations

from typing import TYPE_CHECKING

from commune_collector.store.base import Store, StoreBusy, StoreError, StoreUnavailable

if TYPE_CHECKING:
    from commune_collector.settings import CollectorSettings

__all__ = ["Store", "StoreBusy", "StoreError", "StoreUnavailable", "open_store"]


def open_store(settings: CollectorSettings) -> Store:
    """The store the settings describe (not migrated yet: call ``migrate()``)."""
    db = settings.database
    common = {"max_pending": db.max_pending_writes, "max_group": db.max_group_commit,
              "sites_per_commit": settings.aggregator.sites_per_commit}
    # memory: each driver (psycopg and libpq, or sqlite3) is imported only when it is the one configured
    if db.dsn:
        from commune_collector.store.postgres import PostgresStore
        return PostgresStore(db.dsn, **common)
    from commune_collector.store.sqlite import SQLiteStore
    return SQLiteStore(settings.data_dir / db.sqlite_file, synchronous=db.sqlite_synchronous, **common)
