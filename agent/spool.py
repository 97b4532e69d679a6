"""The agent's on-disk queue of results not yet acknowledged by the collector.

One SQLite file, ``<state_dir>/spool.db``. Each row is one batch of results
(what one push interval produced), zlib-compressed msgspec JSON. Why SQLite:
a committed transaction survives ``kill -9`` and a power cut, a half-written
batch never becomes visible, and it needs no daemon.

Durability: WAL with ``synchronous=FULL``, so every commit is fsynced before
``append`` returns. NORMAL would survive ``kill -9`` but may lose the last
commits on power loss, and power loss is exactly what a commune site monitors;
the price is one fsync per push interval, nothing at that rate.

Idempotency: a row gets its sequence number when it is first sent, not when it
is written, so rows that never left the agent (the collector was down, the
link was cut) can still be coalesced into one bigger report at replay. Once a
number is given out it is frozen with its rows: a resend carries the same
``(site, instance, seq)`` and the collector stores it once. A number is handed
back (``release``), and reused, only when its one and only send provably never
reached the collector (the TCP connection was never made); every send is
recorded before it leaves, so a crash mid-send cannot make a report that may
have arrived look unsent. ``instance`` and the sequence counter
live in the same file: if the spool is lost, a new instance is drawn, so a
restarted counter can never collide with numbers the collector already holds.

Bounds and drop policy (oldest first): rows older than ``max_age`` are dropped
(reason ``age``); while the file holds more than ``max_bytes`` of batches,
quarantined rows go first, then the oldest pending ones (reason ``size``).
Old evidence is the least valuable for a live verdict, and the collector can
judge a gap as unknown. Rows the collector refused for good (400, 401, 403,
413, 422) are quarantined: kept aside for inspection, never sent again,
counted as dropped with reason ``rejected``.

The class is synchronous and not thread-safe on purpose: the pusher runs every
call on one dedicated thread, so the event loop never waits for an fsync.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from commune_common.wire import MAX_RESULTS_PER_REPORT, CheckResult

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
FILE_NAME = "spool.db"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    created  REAL    NOT NULL,              -- agent clock when spooled
    results  INTEGER NOT NULL,              -- number of check results in body
    bytes    INTEGER NOT NULL,              -- len(body), what the size bound counts
    body     BLOB    NOT NULL,              -- zlib(msgspec JSON list[CheckResult])
    seq      INTEGER,                       -- NULL until first sent; then frozen
    attempts INTEGER NOT NULL DEFAULT 0,    -- sends begun under this seq (written before each POST)
    rejected INTEGER                        -- HTTP status if quarantined
);
CREATE INDEX IF NOT EXISTS batches_seq ON batches (seq);
"""
_results_decoder = msgspec.json.Decoder(list[CheckResult])
_encoder = msgspec.json.Encoder()


class SpoolError(Exception):
    """The spool file cannot be opened or used; the message says which file and why."""


@dataclass(frozen=True)
class Group:
    """Rows sent together as one report under one sequence number."""

    seq: int
    row_ids: tuple[int, ...]
    results: list[CheckResult]
    stored_bytes: int
    oldest_created: float


@dataclass(frozen=True)
class SpoolStats:
    """A snapshot for /metrics, taken after every change (scrapes never touch the file)."""

    reports: int = 0
    results: int = 0
    bytes: int = 0
    oldest_created: float | None = None
    quarantined: int = 0


@dataclass
class DropCounts:
    """Everything dropped so far, by reason: ``{reason: (reports, results)}``."""

    by_reason: dict[str, tuple[int, int]] = field(default_factory=dict)

    def add(self, reason: str, reports: int, results: int) -> None:
        old_reports, old_results = self.by_reason.get(reason, (0, 0))
        self.by_reason[reason] = (old_reports + reports, old_results + results)


class Spool:
    """The on-disk queue; see the module docstring for the rules it keeps."""

    def __init__(self, path: Path, *, max_bytes: int, max_age: float,
                 clock: Callable[[], float] = time.time, drops: DropCounts | None = None):
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.clock = clock
        self.drops = drops if drops is not None else DropCounts()
        self.stats = SpoolStats()
        self._db = self._open()
        self.instance = self._meta("instance") or self._new_instance()
        self.enforce_bounds()

    # -- opening ---------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        """Open (creating if needed); a file that is not a usable spool is moved aside."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            return self._connect()
        except sqlite3.OperationalError as exc:  # permissions, read-only disk, locked: not corruption
            raise SpoolError(f"{self.path}: cannot open the spool: {exc}") from None
        except sqlite3.DatabaseError as exc:  # not a database, malformed, failed integrity check
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(self.clock())}")
            log.error("spool %s is unreadable (%s); moved aside to %s and starting a new one "
                      "with a new instance id", self.path, exc, aside)
            self.path.rename(aside)
            for suffix in ("-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            return self._connect()
        except OSError as exc:
            raise SpoolError(f"{self.path}: cannot open the spool: {exc}") from None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA busy_timeout = 5000")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("integrity check failed")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise SpoolError(f"{self.path}: written by a newer agent (schema {version} > "
                                 f"{SCHEMA_VERSION}); upgrade the agent or move the file away")
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            db.close()
            raise
        return db

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _new_instance(self) -> str:
        instance = secrets.token_hex(8)
        with self._tx() as db:
            db.execute("INSERT INTO meta (key, value) VALUES ('instance', ?), ('next_seq', '1')", (instance,))
        log.info("spool %s: new agent instance %s", self.path, instance)
        return instance

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it is on disk when this exits, or none of it."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()

    # -- writing ---------------------------------------------------------------

    def append(self, results: Sequence[CheckResult], max_results: int = MAX_RESULTS_PER_REPORT) -> list[int]:
        """Store results durably (split into rows of at most ``max_results``); return the row ids."""
        ids: list[int] = []
        now = self.clock()
        with self._tx() as db:
            for start in range(0, len(results), max_results):
                chunk = list(results[start:start + max_results])
                body = zlib.compress(_encoder.encode(chunk), 6)
                cur = db.execute("INSERT INTO batches (created, results, bytes, body) VALUES (?, ?, ?, ?)",
                                 (now, len(chunk), len(body), body))
                ids.append(int(cur.lastrowid or 0))
            dropped = self._enforce(db)  # same transaction: one fsync per append
        self._count_drops(dropped)
        return ids

    def enforce_bounds(self) -> None:
        """Drop by age, then by size (quarantined rows first, then oldest); count every drop."""
        with self._tx() as db:
            dropped = self._enforce(db)
        self._count_drops(dropped)

    def _enforce(self, db: sqlite3.Connection) -> list[tuple[str, int, int]]:
        """Delete what the bounds exclude; return (reason, batches, results) to count once committed."""
        cutoff = self.clock() - self.max_age
        dropped = [self._delete(db, "age", db.execute(
            "SELECT id, results, rejected FROM batches WHERE created < ? ORDER BY id", (cutoff,)).fetchall())]
        total = db.execute("SELECT coalesce(sum(bytes), 0) FROM batches").fetchone()[0]
        if total > self.max_bytes:
            excess = total - self.max_bytes
            victims = []
            for row_id, results, rejected, size in db.execute(
                    "SELECT id, results, rejected, bytes FROM batches ORDER BY rejected IS NULL, id").fetchall():
                if excess <= 0:
                    break
                victims.append((row_id, results, rejected))
                excess -= size
            dropped.append(self._delete(db, "size", victims))
        return dropped

    @staticmethod
    def _delete(db: sqlite3.Connection, reason: str, rows: list[tuple[int, int, int | None]]) -> tuple[str, int, int]:
        db.executemany("DELETE FROM batches WHERE id = ?", [(r[0],) for r in rows])
        live = [r for r in rows if r[2] is None]  # quarantined rows were counted (rejected) when refused
        return reason, len(live), sum(r[1] for r in live)

    def _count_drops(self, dropped: list[tuple[str, int, int]]) -> None:
        for reason, batches, results in dropped:
            if batches:
                self.drops.add(reason, batches, results)
                # debug: `commune-agent run` logs drops once per change, with counts (agent/narrator.py)
                log.debug("spool: dropped %d batch(es), %d result(s), reason %s", batches, results, reason)
        self._refresh_stats()

    # -- sending ---------------------------------------------------------------

    def newest_id(self) -> int | None:
        row = self._db.execute("SELECT max(id) FROM batches WHERE rejected IS NULL").fetchone()
        return row[0]

    def claim(self, row_id: int) -> Group | None:
        """The report that carries row ``row_id`` (numbered now if it never was); None if gone."""
        row = self._db.execute("SELECT seq FROM batches WHERE id = ? AND rejected IS NULL", (row_id,)).fetchone()
        if row is None:
            return None
        if row[0] is not None:
            return self._group(row[0])
        return self._assign([row_id])

    def claim_oldest(self, max_results: int, max_bytes: int, force: bool = False) -> Group | None:
        """The oldest pending report within ``max_bytes`` (``force``: at least one row regardless).

        A row already numbered is resent with exactly the rows it had; rows
        never sent are coalesced oldest first up to ``max_results`` results.
        """
        first = self._db.execute("SELECT id, seq, bytes FROM batches WHERE rejected IS NULL "
                                 "ORDER BY id LIMIT 1").fetchone()
        if first is None:
            return None
        if first[1] is not None:
            group = self._group(first[1])
            return group if force or group.stored_bytes <= max_bytes else None
        picked: list[int] = []
        results = size = 0
        for row_id, row_results, row_bytes in self._db.execute(
                "SELECT id, results, bytes FROM batches WHERE rejected IS NULL AND seq IS NULL ORDER BY id"):
            if results + row_results > max_results or size + row_bytes > max_bytes:
                if picked or not force:
                    break
            picked.append(row_id)
            results += row_results
            size += row_bytes
            if results >= max_results:
                break
        return self._assign(picked) if picked else None

    def _assign(self, row_ids: list[int]) -> Group:
        with self._tx() as db:
            seq = int(db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()[0])
            db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (str(seq + 1),))
            db.executemany("UPDATE batches SET seq = ? WHERE id = ?", [(seq, i) for i in row_ids])
        return self._group(seq)

    def _group(self, seq: int) -> Group:
        rows = self._db.execute("SELECT id, body, bytes, created FROM batches "
                                "WHERE seq = ? AND rejected IS NULL ORDER BY id", (seq,)).fetchall()
        results: list[CheckResult] = []
        good = []
        for row_id, body, _, _ in rows:
            try:
                results.extend(_results_decoder.decode(zlib.decompress(body)))
                good.append(row_id)
            except (zlib.error, msgspec.DecodeError) as exc:
                self._quarantine_corrupt(row_id, exc)
        kept = [r for r in rows if r[0] in good]
        return Group(seq, tuple(good), results, sum(r[2] for r in kept), min((r[3] for r in kept), default=0.0))

    def _quarantine_corrupt(self, row_id: int, exc: Exception) -> None:
        """A row that no longer decodes cannot be sent: set it aside, never block the queue."""
        with self._tx() as db:
            n = db.execute("SELECT results FROM batches WHERE id = ?", (row_id,)).fetchone()[0]
            db.execute("UPDATE batches SET rejected = 0 WHERE id = ?", (row_id,))
        self.drops.add("corrupt", 1, n)
        log.error("spool: batch %d does not decode (%s); quarantined", row_id, exc)
        self._refresh_stats()

    def begin_attempt(self, seq: int) -> None:
        """Record, durably and before the request leaves, that report ``seq`` is being sent.

        Written ahead so that after a crash mid-send the report counts as
        possibly delivered, and is never renumbered (which could store it twice).
        """
        with self._tx() as db:
            db.execute("UPDATE batches SET attempts = attempts + 1 WHERE seq = ?", (seq,))

    def release(self, seq: int) -> bool:
        """The one send of ``seq`` failed before connecting: let its rows be numbered afresh.

        Refused (False) when an earlier attempt under this number may have
        reached the collector. The number itself is handed back when it was
        the last one given out (it always is: one sender numbers and sends one
        report at a time), so an outage leaves no gap in the numbers the
        collector sees; its idempotency records compact only over gap-free runs.
        """
        with self._tx() as db:
            tries = db.execute("SELECT max(attempts) FROM batches WHERE seq = ?", (seq,)).fetchone()[0]
            if tries is None or tries > 1:
                return False
            db.execute("UPDATE batches SET seq = NULL, attempts = 0 WHERE seq = ?", (seq,))
            db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq' AND value = ?", (str(seq), str(seq + 1)))
        return True

    def ack(self, seq: int) -> int:
        """The collector holds the report: delete its rows; return how many results they had."""
        with self._tx() as db:
            n = db.execute("SELECT coalesce(sum(results), 0) FROM batches WHERE seq = ?", (seq,)).fetchone()[0]
            db.execute("DELETE FROM batches WHERE seq = ?", (seq,))
        self._refresh_stats()
        return int(n)

    def reject(self, seq: int, status: int) -> tuple[int, int]:
        """Quarantine a report the collector refused for good; return (rows, results)."""
        with self._tx() as db:
            reports, results = db.execute("SELECT count(*), coalesce(sum(results), 0) FROM batches "
                                          "WHERE seq = ? AND rejected IS NULL", (seq,)).fetchone()
            db.execute("UPDATE batches SET rejected = ? WHERE seq = ?", (status, seq))
        self.drops.add("rejected", reports, results)
        self._refresh_stats()
        return int(reports), int(results)

    # -- reading ---------------------------------------------------------------

    def _refresh_stats(self) -> None:
        reports, results, size, oldest = self._db.execute(
            "SELECT count(*), coalesce(sum(results), 0), coalesce(sum(bytes), 0), min(created) "
            "FROM batches WHERE rejected IS NULL").fetchone()
        quarantined, quarantined_bytes = self._db.execute(
            "SELECT count(*), coalesce(sum(bytes), 0) FROM batches WHERE rejected IS NOT NULL").fetchone()
        self.stats = SpoolStats(reports=reports, results=results, bytes=size + quarantined_bytes,
                                oldest_created=oldest, quarantined=quarantined)

    def pending_results(self) -> list[CheckResult]:
        """Every pending result, oldest first (for tests and inspection)."""
        out: list[CheckResult] = []
        for (body,) in self._db.execute("SELECT body FROM batches WHERE rejected IS NULL ORDER BY id"):
            out.extend(_results_decoder.decode(zlib.decompress(body)))
        return out
