"""The background work that folds the journal into summaries and applies retention.

Folding is batched on purpose: one pass a minute turns ~2 reports per check
into one summary update, instead of rewriting a summary row on every report.
A failure is logged and counted, and the next pass retries (journal rows are
deleted only together with the summaries they produced, so nothing is lost or
counted twice).

Folding and pruning are here; the store only runs the SQL they ask for
(``Store.list_journal``, ``commit_folds``, ...). Several folders may run at
once (threads: ``Store.fold_lock``; processes: ``commit_folds`` deletes the
journal rows it folds and rolls back when another process got them first).
By default the passes run in a child process of the server
(``commune_collector.runtime.aggregator_process``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from commune_collector.evidence import BUCKET_SECONDS, CheckSummary, bucket_of, fold_results
from commune_collector.metrics import AggregatorStats
from commune_collector.settings import AggregatorSettings, RetentionSettings
from commune_collector.store import journal
from commune_collector.store.base import AlreadyFolded, PruneCounts, Store
from commune_common.wire import CheckResult

log = logging.getLogger("commune_collector.aggregator")
FOLD_STEP = 100_000  # journal ids listed per folding step (a minute of 10,000 sites is ~20,000)


class Aggregator:
    def __init__(self, store: Store, settings: AggregatorSettings, retention: RetentionSettings,
                 stats: AggregatorStats | None = None, clock: Callable[[], float] = time.time):
        self.store = store
        self.settings = settings
        self.retention = retention
        self.stats = stats if stats is not None else AggregatorStats()
        self.clock = clock
        self._last_prune = 0.0

    def run_pass(self) -> int:
        """Fold what the journal holds now, prune when due; blocking."""
        started = time.monotonic()
        folded = 0
        while True:
            n = fold_journal(self.store, max_reports=self.settings.batch_reports)
            folded += n
            if n < self.settings.batch_reports:
                break
        now = self.clock()
        if now - self._last_prune >= self.retention.prune_interval:
            pruned = prune_evidence(self.store, now, self.retention.evidence, self.retention.reports_seen)
            self._last_prune = now
            self.stats.pruned_summaries += pruned.summaries
            self.stats.pruned_report_ranges += pruned.report_ranges
            self.stats.last_prune_at = now
            log.info("pruned %s", pruned)
        self.stats.passes += 1
        self.stats.folded_reports += folded
        self.stats.last_pass_seconds = time.monotonic() - started
        return folded

    async def run(self, stop: asyncio.Event) -> None:
        """Pass every ``interval`` until ``stop``; one final pass on the way out."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.settings.interval)
            except TimeoutError:
                pass
            try:
                folded = await asyncio.to_thread(self.run_pass)
                log.debug("folded %d reports in %.2fs", folded, self.stats.last_pass_seconds)
            except Exception:  # noqa: BLE001 - the next pass retries; the journal keeps everything
                self.stats.errors += 1
                log.exception("aggregator pass failed")


# -- folding ---------------------------------------------------------------------------------


def fold_journal(store: Store, max_reports: int | None = None) -> int:
    """Fold journal rows received so far into summaries; return reports folded.

    Safe to call from several threads or processes at once: each journal row is folded exactly once.
    """
    with store.fold_lock:  # one folder per process; across processes the row counts guard
        top = store.journal_top()
        if top is None:
            store.mark_aggregator_run()
            return 0
        folded = 0
        last_id = 0
        step = FOLD_STEP if max_reports is None else min(FOLD_STEP, max_reports)
        while max_reports is None or folded < max_reports:
            listed = store.list_journal(last_id, top, step)
            if not listed:
                break
            last_id = int(listed[-1][0])
            folded += _fold_listed(store, listed)
        store.mark_aggregator_run()
        return folded


def _fold_listed(store: Store, listed: Sequence[Sequence[Any]]) -> int:
    """Fold listed journal rows site by site, a few sites per transaction so ingest keeps flowing.

    Only ids are listed; bodies are read a chunk of sites at a time. So each site's rows of a step
    are folded together and its summaries rewritten once, not once per report it sent.
    """
    ids_of: dict[str, list[int]] = defaultdict(list)
    for row_id, site in listed:
        ids_of[site].append(int(row_id))
    folded = 0
    sites = sorted(ids_of)
    for start in range(0, len(sites), store.sites_per_commit):
        chunk = sites[start:start + store.sites_per_commit]
        rows = store.journal_rows([i for site in chunk for i in ids_of[site]])
        by_site: dict[str, list[Sequence[Any]]] = defaultdict(list)
        for row in rows:
            by_site[row[1]].append(row)
        work = [(site, ids_of[site], fold_site(site, by_site[site])) for site in chunk]
        try:
            folded += store.commit_folds(work)
        except AlreadyFolded:
            log.info("journal rows of %d sites were folded by another process; skipped", len(chunk))
    return folded


def fold_site(site: str, rows: Iterable[Sequence[Any]]) -> dict[tuple[str, float], CheckSummary]:
    """Decode a site's journal rows and fold their results at corrected times."""
    pairs: list[tuple[CheckResult, float]] = []
    for _, _, shift, body in rows:
        report = journal.unpack(body)
        shift = float(shift)
        pairs += [(r, r.ts + shift) for r in report.results]
    return fold_results(site, pairs)


# -- retention -------------------------------------------------------------------------------


def prune_evidence(store: Store, now: float, evidence_age: float, seen_age: float) -> PruneCounts:
    """Delete summaries older than ``evidence_age`` and report-id ranges idle for ``seen_age``."""
    summaries = _prune_summaries(store, bucket_of(now - evidence_age, BUCKET_SECONDS))
    ranges = store.delete_report_ranges(now - seen_age)
    return PruneCounts(summaries, ranges)


def _prune_summaries(store: Store, before: float) -> int:
    total = 0
    for bucket in store.summary_buckets_before(before):
        while True:
            n = store.delete_summaries_of_bucket(bucket)
            total += n
            if n <= 0:
                break
    return total
