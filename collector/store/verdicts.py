"""The judge's persistence in the collector's database (SQLite or PostgreSQL).

Tables come from migration ``0100_judge``: ``judge_state`` (each site's
verdict and stable clock), ``judge_transitions`` (verdicts over time,
regressions flagged), ``judge_history`` (a row per day and province for the
burn-up chart). The judge writes only what changed in a pass, on its own
connection, so it never queues behind ingest's group commits for long.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import msgspec

from commune_collector.judge.persist import HistoryRow, ItemState, StateRow, Transition
from commune_collector.store.sql import Dialect

SQLITE_CACHE_KIB = 64 * 1024
STATES_PER_COMMIT = 500


class JudgeDb:
    """One connection of the judge's own, with a transaction helper that speaks both dialects."""

    def __init__(self, dialect: Dialect):
        self.dialect = dialect
        self.name = dialect.name
        self._conn: Any = None
        self._lock = threading.RLock()
        self._gate = dialect.write_gate()

    def q(self, sql: str) -> str:
        return self.dialect.q(sql)

    def _connection(self) -> Any:
        if self._conn is None:
            self._conn = self.dialect.connect_writer()
            if self.name == "sqlite":
                # a pass looks up ~70,000 rows by key, mostly on the same pages as the pass before
                self._conn.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
                # no memory map: a first pass reads most of the file, and every mapped page it touched
                # would stay in the judging process's RSS (2.5 GiB at 10,000 sites) for its whole life
                self._conn.execute("PRAGMA mmap_size = 0")
        return self._conn

    @contextmanager
    def read(self) -> Iterator[Any]:
        with self._lock:
            yield self._connection()

    @contextmanager
    def tx(self, main: bool = True) -> Iterator[Any]:
        """A write transaction (SQLite: BEGIN IMMEDIATE; PostgreSQL: a transaction block).

        ``main=False``: it writes only this connection's temporary tables, so on SQLite it must not
        take the database's write lock (BEGIN IMMEDIATE would hold ingest's commits back meanwhile).
        """
        with self._lock:
            conn = self._connection()
            if self.name == "sqlite":
                with self._gate if main else nullcontext():  # temporary tables take no database lock
                    conn.execute("BEGIN IMMEDIATE" if main else "BEGIN DEFERRED")
                    try:
                        yield conn
                    except BaseException:
                        conn.execute("ROLLBACK")
                        raise
                    conn.execute("COMMIT")
            else:
                with conn.transaction():
                    yield conn

    def execute(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> Any:
        return conn.execute(self.q(sql), params)

    def executemany(self, conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.dialect.executemany(conn, self.q(sql), rows)

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self.read() as conn:
            return list(self.execute(conn, sql, params).fetchall())

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                finally:
                    self._conn = None


_msgspec_decode = msgspec.json.Decoder().decode


def _decode_json(text: str) -> Any:
    """msgspec's decoder (a restart reads 10,000 states and their transitions); ``json`` for what only
    ``json.dumps`` writes (NaN, Infinity)."""
    try:
        return _msgspec_decode(text)
    except msgspec.DecodeError:
        return json.loads(text)


_msgspec_encode = msgspec.json.Encoder().encode


def _encode_items(items: dict[str, ItemState]) -> str:
    """A site's item states as JSON text (msgspec: a restart writes every site); ``json`` if a number is not
    finite, which msgspec would write as null."""
    if all(math.isfinite(since) and (candidate is None or math.isfinite(candidate))
           for _, since, candidate, _ in items.values()):
        return _msgspec_encode(items).decode()
    return json.dumps({k: list(v) for k, v in items.items()})


_items_decode = msgspec.json.Decoder(dict[str, tuple[int, float, float | None, int]]).decode


def _decode_items(text: str) -> dict[str, ItemState]:
    """What ``_encode_items`` wrote, typed by msgspec; ``json`` for the NaN or Infinity it cannot read."""
    try:
        return _items_decode(text)
    except msgspec.DecodeError:
        return {k: (int(v[0]), float(v[1]), None if v[2] is None else float(v[2]), int(v[3]))
                for k, v in json.loads(text).items()}


_STATE_UPSERT = (
    "INSERT INTO judge_state (site, state, since, candidate_since, last_definite, items, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (site) DO UPDATE SET state = excluded.state, "
    "since = excluded.since, candidate_since = excluded.candidate_since, last_definite = excluded.last_definite, "
    "items = excluded.items, updated_at = excluded.updated_at")
_HISTORY_UPSERT = (
    "INSERT INTO judge_history (day, province, total, completed, not_completed, unknown, items, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (day, province) DO UPDATE SET total = excluded.total, "
    "completed = excluded.completed, not_completed = excluded.not_completed, unknown = excluded.unknown, "
    "items = excluded.items, updated_at = excluded.updated_at")
_TRANSITION_COLUMNS = "site, province, at, from_state, to_state, regression, cause, detail, reasons"


class SqlVerdictStore:
    """``commune_collector.judge.persist.VerdictStore`` over the collector's database."""

    def __init__(self, db: JudgeDb):
        self.db = db

    @classmethod
    def for_store(cls, store: Any) -> SqlVerdictStore:
        return cls(JudgeDb(store.dialect_impl))

    def load_states(self) -> dict[str, StateRow]:
        rows = self.db.fetch("SELECT site, state, since, candidate_since, last_definite, items FROM judge_state")
        out = {}
        for site, state, since, candidate, definite, items in rows:
            parsed = _decode_items(items)
            out[site] = StateRow(site, int(state), float(since), None if candidate is None else float(candidate),
                                 int(definite), parsed)
        return out

    def save_states(self, rows: list[StateRow], now: float) -> None:
        """Upsert in slices of ``STATES_PER_COMMIT``: each row stands alone (a site's whole state), and
        every site in one transaction would hold SQLite's write lock, and so ingest's commits, too long."""
        data = [(r.site, r.state, r.since, r.candidate, r.last_definite, _encode_items(r.items), now) for r in rows]
        for i in range(0, len(data), STATES_PER_COMMIT):
            with self.db.tx() as conn:
                self.db.executemany(conn, _STATE_UPSERT, data[i:i + STATES_PER_COMMIT])

    def add_transitions(self, rows: list[Transition]) -> None:
        data = [(t.site, t.province, t.at, t.from_state, t.to_state, int(t.regression),
                 json.dumps(t.cause), t.detail, json.dumps(t.reasons, ensure_ascii=False)) for t in rows]
        with self.db.tx() as conn:
            self.db.executemany(conn, f"INSERT INTO judge_transitions ({_TRANSITION_COLUMNS}) "
                                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", data)

    def transitions(self, since: float, site: str | None = None, regressions_only: bool = False
                    ) -> list[Transition]:
        where, params = ["at >= ?"], [since]
        if site is not None:
            where.append("site = ?")
            params.append(site)
        if regressions_only:
            where.append("regression = 1")
        rows = self.db.fetch(f"SELECT {_TRANSITION_COLUMNS} FROM judge_transitions WHERE {' AND '.join(where)} "
                             "ORDER BY at, id", params)
        return [Transition(r[0], r[1], float(r[2]), r[3], r[4], bool(r[5]), _decode_json(r[6]), r[7],
                           _decode_json(r[8] or "[]")) for r in rows]

    def regression_counts(self) -> dict[str, int]:
        rows = self.db.fetch("SELECT site, COUNT(*) FROM judge_transitions WHERE regression = 1 GROUP BY site")
        return {r[0]: int(r[1]) for r in rows}

    def save_history(self, day: str, rows: list[tuple[str, dict]], now: float) -> None:
        data = [(day, province, c["total"], c["completed"], c["not_completed"], c["unknown"],
                 json.dumps(c.get("items", {}), ensure_ascii=False), now) for province, c in rows]
        with self.db.tx() as conn:
            self.db.executemany(conn, _HISTORY_UPSERT, data)

    def history(self, since_day: str, province: str | None = None) -> list[HistoryRow]:
        rows = self.db.fetch("SELECT day, province, total, completed, not_completed, unknown, items FROM judge_history "
                             "WHERE province = ? AND day >= ? ORDER BY day", (province or "", since_day))
        return [(r[0], r[1], {"total": int(r[2]), "completed": int(r[3]), "not_completed": int(r[4]),
                              "unknown": int(r[5]), "items": json.loads(r[6])}) for r in rows]

    def prune(self, before_ts: float, before_day: str) -> int:
        with self.db.tx() as conn:
            n = self.db.execute(conn, "DELETE FROM judge_transitions WHERE at < ?", (before_ts,)).rowcount
            n += self.db.execute(conn, "DELETE FROM judge_history WHERE day < ?", (before_day,)).rowcount
        return int(n)

    def close(self) -> None:
        self.db.close()
