#!/usr/bin/env python3
"""Disk the evidence summaries take per site and day, in the collector's real SQLite store.

Each site gets the 50 checks of ``benchmarks/judge.py`` (same check ids,
labels and value keys), a round every 30 s for 24 hours (2,880 rounds per
check), values drawn around each key's mean with its spread (normal, cut at
10 % of the mean), every round folded with the collector's own
``fold_results`` into hourly summaries and written with the store's upsert.
Reports the summaries' ``values_json`` bytes and the SQLite file's growth
(after VACUUM) per site-day.

Usage: python benchmarks/evidence_disk.py [--sites 10] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from judge import judged_checks, other_checks  # noqa: E402

from commune_collector.evidence import fold_results  # noqa: E402
from commune_collector.store.sql import SQL_SUMMARY_UPSERT, _summary_row  # noqa: E402
from commune_collector.store.sqlite import SQLiteStore  # noqa: E402
from commune_common.wire import CheckResult  # noqa: E402

INTERVAL = 30.0
DAY = 86400.0


def site_day(site: str, start: float, rng: random.Random) -> list[tuple]:
    """A day of one site's rounds, folded into hourly summary rows."""
    rounds = []
    for check, probe, labels, values in judged_checks() + other_checks():
        ts = start
        while ts < start + DAY:
            drawn = {k: max(mean + rng.gauss(0.0, spread), mean * 0.1) if spread else mean
                     for k, (mean, spread) in values.items()}
            rounds.append((CheckResult(check=check, probe=probe, ts=ts, ok=True, duration_s=0.01, reason="",
                                       labels=labels, values=drawn), ts))
            ts += INTERVAL
    return [_summary_row(s) for s in fold_results(site, rounds).values()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--sites", type=int, default=10, help="sites to generate a day for (default 10)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    start = time.time() // DAY * DAY - DAY
    with tempfile.TemporaryDirectory(prefix="bench-disk-") as tmp:
        db = Path(tmp) / "collector.db"
        SQLiteStore(db, synchronous="NORMAL").migrate()
        empty = _vacuumed_size(db)
        values_bytes = rows = 0
        conn = sqlite3.connect(db)
        for n in range(args.sites):
            summary_rows = site_day(f"site-{n:05d}", start, rng)
            values_bytes += sum(len(r[10]) for r in summary_rows)
            rows += len(summary_rows)
            conn.executemany(SQL_SUMMARY_UPSERT, summary_rows)
            conn.commit()
            print(f"[{time.strftime('%H:%M:%S')}] site {n + 1}/{args.sites} folded", file=sys.stderr, flush=True)
        conn.close()
        grown = _vacuumed_size(db) - empty
    per_site = 1 / args.sites
    print(f"evidence disk: {args.sites} site-days, {rows} hourly summaries")
    print(f"  values_json per site-day:   {values_bytes * per_site / 1024:.1f} KiB")
    print(f"  SQLite file per site-day:   {grown * per_site / 1024:.1f} KiB (summaries table and its index, "
          "after VACUUM)")
    print(f"  at 10,000 sites x 8 days:   {grown * per_site * 10_000 * 8 / 2**30:.1f} GiB")
    return 0


def _vacuumed_size(db: Path) -> int:
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("VACUUM")
    conn.close()
    return db.stat().st_size


if __name__ == "__main__":
    raise SystemExit(main())
