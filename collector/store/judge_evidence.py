"""The judge's evidence source over the collector's database: only what changed, only what it reads.

A pass must not re-read a day of summaries for 10,000 sites (millions of
rows), nor even the ~50 checks of every site in the bucket in progress. It
reads:

- the checks some criterion reads (``keep``), looked up by primary key from a
  temporary table of this connection (``judge_keep``) rather than by scanning
  the bucket: a site reports ~50 checks, the default criteria read ~7;
- the bucket in progress (and the previous one once, after the hour turns);
- buckets written after the judge had moved past them (spooled evidence
  folded late), from the ``judge_backfill`` log that migration 0100's trigger
  fills, so late evidence is re-judged without scanning for it.

Which checks to read is decided from ``latest`` (one row per check ever
reported): all of it at the first pass, then a slice of the sites per pass
(every site again within ``rediscover_passes`` passes), and at once for a
site that appears. The first pass reads everything within the longest window.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

import msgspec
import numpy as np

from commune_collector.evidence import BUCKET_SECONDS, bucket_of
from commune_collector.judge import packs as packs_mod
from commune_collector.judge.matrix import KeyedBatch
from commune_collector.judge.packs import PackBatch
from commune_collector.judge.source import ROUNDS, VALUES, Keep, PartFile, SiteRecord
from commune_collector.maintenance.windows import MaintenanceWindow
from commune_collector.store.verdicts import JudgeDb


class ColdReader(Protocol):
    """What shares a cold pass with another process (``judge_helper.ColdHelper``); ``start`` returns None
    (read alone) or an object with ``own_runs()``, ``result()`` and ``abandon()``."""

    def start(self, source: StoreEvidence, now: float, horizon: float) -> Any: ...


_labels = msgspec.json.Decoder(dict[str, str])
_pack_keys = msgspec.json.Decoder(dict[str, bool])
PACK_SETTLE = 600.0  # an hour is packed this long after it ended: rounds of its last minutes have arrived
ValueKeys = Callable[[str, str, dict[str, str]], tuple[tuple[str, bool], ...]]  # EvidenceMatrix.keys_of
# a check by its number in the key table (commune_collector.judge.matrix.KeyedBatch), whether its last round
# failed rather than why, and the values only where kept; on SQLite the values as bytes (no text object built)
_COLUMNS = ("k.key, s.bucket_start, s.rounds_ok, s.rounds_fail, s.first_ts, s.last_ts, s.last_reason <> '', "
            "CASE WHEN k.level = 2 THEN {values} END")


class StoreEvidence:
    """``commune_collector.judge.source.EvidenceSource`` over a SqlStore's database."""

    def __init__(self, store: Any, bucket_seconds: float = BUCKET_SECONDS, rediscover_passes: int = 60,
                 read_only: bool = False):
        """``read_only``: never move the trigger's cursor nor trim its log (a one-off pass beside a
        running collector, whose judge owns both)."""
        self.db = JudgeDb(store.dialect_impl)
        self.store = store
        self.read_only = read_only
        self.bucket_seconds = float(bucket_seconds)
        self.rediscover_passes = max(1, rediscover_passes)
        self._read_from: float | None = None
        self._kept: dict[tuple[str, str], tuple[str, int, str]] = {}  # (site, check) -> (labels, level, probe)
        self._fresh: list[tuple[str, str]] = []  # checks read from this pass on: their window is read too
        self.keys: list[tuple[str, str, str, str]] = []  # (site, check, probe, labels) by number, append-only
        self._numbers: dict[tuple[str, str], int] = {}  # (site, check) -> its number in ``keys`` now
        self._columns = _COLUMNS.format(values="CAST(s.values_json AS BLOB)" if self.db.name == "sqlite"
                                        else "s.values_json")
        self._sites_known: set[str] = set()
        self._cursor_site = ""
        self._label_cache: dict[str, dict[str, str]] = {}
        self._decisions: dict[tuple[str, str, str], int] = {}
        self._ready = False
        self._backfill_seen = 0
        self.keep_backfill = False  # True with checkpoints: entries go once a saved matrix holds them
        self._inventory: list[SiteRecord] = []
        self._inventory_mark: tuple | None = None
        self.helper: ColdReader | None = None  # reads part of a cold pass in another process (judge_helper.py)
        self.value_keys: ValueKeys | None = None  # what the criteria read of a check's values: set by the judge
        self.use_packs = True  # pack closed hours, and read a cold pass's from packs where they hold what it needs
        self.packs_read = 0
        self._unpackable: set[tuple[float, str]] = set()  # (hour, check) holding a legacy histogram

    # -- inventory and report times --------------------------------------------------

    def inventory(self) -> list[SiteRecord]:
        """The sites, re-read only when an import changed them (a count and a time tell)."""
        mark = tuple(self.db.fetch("SELECT COUNT(*), MAX(updated_at) FROM sites")[0])
        if mark != self._inventory_mark:
            rows = self.db.fetch("SELECT id, name, province, commune, upstream FROM sites ORDER BY id")
            self._inventory = [SiteRecord(*r) for r in rows]
            self._inventory_mark = mark
        return self._inventory

    def report_times(self) -> dict[str, float]:
        return {r[0]: float(r[1]) for r in self.db.fetch("SELECT site, last_report_at FROM site_state")}

    def maintenance(self, since: float) -> list[MaintenanceWindow]:
        return self.store.list_windows(since)

    # -- evidence ----------------------------------------------------------------------

    def read(self, now: float, horizon: float, keep: Keep, full: bool,
             resume_from: float | None = None) -> Iterator[KeyedBatch | PartFile]:
        """What changed since the last read; ``resume_from``: the bucket a restored checkpoint was current at."""
        current = bucket_of(now, int(self.bucket_seconds))
        backfill_upto = self._move_cursor(current, full)
        # once the judge has run a while, packs hold most of the window: a helper would cost more than it saves
        packed_hours = self._packed_hours(horizon) if full and self.use_packs and self.value_keys is not None else 0
        share = full and packed_hours * 2 < (current - horizon) / self.bucket_seconds and self.helper is not None
        helper = self.helper.start(self, now, horizon) if share and self.helper is not None else None
        if full or not self._ready:
            self._fresh = []  # everything is read from the horizon
            self._discover(keep, None)
        else:
            self._discover_some(keep)
        if full:
            start = horizon
        elif resume_from is not None:
            start = max(min(resume_from, current), horizon)
        else:
            start = min(self._read_from if self._read_from is not None else current, current)
        try:
            if helper is not None:
                yield from helper.own_runs()
                yield from helper.result()
                helper = None
            else:
                yield from self._packed_window(start, current) if packed_hours else self.window(start, current)
        finally:
            if helper is not None:
                helper.abandon()
        if self._fresh and not full:
            yield from self._read_fresh(horizon, start)
        if backfill_upto is not None and backfill_upto > self._backfill_seen:
            yield from self._stream(
                f"SELECT {self._columns} FROM judge_backfill b CROSS JOIN judge_keep k CROSS JOIN summaries s "
                "WHERE b.id > ? AND b.id <= ? AND k.site = b.site AND k.check_id = b.check_id "
                "AND s.bucket_start = b.bucket_start AND s.site = b.site AND s.check_id = b.check_id "
                "AND b.bucket_start < ? AND b.bucket_start >= ?",
                (self._backfill_seen, backfill_upto, start, horizon))
            self._backfill_seen = backfill_upto
            if not self.keep_backfill:
                self.trim_backfill(backfill_upto)
        self._read_from = current  # only once everything up to it was read: a failed pass reads it again

    def window(self, start: float, current: float, below: str | None = None, since: str | None = None
               ) -> Iterator[KeyedBatch]:
        """Every bucket from ``start`` to ``current`` of the checks read (of sites from ``since`` and
        before ``below`` when given: the halves of a cold pass shared with a helper)."""
        sites = "".join(f" AND k.site {op} ?" for op, bound in ((">=", since), ("<", below)) if bound is not None)
        bounds = tuple(bound for bound in (since, below) if bound is not None)
        bucket = start
        while bucket <= current:
            yield from self._stream(f"SELECT {self._columns} FROM judge_keep k CROSS JOIN summaries s "
                                    f"WHERE s.bucket_start = ? AND s.site = k.site AND s.check_id = k.check_id{sites}",
                                    (bucket, *bounds))
            bucket += self.bucket_seconds

    def holds_evidence(self, since: float) -> bool:
        """Whether any summary lies in the window (a bucket from ``since`` on)."""
        return bool(self.db.fetch("SELECT 1 FROM summaries WHERE bucket_start >= ? LIMIT 1", (since,)))

    def decide_from(self, keep: Keep, first_site: str | None) -> None:
        """Decide afresh what to read, for the sites from ``first_site`` on (all when None)."""
        self._decide_all(keep, first_site)

    def _read_fresh(self, horizon: float, start: float) -> Iterator[KeyedBatch]:
        """The older buckets of checks read from this pass on (new, or now read with their values): their
        whole window, as a cold pass would have read it, not only what arrives from now on."""
        with self.db.tx(main=False) as conn:
            self.db.execute(conn, "CREATE TEMPORARY TABLE IF NOT EXISTS judge_fresh (site TEXT NOT NULL, "
                                  "check_id TEXT NOT NULL, PRIMARY KEY (site, check_id))")
            self.db.execute(conn, "DELETE FROM judge_fresh")
            self.db.executemany(conn, "INSERT INTO judge_fresh (site, check_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
                                self._fresh)
        bucket = horizon
        while bucket < start:
            yield from self._stream(f"SELECT {self._columns} FROM judge_fresh f CROSS JOIN judge_keep k "
                                    "CROSS JOIN summaries s WHERE k.site = f.site AND k.check_id = f.check_id "
                                    "AND s.bucket_start = ? AND s.site = f.site AND s.check_id = f.check_id",
                                    (bucket,))
            bucket += self.bucket_seconds
        self._fresh = []

    def backfill_mark(self) -> int:
        """The last backfill log entry already read (a checkpoint saved now includes it)."""
        return self._backfill_seen

    def resume(self, checks: Iterable[tuple[str, str, str, str, bool]]) -> int:
        """Read what a restored checkpoint holds (site, check, probe, labels, keeps values) instead of
        deciding again for every check in ``latest``: a restart then costs what changed, as a pass does.

        A check that appeared while the collector was down is found as one
        appearing while it runs: a new site at the next pass, a new check of a
        known site by the slice of sites each pass decides again. Returns the
        number of the first check (the others follow in the order given).
        """
        self._kept = {(site, check): (labels if isinstance(labels, str) else json.dumps(labels),
                                      VALUES if values else ROUNDS, probe)
                      for site, check, probe, labels, values in checks}
        self._sites_known = {site for site, _ in self._kept}
        first = len(self.keys)
        self._apply([], [], reset=True)
        return first  # the checks are numbered from here on, in the order given

    def trim_backfill(self, upto: int) -> None:
        """Forget log entries up to ``upto``: read, and (with checkpoints) saved."""
        if self.read_only:
            return
        with self.db.tx() as conn:
            self.db.execute(conn, "DELETE FROM judge_backfill WHERE id <= ?", (upto,))

    def _move_cursor(self, current: float, full: bool) -> int | None:
        """Set the trigger's horizon to the bucket in progress; return the last logged backfill id to read.

        On PostgreSQL the aggregator's lock is taken first, so no fold that
        started under the old horizon can commit unseen after this pass reads.
        A read-only source touches neither: the running collector's judge owns them.
        """
        if self.read_only:
            return None
        with self.db.tx() as conn:
            if self.db.name != "sqlite":
                self.db.dialect.lock_aggregation(conn)
            self.db.execute(conn, "UPDATE judge_cursor SET read_from = ? WHERE id = 1", (current,))
            if full:
                self.db.execute(conn, "DELETE FROM judge_backfill")
                return None
            top = self.db.execute(conn, "SELECT MAX(id) FROM judge_backfill").fetchall()[0][0]
        return None if top is None else int(top)

    # -- which checks to read -----------------------------------------------------------

    def _decide_all(self, keep: Keep, since: str | None = None) -> None:
        """Decide afresh what to read of every check (of the sites from ``since`` on, when given).

        Per configuration, in the database: its distinct (probe, check, labels)
        are decided here (a few dozen), and only the rows of kept ones come
        back (~7 of a site's ~50), not every row of ``latest``.
        """
        where, bounds = ("WHERE site >= ?", (since,)) if since is not None else ("", ())
        configs = self.db.fetch(f"SELECT DISTINCT probe, check_id, labels FROM latest {where}", bounds)
        kept_configs = [(probe, check, labels, level) for probe, check, labels in configs
                        if (level := self._decide(keep, "", probe, check, labels))]
        with self.db.tx(main=False) as conn:
            self.db.execute(conn, "CREATE TEMPORARY TABLE IF NOT EXISTS judge_configs (probe TEXT NOT NULL, "
                                  "check_id TEXT NOT NULL, labels TEXT NOT NULL, level INTEGER NOT NULL, "
                                  "PRIMARY KEY (probe, check_id, labels))")
            self.db.execute(conn, "DELETE FROM judge_configs")
            self.db.executemany(conn, "INSERT INTO judge_configs (probe, check_id, labels, level) VALUES (?, ?, ?, ?)",
                                kept_configs)
        rows = self.db.fetch("SELECT l.site, l.check_id, l.probe, l.labels, c.level FROM latest l "
                             "JOIN judge_configs c ON c.probe = l.probe AND c.check_id = l.check_id "
                             f"AND c.labels = l.labels {where.replace('site', 'l.site')}", bounds)
        self._sites_known = {r[0] for r in self.db.fetch(f"SELECT DISTINCT site FROM latest {where}", bounds)}
        self._kept = {(site, check): (labels, level, probe) for site, check, probe, labels, level in rows}
        self._apply([], [], reset=True)

    def _discover(self, keep: Keep, sites: tuple[str, str] | list[str] | None) -> None:
        """Decide for the checks of some sites (all when None) whether the judge reads them."""
        if sites is None:
            self._decide_all(keep)
            return
        if isinstance(sites, tuple):
            rows = self.db.fetch("SELECT site, check_id, probe, labels FROM latest WHERE site >= ? AND site <= ?",
                                 sites)
        else:
            rows = []
            for i in range(0, len(sites), 500):
                chunk = sites[i:i + 500]
                rows += self.db.fetch("SELECT site, check_id, probe, labels FROM latest WHERE site IN "
                                      f"({','.join('?' * len(chunk))})", chunk)
        if not rows:
            return
        site_col, check_col, probe_col, label_col = zip(*rows, strict=True)
        self._sites_known.update(site_col)
        # a fleet repeats the same few check configurations: one dictionary look-up a row, in C
        configs = list(zip(probe_col, check_col, label_col, strict=True))
        table = self._decisions
        missing = set(configs) - table.keys()
        if missing:  # configurations not decided yet: each once, for one of its sites
            a_site = dict(zip(configs, site_col, strict=True))
            decided = {c: self._decide(keep, a_site[c], *c) for c in missing}
            if not decided.keys() <= table.keys():  # the cache is full
                table = {**table, **decided}
        levels = list(map(table.__getitem__, configs))
        kept = self._kept
        add, drop = [], []
        for site, check, probe, labels, level in zip(site_col, check_col, probe_col, label_col, levels,
                                                      strict=True):
            held = kept.get((site, check))
            if level and held != (labels, level, probe):
                add.append((site, check, level))
                if held is None or held[1] < level:
                    self._fresh.append((site, check))
                kept[(site, check)] = (labels, level, probe)
            elif not level and held is not None:
                drop.append((site, check))
                del kept[(site, check)]
        self._apply(add, drop, reset=False)

    def _decide(self, keep: Keep, site: str, probe: str, check: str, labels: str) -> int:
        """Whether to read a check configuration (and its values), decided once per configuration."""
        decided = (probe, check, labels)
        level = self._decisions.get(decided)
        if level is None:
            level = keep(site, check, probe, self._decode(labels))
            if len(self._decisions) < 100_000:
                self._decisions[decided] = level
        return level

    def _discover_some(self, keep: Keep) -> None:
        """Sites that appeared since the last pass, and the next slice of all sites."""
        reported = [r[0] for r in self.db.fetch("SELECT site FROM site_state")]
        new = [s for s in reported if s not in self._sites_known]
        if new:
            self._discover(keep, new)
        ordered = sorted(self._sites_known)
        if not ordered:
            return
        step = -(-len(ordered) // self.rediscover_passes)
        at = next((i for i, s in enumerate(ordered) if s > self._cursor_site), 0) if self._cursor_site else 0
        chunk = ordered[at:at + step]
        self._cursor_site = chunk[-1] if at + step < len(ordered) else ""
        self._discover(keep, (chunk[0], chunk[-1]))

    def _apply(self, add: list[tuple[str, str, int]], drop: list[tuple[str, str]], reset: bool) -> None:
        with self.db.tx(main=False) as conn:  # judge_keep is a temporary table: no lock on the database
            if not self._ready:
                self.db.execute(conn, "CREATE TEMPORARY TABLE IF NOT EXISTS judge_keep (site TEXT NOT NULL, "
                                      "check_id TEXT NOT NULL, level INTEGER NOT NULL, key INTEGER NOT NULL, "
                                      "PRIMARY KEY (site, check_id))" + (" WITHOUT ROWID" if self.db.name == "sqlite"
                                                                         else ""))
            if reset:
                self.db.execute(conn, "DELETE FROM judge_keep")
                rows = self._renumber()
            else:
                for site, check in drop:
                    self._numbers.pop((site, check), None)
                rows = [(site, check, level, self._number(site, check)) for site, check, level in add]
            self.db.executemany(conn, "DELETE FROM judge_keep WHERE site = ? AND check_id = ?", drop)
            self.db.executemany(conn, "INSERT INTO judge_keep (site, check_id, level, key) VALUES (?, ?, ?, ?) "
                                      "ON CONFLICT (site, check_id) DO UPDATE SET level = excluded.level, "
                                      "key = excluded.key", rows)
        self._ready = True

    def _renumber(self) -> list[tuple[str, str, int, int]]:
        """Every kept check numbered afresh (a full decision, or a resumed checkpoint): the rows of judge_keep."""
        start = len(self.keys)
        self.keys += [(site, check, probe, labels) for (site, check), (labels, _, probe) in self._kept.items()]
        self._numbers = dict(zip(self._kept, range(start, len(self.keys)), strict=True))
        return [(site, check, level, number) for ((site, check), (_, level, _)), number
                in zip(self._kept.items(), range(start, len(self.keys)), strict=True)]

    def _number(self, site: str, check: str) -> int:
        """The check's number in ``keys``: a new one when its probe or labels changed (the matrix then
        relabels its row when it first sees the new number)."""
        labels, _, probe = self._kept[(site, check)]
        number = self._numbers.get((site, check))
        if number is None or self.keys[number] != (site, check, probe, labels):
            number = self._numbers[(site, check)] = len(self.keys)
            self.keys.append((site, check, probe, labels))
        return number

    # -- hour packs (judge/packs.py) ---------------------------------------------------

    def _needs(self) -> dict[str, dict[str, bool]]:
        """Per check read: the value keys (True: with the sketch) today's criteria read of it."""
        if self.value_keys is None:
            return {}
        configs = {(check, probe, labels) for (_, check), (labels, _, probe) in self._kept.items()}
        by_check: dict[str, list[tuple[tuple[str, bool], ...]]] = {}
        for check, probe, labels in configs:
            by_check.setdefault(check, []).append(self.value_keys(probe, check, self._decode(labels)))
        return {check: packs_mod.needed_keys(kept) for check, kept in by_check.items()}

    def _packed_hours(self, since: float) -> int:
        """How many hours from ``since`` on hold some pack."""
        return int(self.db.fetch("SELECT COUNT(DISTINCT bucket_start) FROM summary_packs WHERE bucket_start >= ?",
                                 (since,))[0][0])

    def _packed_window(self, start: float, current: float) -> Iterator[KeyedBatch | PackBatch]:
        """``window`` with the hours' packs where they hold what the criteria read, rows elsewhere."""
        needs = self._needs()
        held: dict[float, set[str]] = {}
        for bucket, check, keys in self.db.fetch("SELECT bucket_start, check_id, value_keys FROM summary_packs "
                                                 "WHERE bucket_start >= ? AND bucket_start < ?", (start, current)):
            if check in needs and _holds(_pack_keys.decode(keys), needs[check]):
                held.setdefault(float(bucket), set()).add(check)
        numbers: dict[tuple[str, bytes], np.ndarray] = {}  # a check's site list repeats hour after hour
        bucket = start
        while bucket <= current:
            covered = sorted(held.get(bucket, ()))
            for i in range(0, len(covered), 100):
                chunk = covered[i:i + 100]
                for check, body in self.db.fetch("SELECT check_id, body FROM summary_packs WHERE bucket_start = ? "
                                                 f"AND check_id IN ({','.join('?' * len(chunk))})", (bucket, *chunk)):
                    pack = packs_mod.decode(bucket, check, body)
                    if pack is None:  # another format: read as rows below
                        covered.remove(check)
                        continue
                    mapped = numbers.get((check, pack.sites))
                    if mapped is None:
                        mapped = numbers[(check, pack.sites)] = np.fromiter(
                            (self._numbers.get((site, check), -1) for site in pack.site_list()), dtype=np.int64,
                            count=len(pack))
                    self.packs_read += 1
                    yield PackBatch(self.keys, mapped, pack)
            others = f" AND k.check_id NOT IN ({','.join('?' * len(covered))})" if covered else ""
            yield from self._stream(f"SELECT {self._columns} FROM judge_keep k CROSS JOIN summaries s "
                                    f"WHERE s.bucket_start = ? AND s.site = k.site AND s.check_id = k.check_id{others}",
                                    (bucket, *covered))
            bucket += self.bucket_seconds

    def pack_hours(self, now: float, horizon: float, budget: int = 1) -> int:
        """Pack the closed hours (of the checks read) that lack a current pack, the oldest first and at most
        ``budget`` hours a call; drop packs older than ``horizon``. Returns the packs written.

        An hour is packed once it ended ``PACK_SETTLE`` ago (late rounds of it
        have arrived) and the judge has moved past it (a write to it is then
        logged and deletes its pack). A fold that commits while an hour is being
        packed is seen in the backfill log, and that check's pack is not written.
        """
        if self.read_only or not self.use_packs or self.value_keys is None or not self._ready:
            return 0
        needs = self._needs()
        current = bucket_of(now, int(self.bucket_seconds))
        if self.db.fetch("SELECT 1 FROM summary_packs WHERE bucket_start < ? LIMIT 1", (horizon,)):
            with self.db.tx() as conn:  # out of the window: never read again
                self.db.execute(conn, "DELETE FROM summary_packs WHERE bucket_start < ?", (horizon,))
        self._unpackable = {(bucket, check) for bucket, check in self._unpackable if bucket >= horizon}
        held: dict[float, dict[str, dict[str, bool]]] = {}
        for bucket, check, keys in self.db.fetch("SELECT bucket_start, check_id, value_keys FROM summary_packs "
                                                 "WHERE bucket_start >= ?", (horizon,)):
            held.setdefault(float(bucket), {})[check] = _pack_keys.decode(keys)
        written = 0
        bucket, hours = horizon, 0
        while bucket + self.bucket_seconds + PACK_SETTLE <= now and bucket < current and hours < budget:
            have = held.get(bucket, {})
            missing = sorted(check for check, keys in needs.items() if (bucket, check) not in self._unpackable
                             and not _holds(have.get(check), keys))
            if missing:
                written += self._pack_hour(bucket, missing, needs)
                hours += 1
            bucket += self.bucket_seconds
        return written

    def _pack_hour(self, bucket: float, checks: list[str], needs: dict[str, dict[str, bool]]) -> int:
        """Pack one hour of ``checks``; a fold committing meanwhile keeps its check's pack out.

        SQLite: the hour is read outside the write lock, and a fold that
        committed since shows in the backfill log (its ids grow). PostgreSQL:
        the hour is read under the aggregator's lock, so no fold is in flight.
        """
        insert = ("INSERT INTO summary_packs (bucket_start, check_id, entries, value_keys, body, written_at) "
                  "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (bucket_start, check_id) DO UPDATE SET "
                  "entries = excluded.entries, value_keys = excluded.value_keys, body = excluded.body, "
                  "written_at = excluded.written_at")
        if self.db.name != "sqlite":
            with self.db.tx() as conn:
                self.db.dialect.lock_aggregation(conn)
                packed = self._encode_hour(bucket, self._read_hour(conn, bucket, checks), needs)
                self.db.executemany(conn, insert, packed)
            return len(packed)
        top = self.db.fetch("SELECT MAX(id) FROM judge_backfill")[0][0]
        mark = int(top) if top is not None else 0
        with self.db.read() as conn:
            packed = self._encode_hour(bucket, self._read_hour(conn, bucket, checks), needs)
        with self.db.tx() as conn:
            late = {r[0] for r in self.db.execute(conn, "SELECT DISTINCT check_id FROM judge_backfill WHERE id > ? "
                                                        "AND bucket_start = ?", (mark, bucket)).fetchall()}
            packed = [p for p in packed if p[1] not in late]
            self.db.executemany(conn, insert, packed)
        return len(packed)

    def _read_hour(self, conn: Any, bucket: float, checks: list[str]) -> dict[str, list[tuple]]:
        grouped: dict[str, list[tuple]] = {check: [] for check in checks}
        values = "CAST(values_json AS BLOB)" if self.db.name == "sqlite" else "values_json"
        for i in range(0, len(checks), 100):
            chunk = checks[i:i + 100]
            for row in self.db.execute(conn, "SELECT check_id, site, rounds_ok, rounds_fail, first_ts, last_ts, "
                                             f"last_reason <> '', {values} FROM summaries WHERE bucket_start = ? "
                                             f"AND check_id IN ({','.join('?' * len(chunk))}) ORDER BY check_id, site",
                                       (bucket, *chunk)).fetchall():
                grouped[row[0]].append(row[1:])
        return grouped

    def _encode_hour(self, bucket: float, grouped: dict[str, list[tuple]], needs: dict[str, dict[str, bool]]
                     ) -> list[tuple]:
        packed = []
        for check, rows in grouped.items():
            body = packs_mod.encode(rows, needs[check])
            if body is None:  # a legacy histogram: this hour of the check is read as rows
                self._unpackable.add((bucket, check))
                continue
            packed.append((bucket, check, len(rows), json.dumps(needs[check], sort_keys=True), body, time.time()))
        return packed

    def _stream(self, sql: str, params: tuple) -> Iterator[KeyedBatch]:
        """Batches of a query's rows, as the store returns them (a cold start reads millions: never all at once).

        Rows go to the matrix as they are: their values stay JSON until the
        matrix sees a changed bucket of a check that keeps some value.
        """
        with self.db.read() as conn:
            cursor = self.db.execute(conn, sql, params)
            while chunk := cursor.fetchmany(8192):
                yield KeyedBatch(self.keys, chunk)

    def _decode(self, text: str) -> dict[str, str]:
        labels = self._label_cache.get(text)
        if labels is None:
            try:
                labels = _labels.decode(text)
            except msgspec.DecodeError:
                labels = {str(k): str(v) for k, v in json.loads(text).items()}
            if len(self._label_cache) < 100_000:
                self._label_cache[text] = labels
        return labels

    def close(self) -> None:
        self.db.close()


def _holds(held: dict[str, bool] | None, needed: dict[str, bool]) -> bool:
    """Whether a pack holding ``held`` value keys (True: with sketches) has everything ``needed``."""
    return held is not None and all(key in held and (held[key] or not sketch) for key, sketch in needed.items())
