"""The background work that folds the journal into summaries and applies retention.

Folding is batched on purpose: one pass a minute turns ~2 reports per check
into one summary update, instead of rewriting a summary row on every report.
A failure is logged and counted, and the next pass retries (journal rows are
deleted only together with the summaries they produced, so nothing is lost or
counted twice).

By default the passes run in a child process of the server
(``aggregator.process``): folding is CPU-bound Python, and in the server's
process it would share one GIL with ingest; in its own process it gets the
second core of a 2-core machine. The store already allows several folders at
once (see ``SqlStore.aggregate_now``), so the child simply opens the same
database. ``commune-collector aggregate`` runs the same loop on its own.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable

from commune_collector.childproc import CONTEXT, child_setup, supervise
from commune_collector.metrics import AggregatorStats
from commune_collector.settings import AggregatorSettings, CollectorSettings, RetentionSettings
from commune_collector.store.base import Store

log = logging.getLogger("commune_collector.aggregator")
AGGREGATOR_PROCESS_NAME = "commune-aggr"  # ps/top: 15 characters at most


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
            n = self.store.aggregate_now(max_reports=self.settings.batch_reports)
            folded += n
            if n < self.settings.batch_reports:
                break
        now = self.clock()
        if now - self._last_prune >= self.retention.prune_interval:
            pruned = self.store.prune(now, self.retention.evidence, self.retention.reports_seen)
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


# -- in a process of its own -------------------------------------------------------------------


def run_until_stopped(settings: CollectorSettings, stop: threading.Event | None = None,
                      stats: AggregatorStats | None = None) -> None:
    """Pass every ``aggregator.interval`` until SIGTERM/SIGINT (or ``stop``), then a last pass."""
    from commune_collector.store import open_store
    if stop is None:  # run alone (commune-collector aggregate); the server's child gets it from child_setup
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    store = open_store(settings)
    try:
        aggregator = Aggregator(store, settings.aggregator, settings.retention, stats)
        while True:
            stopping = stop.wait(settings.aggregator.interval)
            try:
                aggregator.run_pass()
            except Exception:  # noqa: BLE001 - the next pass retries; the journal keeps everything
                aggregator.stats.errors += 1
                log.exception("aggregator pass failed")
            if stopping:
                break
    finally:
        store.close()


def _child_main(settings: CollectorSettings, stats: AggregatorStats) -> None:
    """Entry point of the server's aggregator process."""
    run_until_stopped(settings, child_setup(AGGREGATOR_PROCESS_NAME, settings.log_level), stats)


async def run_in_child_process(settings: CollectorSettings, stop: asyncio.Event, stats: AggregatorStats) -> None:
    """Keep an aggregator process running until ``stop`` (``childproc.supervise``); it counts into ``stats``,
    shared memory the server's /metrics reads (a restarted child goes on counting in the same block)."""
    await supervise("aggregator", lambda: CONTEXT.Process(target=_child_main, args=(settings, stats),
                                                         name="commune-collector-aggregator"), stop)
