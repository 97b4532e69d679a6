"""The default store: one SQLite file in the data directory, WAL mode.

WAL lets the API's readers run while the single writer commits; ``synchronous
= FULL`` makes every COMMIT reach the disk before the writer resolves its
futures, so a 200 survives a power cut (group commit keeps that affordable).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from commune_collector.store.migrate import Migration
from commune_collector.store.sql import Dialect, SqlStore

BUSY_TIMEOUT_S = 10.0


def split_statements(script: str) -> Iterator[str]:
    """Split a SQL script into statements the way SQLite does (triggers included)."""
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                yield buf
            buf = ""
    if buf.strip() and not all(ln.strip().startswith("--") or not ln.strip() for ln in buf.splitlines()):
        yield buf


# A store of 10,000 sites holds gigabytes of summaries: with SQLite's default 2 MiB page cache every
# B-tree walk is a string of read() calls. Reading through a memory map (pages stay in the OS cache,
# shared by every connection) and a larger cache per connection make them memory accesses.
MMAP_BYTES = 16 * 2**30
CACHE_KIB = 32 * 1024


class FileLease:
    """Held while this process keeps the file descriptor; the kernel drops the lock when it dies."""

    def __init__(self, fd: int):
        self._fd: int | None = fd

    @classmethod
    def take(cls, path: Path) -> FileLease | None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return cls(fd)

    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class WriteGate:
    """An ``flock`` on ``<db>.write-lock`` held around one writer's transaction, across processes.

    SQLite's own write lock has no queue: a writer that finds it taken sleeps 1, 2, 5, ... up to
    100 ms between tries (its busy handler), so while the aggregator folds in back-to-back
    transactions, ingest's commit could sleep through a lock that was free most of that time.
    A blocked ``flock`` wakes the moment the holder lets go. Each writer has its own gate (its own
    open file), so two writers in one process exclude each other too.
    """

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> WriteGate:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)


class SQLiteDialect(Dialect):
    name = "sqlite"
    begin_sql = "BEGIN IMMEDIATE"  # take the write lock up front: no deadlock with another process

    def __init__(self, path: Path, synchronous: str = "FULL"):
        self.path = Path(path)
        self.synchronous = synchronous

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        conn.execute("PRAGMA journal_size_limit = 67108864")
        conn.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")
        conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        return conn

    def connect_writer(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return self._connect()

    def connect_reader(self) -> sqlite3.Connection:
        return self._connect()

    def executemany(self, conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        conn.executemany(sql, rows)

    def run_migration(self, conn: Any, migration: Migration, record: Callable[[Any], None]) -> bool:
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (migration.version,)).fetchall():
                conn.execute("ROLLBACK")
                return False
            for statement in split_statements(migration.sql):
                conn.execute(statement)
            record(conn)
            conn.execute("COMMIT")
            return True
        except Exception:
            conn.execute("ROLLBACK")
            raise

    def take_judge_lease(self) -> FileLease | None:
        """An exclusive ``flock`` on ``<db>.judge-lock``: two collectors on one data dir never both judge."""
        return FileLease.take(self.path.with_name(self.path.name + ".judge-lock"))

    def write_gate(self) -> WriteGate:
        return WriteGate(self.path.with_name(self.path.name + ".write-lock"))

    def is_db_error(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.Error)


class SQLiteStore(SqlStore):
    def __init__(self, path: str | Path, *, synchronous: str = "FULL", **kwargs: Any):
        self.path = Path(path)
        super().__init__(SQLiteDialect(self.path, synchronous), **kwargs)
