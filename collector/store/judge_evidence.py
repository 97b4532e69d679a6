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
from collections.abc import Iterator
from typing import Any

import msgspec

from commune_collector.evidence import BUCKET_SECONDS, bucket_of
from commune_collector.judge.source import Keep, SiteRecord
from commune_collector.maintenance.windows import MaintenanceWindow
from commune_collector.store.verdicts import JudgeDb

_labels = msgspec.json.Decoder(dict[str, str])
_COLUMNS = ("s.bucket_start, s.site, s.check_id, s.probe, s.labels, s.rounds_ok, s.rounds_fail, s.first_ts, "
            "s.last_ts, s.last_reason, CASE WHEN k.level = 2 THEN s.values_json END")


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
        self._kept: dict[tuple[str, str], tuple[str, int]] = {}  # (site, check) -> (labels text, keep level)
        self._sites_known: set[str] = set()
        self._cursor_site = ""
        self._label_cache: dict[str, dict[str, str]] = {}
        self._decisions: dict[tuple[str, str, str], int] = {}
        self._ready = False
        self._backfill_seen = 0
        self.keep_backfill = False  # True with checkpoints: entries go once a saved matrix holds them
        self._inventory: list[SiteRecord] = []
        self._inventory_mark: tuple | None = None

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
             resume_from: float | None = None) -> Iterator[list[tuple]]:
        """What changed since the last read; ``resume_from``: the bucket a restored checkpoint was current at."""
        current = bucket_of(now, int(self.bucket_seconds))
        backfill_upto = self._move_cursor(current, full)
        if full or not self._ready:
            self._discover(keep, None)
        else:
            self._discover_some(keep)
        if full:
            start = horizon
        elif resume_from is not None:
            start = max(min(resume_from, current), horizon)
        else:
            start = min(self._read_from if self._read_from is not None else current, current)
        bucket = start
        while bucket <= current:
            yield from self._stream(f"SELECT {_COLUMNS} FROM judge_keep k CROSS JOIN summaries s "
                                    "WHERE s.bucket_start = ? AND s.site = k.site AND s.check_id = k.check_id",
                                    (bucket,))
            bucket += self.bucket_seconds
        if backfill_upto is not None and backfill_upto > self._backfill_seen:
            yield from self._stream(
                f"SELECT {_COLUMNS} FROM judge_backfill b CROSS JOIN judge_keep k CROSS JOIN summaries s "
                "WHERE b.id > ? AND b.id <= ? AND k.site = b.site AND k.check_id = b.check_id "
                "AND s.bucket_start = b.bucket_start AND s.site = b.site AND s.check_id = b.check_id "
                "AND b.bucket_start < ? AND b.bucket_start >= ?",
                (self._backfill_seen, backfill_upto, start, horizon))
            self._backfill_seen = backfill_upto
            if not self.keep_backfill:
                self.trim_backfill(backfill_upto)
        self._read_from = current  # only once everything up to it was read: a failed pass reads it again

    def backfill_mark(self) -> int:
        """The last backfill log entry already read (a checkpoint saved now includes it)."""
        return self._backfill_seen

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

    def _discover(self, keep: Keep, sites: tuple[str, str] | list[str] | None) -> None:
        """Decide for the checks of some sites (all when None) whether the judge reads them."""
        if sites is None:
            rows = self.db.fetch("SELECT site, check_id, probe, labels FROM latest")
        elif isinstance(sites, tuple):
            rows = self.db.fetch("SELECT site, check_id, probe, labels FROM latest WHERE site >= ? AND site <= ?",
                                 sites)
        else:
            rows = []
            for i in range(0, len(sites), 500):
                chunk = sites[i:i + 500]
                rows += self.db.fetch("SELECT site, check_id, probe, labels FROM latest WHERE site IN "
                                      f"({','.join('?' * len(chunk))})", chunk)
        if not rows:
            self._apply([], [], reset=sites is None)
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
        if sites is None:  # everything decided afresh; _apply rebuilds judge_keep from _kept
            pairs = zip(zip(site_col, check_col, strict=True), levels, strict=True)
            for key in [k for k, level in pairs if not level and k in kept]:
                del kept[key]
            kept.update({(site, check): (labels, level) for site, check, labels, level
                         in zip(site_col, check_col, label_col, levels, strict=True) if level})
            self._apply([], [], reset=True)
            return
        add, drop = [], []
        for site, check, labels, level in zip(site_col, check_col, label_col, levels, strict=True):
            held = kept.get((site, check))
            if level and held != (labels, level):
                add.append((site, check, level))
                kept[(site, check)] = (labels, level)
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
                                      "check_id TEXT NOT NULL, level INTEGER NOT NULL, PRIMARY KEY (site, check_id))")
            if reset:
                self.db.execute(conn, "DELETE FROM judge_keep")
                add = [(site, check, level) for (site, check), (_, level) in self._kept.items()]
            self.db.executemany(conn, "DELETE FROM judge_keep WHERE site = ? AND check_id = ?", drop)
            self.db.executemany(conn, "INSERT INTO judge_keep (site, check_id, level) VALUES (?, ?, ?) "
                                      "ON CONFLICT (site, check_id) DO UPDATE SET level = excluded.level", add)
        self._ready = True

    def _stream(self, sql: str, params: tuple) -> Iterator[list[tuple]]:
        """Batches of a query's rows, as the store returns them (a cold start reads millions: never all at once).

        Rows go to the matrix as they are: their labels and values stay JSON
        text until the matrix sees a new check or a changed bucket.
        """
        with self.db.read() as conn:
            cursor = self.db.execute(conn, sql, params)
            while chunk := cursor.fetchmany(8192):
                yield chunk

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
