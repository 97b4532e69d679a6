"""The store for more than one collector replica: PostgreSQL through psycopg 3.

Same SQL as SQLite (``commune_collector.store.sql``); what differs is the DDL, the
``%s`` placeholders and advisory locks: one so replicas starting together
migrate one at a time, one so only one of them folds the journal at a time,
and a session lock that makes one replica's judge the deployment's judge.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from commune_collector.store.migrate import Migration
from commune_collector.store.sql import Dialect, SqlStore

MIGRATION_LOCK = 0x636D6D69  # "cmmi"
AGGREGATION_LOCK = 0x636D6167  # "cmag"
JUDGE_LOCK = 0x636D6A67  # "cmjg"


class SessionLease:
    """A session advisory lock on a connection of its own: PostgreSQL drops it when the session ends
    (the holder stopped, crashed or lost the network), and another replica's judge takes over."""

    def __init__(self, conn: psycopg.Connection):
        self._conn: psycopg.Connection | None = conn

    def held(self) -> bool:
        if self._conn is None:
            return False
        try:
            self._conn.execute("SELECT 1")
        except psycopg.Error:
            self.release()
            return False
        return True

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


@functools.lru_cache(maxsize=256)
def _placeholders(sql: str) -> str:
    return sql.replace("?", "%s")


class PostgresDialect(Dialect):
    name = "postgres"
    begin_sql = "BEGIN"

    def __init__(self, dsn: str, connect_timeout: float = 5.0):
        self.dsn = dsn
        self.connect_timeout = connect_timeout

    def q(self, sql: str) -> str:
        return _placeholders(sql)

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(self.dsn, autocommit=True, connect_timeout=int(self.connect_timeout),
                               application_name="commune-collector")

    def connect_writer(self) -> psycopg.Connection:
        return self._connect()

    def connect_reader(self) -> psycopg.Connection:
        return self._connect()

    def executemany(self, conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with conn.cursor() as cur:
            cur.executemany(sql, rows)

    def lock_migrations(self, conn: Any) -> None:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))  # released when the connection closes

    def run_migration(self, conn: Any, migration: Migration, record: Callable[[Any], None]) -> bool:
        with conn.transaction():
            if conn.execute("SELECT 1 FROM schema_migrations WHERE version = %s", (migration.version,)).fetchall():
                return False
            conn.execute(migration.sql)
            record(conn)
        return True

    def lock_report_ids(self, conn: Any, site: str, instance: str) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"{site}/{instance}",))

    def lock_aggregation(self, conn: Any) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (AGGREGATION_LOCK,))

    def take_judge_lease(self) -> SessionLease | None:
        conn = self._connect()
        try:
            taken = conn.execute("SELECT pg_try_advisory_lock(%s)", (JUDGE_LOCK,)).fetchone()
        except BaseException:
            conn.close()
            raise
        if taken and taken[0]:
            return SessionLease(conn)
        conn.close()
        return None

    def is_db_error(self, exc: BaseException) -> bool:
        return isinstance(exc, psycopg.Error)

    def is_disconnect(self, exc: BaseException) -> bool:
        return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)


class PostgresStore(SqlStore):
    def __init__(self, dsn: str, **kwargs: Any):
        super().__init__(PostgresDialect(dsn), **kwargs)
