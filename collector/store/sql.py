"""The SQL and the logic SQLite and PostgreSQL share; dialects differ only in DDL and plumbing.

Queries are written once with ``?`` placeholders; the PostgreSQL dialect turns
them into ``%s``. Upserts use ``INSERT ... ON CONFLICT ... DO UPDATE`` which
both databases speak. See docs/architecture.md ("Collector") for the model:
ingest writes a journal row, the latest values and the site's state in one
transaction; the aggregator folds the journal into hourly summaries.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol

import msgspec

from commune_collector.evidence import (
    CheckSummary,
    ValueStats,
    bucket_of,
)
from commune_collector.sites import Site
from commune_collector.store.base import (
    AlreadyFolded,
    ImportCounts,
    IngestItem,
    IngestOutcome,
    LatestValue,
    Progress,
    RemovedSites,
    SitePage,
    SiteStatus,
    StoreError,
    StoreStats,
    StoreUnavailable,
    TokenRecord,
    WriteStats,
)
from commune_collector.store.maintenance import MaintenanceSql
from commune_collector.store.migrate import Migration, discover
from commune_collector.store.operators import OperatorSql
from commune_collector.store.writer import GroupWriter
from commune_common.wire import CheckResult, SpoolState

log = logging.getLogger("commune_collector.store")
_json = msgspec.json.Encoder()
_labels_decoder = msgspec.json.Decoder(dict[str, str])
_values_decoder = msgspec.json.Decoder(dict[str, float])
_values_json = msgspec.json.Decoder(dict[str, list])  # summaries.values_json: plain JSON, 5x faster than json
_IN_CHUNK = 500  # values bound into one IN (...) list

# -- shared SQL -----------------------------------------------------------------

SQL_RANGES_NEAR = ("SELECT lo, hi FROM report_ranges WHERE site = ? AND instance = ? AND lo <= ? AND hi >= ? "
                   "ORDER BY lo")
SQL_JOURNAL = "INSERT INTO journal (site, received_at, shift_s, body) VALUES (?, ?, ?, ?)"
SQL_LATEST = (
    "INSERT INTO latest (site, check_id, probe, ts, ok, duration_s, reason, labels, vals) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (site, check_id) DO UPDATE SET "
    "probe = excluded.probe, ts = excluded.ts, ok = excluded.ok, duration_s = excluded.duration_s, "
    "reason = excluded.reason, labels = excluded.labels, vals = excluded.vals "
    "WHERE excluded.ts >= latest.ts")
SQL_STATE = (
    "INSERT INTO site_state (site, instance, agent_version, last_seq, last_report_at, last_sent_at, "
    "clock_offset_s, clock_flagged, spool_reports, spool_oldest_age_s, spool_dropped_reports, "
    "spool_dropped_results) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (site) DO UPDATE SET "
    "instance = excluded.instance, agent_version = excluded.agent_version, last_seq = excluded.last_seq, "
    "last_report_at = excluded.last_report_at, last_sent_at = excluded.last_sent_at, "
    "clock_offset_s = excluded.clock_offset_s, clock_flagged = excluded.clock_flagged, "
    "spool_reports = excluded.spool_reports, spool_oldest_age_s = excluded.spool_oldest_age_s, "
    "spool_dropped_reports = excluded.spool_dropped_reports, spool_dropped_results = excluded.spool_dropped_results")
SQL_SUMMARY_UPSERT = (
    "INSERT INTO summaries (bucket_start, site, check_id, probe, labels, rounds_ok, rounds_fail, first_ts, "
    "last_ts, last_reason, values_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (bucket_start, site, check_id) DO UPDATE SET probe = excluded.probe, labels = excluded.labels, "
    "rounds_ok = excluded.rounds_ok, rounds_fail = excluded.rounds_fail, first_ts = excluded.first_ts, "
    "last_ts = excluded.last_ts, last_reason = excluded.last_reason, values_json = excluded.values_json")
SUMMARY_COLUMNS = ("bucket_start, site, check_id, probe, labels, rounds_ok, rounds_fail, first_ts, last_ts, "
                   "last_reason, values_json")
SITE_COLUMNS = "id, name, province, commune, expected, upstream"
TOKEN_COLUMNS = "id, site, hash, created_at, revoked_at"
STATE_COLUMNS = ("site, instance, agent_version, last_seq, last_report_at, last_sent_at, clock_offset_s, "
                 "clock_flagged, spool_reports, spool_oldest_age_s, spool_dropped_reports, spool_dropped_results")


class Lease(Protocol):
    """The right to be the deployment's one judge, held until released (or the holder dies)."""

    def held(self) -> bool:
        """Still held (a database lease checks its session is alive)."""
        ...

    def release(self) -> None:
        ...


class Dialect:
    """What differs between databases: connecting, placeholders, locks, errors."""

    name = "sql"
    begin_sql = "BEGIN"

    def q(self, sql: str) -> str:
        return sql

    def connect_writer(self) -> Any:
        raise NotImplementedError

    def connect_reader(self) -> Any:
        raise NotImplementedError

    def executemany(self, conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        raise NotImplementedError

    def run_migration(self, conn: Any, migration: Migration, record: Callable[[Any], None]) -> bool:
        """Apply one migration and record it in one transaction; False if another process did."""
        raise NotImplementedError

    def lock_migrations(self, conn: Any) -> None:
        """Keep other processes from migrating until this connection closes."""

    def lock_report_ids(self, conn: Any, site: str, instance: str) -> None:
        """Serialise, across processes, ingest of reports from one agent instance."""

    def lock_aggregation(self, conn: Any) -> None:
        """Serialise folding across processes for the rest of the transaction."""

    def take_judge_lease(self) -> Lease | None:
        """The judge's lease if no other process holds it, else None (one judge per deployment)."""
        raise NotImplementedError

    def write_gate(self) -> AbstractContextManager[Any]:
        """Held around each write transaction by one writer; a new gate per writer.

        Only SQLite needs one (see ``SQLiteDialect.write_gate``): PostgreSQL queues lock waiters itself.
        """
        return nullcontext()

    def is_disconnect(self, exc: BaseException) -> bool:
        return False

    def is_db_error(self, exc: BaseException) -> bool:
        return False


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _expected_json(site: Site) -> str:
    return json.dumps({"links": list(site.links), "devices": list(site.devices), "power": list(site.power)},
                      ensure_ascii=False, sort_keys=True)


def _site_from_row(row: Sequence[Any]) -> Site:
    expected = json.loads(row[4] or "{}")
    return Site(row[0], row[1], row[2], row[3], tuple(expected.get("links", ())),
                tuple(expected.get("devices", ())), tuple(expected.get("power", ())), row[5])


def _summary_from_row(row: Sequence[Any]) -> CheckSummary:
    values = {k: ValueStats.from_json(v) for k, v in _values_json.decode(row[10]).items()}
    return CheckSummary(site=row[1], check=row[2], probe=row[3], bucket_start=float(row[0]),
                        labels=_labels_decoder.decode(row[4]), rounds_ok=int(row[5]), rounds_fail=int(row[6]),
                        first_ts=float(row[7]), last_ts=float(row[8]), last_reason=row[9], values=values)


def _summary_row(s: CheckSummary) -> tuple[Any, ...]:
    return (s.bucket_start, s.site, s.check, s.probe, _json.encode(s.labels).decode(), s.rounds_ok,
            s.rounds_fail, s.first_ts, s.last_ts, s.last_reason, _json.encode(s.values_json()).decode())


def latest_rows(item: IngestItem) -> list[tuple[Any, ...]]:
    """The newest result of each check in the report, as ``latest`` rows (corrected time)."""
    newest: dict[str, CheckResult] = {}
    for result in item.results:
        seen = newest.get(result.check)
        if seen is None or result.ts >= seen.ts:
            newest[result.check] = result
    return [(item.site, r.check, r.probe, r.ts + item.shift_s, r.ok, r.duration_s, r.reason,
             _json.encode(r.labels).decode(), _json.encode(r.values).decode()) for r in newest.values()]


class SqlStore(OperatorSql, MaintenanceSql):
    """The Store protocol over a Dialect; SQLiteStore and PostgresStore only pick the dialect."""

    def __init__(self, dialect: Dialect, *, max_pending: int = 4000, max_group: int = 256,
                 sites_per_commit: int = 25, clock: Callable[[], float] = time.time):
        self.dialect_impl = dialect
        self.dialect = dialect.name
        self.sites_per_commit = sites_per_commit
        self._clock = clock
        self._local = threading.local()
        self._readers: list[Any] = []
        self._readers_lock = threading.Lock()
        self.fold_lock = threading.Lock()  # one folder per process (commune_collector.aggregator)
        self._closed = False
        self._writer = GroupWriter(dialect.connect_writer, dialect.begin_sql, gate=dialect.write_gate(),
                                   max_pending=max_pending,
                                   max_group=max_group, is_disconnect=dialect.is_disconnect,
                                   name=f"{dialect.name}-writer")

    # -- plumbing -------------------------------------------------------------

    def _exec(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> Any:
        return conn.execute(self.dialect_impl.q(sql), params)

    def _many(self, conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.dialect_impl.executemany(conn, self.dialect_impl.q(sql), rows)

    def _reader(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = self.dialect_impl.connect_reader()
            except Exception as exc:
                raise StoreUnavailable(f"cannot connect: {exc}") from exc
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Run a query on this thread's reader connection, reconnecting once if it dropped."""
        for attempt in (1, 2):
            conn = self._reader()
            try:
                return list(self._exec(conn, sql, params).fetchall())
            except Exception as exc:
                if not self.dialect_impl.is_db_error(exc):
                    raise
                self._drop_reader(conn)
                if attempt == 2 or not self.dialect_impl.is_disconnect(exc):
                    raise StoreUnavailable(f"read failed: {exc}") from exc
        raise AssertionError("unreachable")

    def _drop_reader(self, conn: Any) -> None:
        self._local.conn = None
        with self._readers_lock:
            if conn in self._readers:
                self._readers.remove(conn)
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - already broken
            pass

    def _write(self, job: Callable[[Any], Any]) -> Any:
        """Run a job in the writer and wait for its commit (blocking callers: CLI, aggregator)."""
        try:
            return self._writer.call(job)
        except StoreError:
            raise
        except Exception as exc:
            if self.dialect_impl.is_db_error(exc):
                raise StoreUnavailable(f"write failed: {exc}") from exc
            raise

    # -- life cycle -------------------------------------------------------------

    def migrate(self) -> list[str]:
        applied_now: list[str] = []
        conn = self.dialect_impl.connect_writer()
        try:
            self.dialect_impl.lock_migrations(conn)
            conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                         "name TEXT NOT NULL, applied_at " + ("REAL" if self.dialect == "sqlite" else
                                                              "DOUBLE PRECISION") + " NOT NULL)")
            for migration in discover(self.dialect):
                def record(c: Any, m: Migration = migration) -> None:
                    self._exec(c, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                               (m.version, m.name, self._clock()))
                if self.dialect_impl.run_migration(conn, migration, record):
                    applied_now.append(migration.name)
                    log.info("applied migration %s", migration.name)
        finally:
            conn.close()
        return applied_now

    def applied_migrations(self) -> list[int]:
        return [int(r[0]) for r in self._read("SELECT version FROM schema_migrations ORDER BY version")]

    def check_ready(self) -> str | None:
        try:
            applied = set(self.applied_migrations())
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            return f"database not reachable: {exc}"
        missing = [m.name for m in discover(self.dialect) if m.version not in applied]
        return f"migrations not applied: {', '.join(missing)}" if missing else None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass

    # -- inventory --------------------------------------------------------------

    def upsert_sites(self, sites: Sequence[Site], progress: Progress | None = None) -> ImportCounts:
        sites = list(sites)

        def job(conn: Any) -> ImportCounts:
            inserted = updated = unchanged = 0
            now = self._clock()
            for n, chunk in enumerate(_chunks(sites, _IN_CHUNK)):
                ids = [s.id for s in chunk]
                rows = self._exec(conn, f"SELECT {SITE_COLUMNS} FROM sites WHERE id IN ({_marks(len(ids))})",
                                  ids).fetchall()
                existing = {r[0]: _site_from_row(r) for r in rows}
                changed = [s for s in chunk if existing.get(s.id) != s]
                inserted += sum(1 for s in changed if s.id not in existing)
                updated += sum(1 for s in changed if s.id in existing)
                unchanged += len(chunk) - len(changed)
                self._many(conn, "INSERT INTO sites (id, name, province, commune, expected, upstream, updated_at) "
                                 "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET name = excluded.name, "
                                 "province = excluded.province, commune = excluded.commune, "
                                 "expected = excluded.expected, upstream = excluded.upstream, "
                                 "updated_at = excluded.updated_at",
                           [(s.id, s.name, s.province, s.commune, _expected_json(s), s.upstream, now)
                            for s in changed])
                if progress:
                    progress(min((n + 1) * _IN_CHUNK, len(sites)), len(sites))
            return ImportCounts(inserted, updated, unchanged)

        return self._write(job)

    def list_sites(self, province: str | None = None, limit: int = 100, offset: int = 0) -> SitePage:
        where, params = ("WHERE province = ?", [province]) if province else ("", [])
        total = int(self._read(f"SELECT COUNT(*) FROM sites {where}", params)[0][0])
        rows = self._read(f"SELECT {SITE_COLUMNS} FROM sites {where} ORDER BY id LIMIT ? OFFSET ?",
                          [*params, int(limit), int(offset)])
        return SitePage([_site_from_row(r) for r in rows], total)

    def get_site(self, site_id: str) -> Site | None:
        rows = self._read(f"SELECT {SITE_COLUMNS} FROM sites WHERE id = ?", (site_id,))
        return _site_from_row(rows[0]) if rows else None

    def count_sites(self) -> dict[str, int]:
        return {r[0]: int(r[1]) for r in self._read("SELECT province, COUNT(*) FROM sites GROUP BY province")}

    def remove_sites(self, site_ids: Sequence[str], at: float) -> RemovedSites:
        ids = sorted(set(site_ids))

        def job(conn: Any) -> RemovedSites:
            sites = tokens = 0
            for chunk in _chunks(ids, _IN_CHUNK):
                marks = _marks(len(chunk))
                tokens += int(self._exec(conn, f"UPDATE tokens SET revoked_at = ? WHERE site IN ({marks}) "
                                               "AND revoked_at IS NULL", [at, *chunk]).rowcount)
                sites += int(self._exec(conn, f"DELETE FROM sites WHERE id IN ({marks})", list(chunk)).rowcount)
            return RemovedSites(sites, tokens)

        return self._write(job)  # type: ignore[no-any-return]

    # -- tokens -----------------------------------------------------------------

    def add_token(self, token: TokenRecord) -> None:
        def job(conn: Any) -> None:
            if not self._exec(conn, "SELECT 1 FROM sites WHERE id = ?", (token.site,)).fetchall():
                raise StoreError(f"unknown site {token.site!r}: import it first (commune-collector sites import)")
            self._exec(conn, f"INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                       (token.id, token.site, token.hash, token.created_at, token.revoked_at))
        self._write(job)

    def get_token(self, token_id: str) -> TokenRecord | None:
        rows = self._read(f"SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?", (token_id,))
        return TokenRecord(*rows[0]) if rows else None

    def revoke_tokens(self, site_or_token_id: str, at: float) -> int:
        def job(conn: Any) -> int:
            cur = self._exec(conn, "UPDATE tokens SET revoked_at = ? WHERE (id = ? OR site = ?) AND revoked_at IS NULL",
                             (at, site_or_token_id, site_or_token_id))
            return int(cur.rowcount)
        return int(self._write(job))

    def list_tokens(self, site: str | None = None) -> list[TokenRecord]:
        where, params = ("WHERE site = ?", [site]) if site else ("", [])
        rows = self._read(f"SELECT {TOKEN_COLUMNS} FROM tokens {where} ORDER BY created_at DESC, id", params)
        return [TokenRecord(*r) for r in rows]

    # -- ingest -----------------------------------------------------------------

    def submit_ingest(self, item: IngestItem) -> Future[IngestOutcome]:
        return self._writer.submit(lambda conn: self._ingest_job(conn, item))

    def ingest(self, item: IngestItem) -> IngestOutcome:
        return self._write(lambda conn: self._ingest_job(conn, item))

    def _ingest_job(self, conn: Any, item: IngestItem) -> IngestOutcome:
        if not self._record_seq(conn, item.site, item.instance, item.seq, item.received_at):
            return IngestOutcome(duplicate=True)
        self._exec(conn, SQL_JOURNAL, (item.site, item.received_at, item.shift_s, item.journal_blob))
        self._many(conn, SQL_LATEST, latest_rows(item))
        spool = item.spool
        self._exec(conn, SQL_STATE, (item.site, item.instance, item.agent_version, item.seq, item.received_at,
                                     item.sent_at, item.clock_offset_s, bool(item.clock_flagged),
                                     *((spool.reports, spool.oldest_age_s, spool.dropped_reports,
                                        spool.dropped_results) if spool else (None, None, None, None))))
        return IngestOutcome(duplicate=False)

    def _record_seq(self, conn: Any, site: str, instance: str, seq: int, now: float) -> bool:
        """Add ``seq`` to the instance's stored ranges; False when it was there already.

        Ranges instead of one row per report: an agent sends 2,880 reports a
        day, but its seqs only break into a new range where one was never
        stored (released or refused), so the table stays a few rows per site.
        """
        self.dialect_impl.lock_report_ids(conn, site, instance)
        near = [(int(lo), int(hi)) for lo, hi in
                self._exec(conn, SQL_RANGES_NEAR, (site, instance, seq + 1, seq - 1)).fetchall()]
        if any(lo <= seq <= hi for lo, hi in near):
            return False
        left = next((r for r in near if r[1] == seq - 1), None)
        right = next((r for r in near if r[0] == seq + 1), None)
        key = (site, instance)
        if left and right:
            self._exec(conn, "UPDATE report_ranges SET hi = ?, updated_at = ? WHERE site = ? AND instance = ? AND lo = ?",
                       (right[1], now, *key, left[0]))
            self._exec(conn, "DELETE FROM report_ranges WHERE site = ? AND instance = ? AND lo = ?", (*key, right[0]))
        elif left:
            self._exec(conn, "UPDATE report_ranges SET hi = ?, updated_at = ? WHERE site = ? AND instance = ? AND lo = ?",
                       (seq, now, *key, left[0]))
        elif right:
            self._exec(conn, "UPDATE report_ranges SET lo = ?, updated_at = ? WHERE site = ? AND instance = ? AND lo = ?",
                       (seq, now, *key, right[0]))
        else:
            self._exec(conn, "INSERT INTO report_ranges (site, instance, lo, hi, updated_at) VALUES (?, ?, ?, ?, ?)",
                       (*key, seq, seq, now))
        return True

    # -- reads -------------------------------------------------------------------

    def latest(self, site: str) -> dict[str, LatestValue]:
        rows = self._read("SELECT check_id, probe, ts, ok, duration_s, reason, labels, vals FROM latest "
                          "WHERE site = ? ORDER BY check_id", (site,))
        return {r[0]: LatestValue(r[0], r[1], float(r[2]), bool(r[3]), float(r[4]), r[5],
                                  _labels_decoder.decode(r[6]), _values_decoder.decode(r[7])) for r in rows}

    def site_status(self, sites: Sequence[str] | None = None) -> dict[str, SiteStatus]:
        if sites is None:
            rows = self._read(f"SELECT {STATE_COLUMNS} FROM site_state")
        else:
            rows = []
            for chunk in _chunks(list(sites), _IN_CHUNK):
                rows += self._read(f"SELECT {STATE_COLUMNS} FROM site_state WHERE site IN ({_marks(len(chunk))})",
                                   chunk)
        return {r[0]: SiteStatus(r[0], r[1], r[2], int(r[3]), float(r[4]), float(r[5]), float(r[6]), bool(r[7]),
                                 None if r[8] is None else SpoolState(int(r[8]), float(r[9]), int(r[10]), int(r[11])))
                for r in rows}

    def summaries(self, since: float, until: float, sites: Sequence[str] | None = None) -> list[CheckSummary]:
        base = f"SELECT {SUMMARY_COLUMNS} FROM summaries WHERE bucket_start >= ? AND bucket_start < ?"
        bounds = [bucket_of(since), until]
        if sites is None:
            rows = self._read(base + " ORDER BY bucket_start, site, check_id", bounds)
        else:
            rows = []
            for chunk in _chunks(sorted(set(sites)), _IN_CHUNK):
                rows += self._read(base + f" AND site IN ({_marks(len(chunk))}) ORDER BY bucket_start, site, check_id",
                                   [*bounds, *chunk])
        return [_summary_from_row(r) for r in rows]

    # -- aggregation (the SQL the aggregator runs: commune_collector.aggregator) ---

    def journal_top(self) -> int | None:
        top = self._read("SELECT MAX(id) FROM journal")[0][0]
        return None if top is None else int(top)

    def list_journal(self, after: int, upto: int, limit: int) -> list[Sequence[Any]]:
        return self._read("SELECT id, site FROM journal WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
                          (after, upto, limit))

    def journal_rows(self, ids: list[int]) -> list[Sequence[Any]]:
        rows: list[Sequence[Any]] = []
        for part in _chunks(sorted(ids), _IN_CHUNK):
            rows += self._read(f"SELECT id, site, shift_s, body FROM journal WHERE id IN ({_marks(len(part))}) "
                               "ORDER BY id", part)
        return rows

    def commit_folds(self, work: list[tuple[str, list[int], dict[tuple[str, float], CheckSummary]]]) -> int:
        return int(self._write(lambda conn: self._fold_job(conn, work)))

    def mark_aggregator_run(self) -> None:
        self._write(self._mark_run)

    def _mark_run(self, conn: Any) -> None:
        self._exec(conn, "INSERT INTO aggregator_runs (id, last_run_at) VALUES (1, ?) "
                         "ON CONFLICT (id) DO UPDATE SET last_run_at = excluded.last_run_at", (self._clock(),))

    def _fold_job(self, conn: Any, work: list[tuple[str, list[int], dict[tuple[str, float], CheckSummary]]]) -> int:
        self.dialect_impl.lock_aggregation(conn)
        reports = 0
        for site, ids, folded in work:
            deleted = 0
            for chunk in _chunks(ids, _IN_CHUNK):
                deleted += self._exec(conn, f"DELETE FROM journal WHERE id IN ({_marks(len(chunk))})",
                                      chunk).rowcount
            if deleted != len(ids):
                raise AlreadyFolded(site)
            merged = self._merge_existing(conn, site, folded)
            self._many(conn, SQL_SUMMARY_UPSERT, [_summary_row(s) for s in merged])
            reports += len(ids)
        return reports

    def _merge_existing(self, conn: Any, site: str,
                        folded: dict[tuple[str, float], CheckSummary]) -> list[CheckSummary]:
        buckets = sorted({bucket for _, bucket in folded})
        rows = self._exec(conn, f"SELECT {SUMMARY_COLUMNS} FROM summaries WHERE site = ? AND bucket_start IN "
                                f"({_marks(len(buckets))})", [site, *buckets]).fetchall()
        for row in rows:
            key = (row[2], float(row[0]))
            if key in folded:
                existing = _summary_from_row(row)
                existing.merge(folded[key])
                folded[key] = existing
        return list(folded.values())

    # -- retention (the SQL the aggregator runs) ----------------------------------

    def summary_buckets_before(self, before: float) -> list[float]:
        return [float(r[0]) for r in
                self._read("SELECT DISTINCT bucket_start FROM summaries WHERE bucket_start < ?", (before,))]

    def delete_summaries_of_bucket(self, bucket: float) -> int:
        """Delete one bucket's summaries of up to 200 sites: short transactions, ingest keeps flowing."""
        return int(self._write(lambda conn: self._exec(
            conn, "DELETE FROM summaries WHERE bucket_start = ? AND site IN (SELECT DISTINCT site FROM "
                  "summaries WHERE bucket_start = ? ORDER BY site LIMIT 200)", (bucket, bucket)).rowcount))

    def delete_report_ranges(self, idle_since: float) -> int:
        return int(self._write(lambda conn: self._exec(
            conn, "DELETE FROM report_ranges WHERE updated_at < ?", (idle_since,)).rowcount))

    def stats(self) -> StoreStats:
        count, oldest = self._read("SELECT COUNT(*), MIN(received_at) FROM journal")[0]
        last = self._read("SELECT last_run_at FROM aggregator_runs WHERE id = 1")
        return StoreStats(int(count), float(oldest) if oldest is not None else None,
                          float(last[0][0]) if last else None)

    @property
    def pending_writes(self) -> int:
        return self._writer.pending

    @property
    def write_stats(self) -> WriteStats:
        return self._writer.stats
