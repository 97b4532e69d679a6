"""The collector's own /metrics: computed at scrape time, registry injected.

Counters of what ingest did live in a plain ``IngestStats`` object the routes
update; per-site figures (last report, clock offset) and the journal backlog
are read from the store when Prometheus scrapes, so nothing can drift out of
step with the database. Request latency is a histogram in the same registry.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from commune_collector import __version__
from commune_collector.store.base import Store

PREFIX = "commune_collector_"
REJECT_REASONS = ("unauthorized", "forbidden", "too_large", "malformed", "invalid", "unsupported_media_type",
                  "unavailable")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class IngestStats:
    """What the ingest path has done since start; updated by the routes."""

    reports: int = 0
    duplicates: int = 0
    results: int = 0
    values: int = 0
    rejects: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def accepted(self, results: int, values: int, duplicate: bool) -> None:
        with self._lock:
            if duplicate:
                self.duplicates += 1
            else:
                self.reports += 1
                self.results += results
                self.values += values

    def rejected(self, reason: str) -> None:
        with self._lock:
            self.rejects[reason] += 1


class AggregatorStats(ctypes.Structure):
    """The aggregator's counters, as a C struct so that they can live in memory shared with its process.

    The aggregator runs in a child process by default; counters kept there in plain attributes never
    reached the server's /metrics (passes, folds, errors and prunes all read 0). ``shared()`` makes a
    block that is given to the child at spawn, written by the aggregator alone and read at every scrape;
    ``AggregatorStats()`` is a private one (the stand-alone ``commune-collector aggregate``, tests).
    """

    _fields_ = [("passes", ctypes.c_double), ("folded_reports", ctypes.c_double),
                ("last_pass_seconds", ctypes.c_double), ("errors", ctypes.c_double),
                ("pruned_summaries", ctypes.c_double), ("pruned_report_ranges", ctypes.c_double),
                ("last_prune_at", ctypes.c_double)]

    @classmethod
    def shared(cls) -> AggregatorStats:
        return multiprocessing.get_context("spawn").RawValue(cls)


class CollectorMetrics(Collector):
    """Yields ingest counters, per-site state and journal backlog at each scrape."""

    def __init__(self, store: Store, ingest: IngestStats, aggregator: AggregatorStats,
                 extra: list[Callable[[], Iterator[Metric]]] | None = None,
                 clock: Callable[[], float] = time.time):
        self.store = store
        self.ingest = ingest
        self.aggregator = aggregator
        self.extra = extra or []
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        yield from self._ingest_families()
        yield from self._site_families()
        yield from self._journal_families()
        yield from self._writer_families()
        for source in self.extra:
            yield from source()
        info = GaugeMetricFamily(PREFIX + "build_info", "Collector version; value is always 1.", labels=["version"])
        info.add_metric([__version__], 1.0)
        yield info

    def _ingest_families(self) -> Iterator[Metric]:
        s = self.ingest
        yield CounterMetricFamily(PREFIX + "ingest_reports", "Reports stored (duplicates excluded).", s.reports)
        yield CounterMetricFamily(PREFIX + "ingest_duplicate_reports", "Resent reports acknowledged, not stored again.",
                                  s.duplicates)
        yield CounterMetricFamily(PREFIX + "ingest_results", "Check results (samples) stored.", s.results)
        yield CounterMetricFamily(PREFIX + "ingest_values", "Measured values carried by stored results.", s.values)
        rejects = CounterMetricFamily(PREFIX + "ingest_rejected_requests", "Report requests refused, by reason.",
                                      labels=["reason"])
        for reason in sorted(set(REJECT_REASONS) | set(s.rejects)):
            rejects.add_metric([reason], s.rejects.get(reason, 0))
        yield rejects

    def _site_families(self) -> Iterator[Metric]:
        last = GaugeMetricFamily(PREFIX + "site_last_report_timestamp_seconds",
                                 "When the site's last report was received (collector clock).", labels=["site"])
        offset = GaugeMetricFamily(PREFIX + "site_clock_offset_seconds",
                                   "Site clock offset: collector receive time minus agent send time "
                                   "(includes transit, about half an RTT).", labels=["site"])
        flagged = GaugeMetricFamily(PREFIX + "site_clock_suspect",
                                    "1 when the site's clock is off by more than clock.warn_offset.", labels=["site"])
        for site, status in sorted(self.store.site_status().items()):
            last.add_metric([site], status.last_report_at)
            offset.add_metric([site], status.clock_offset_s)
            flagged.add_metric([site], 1.0 if status.clock_flagged else 0.0)
        yield from (last, offset, flagged)

    def _journal_families(self) -> Iterator[Metric]:
        stats = self.store.stats()
        yield GaugeMetricFamily(PREFIX + "journal_backlog_reports", "Reports stored but not yet folded into summaries.",
                                stats.journal_reports)
        lag = 0.0 if stats.journal_oldest_received_at is None else max(0.0, self.clock() - stats.journal_oldest_received_at)
        yield GaugeMetricFamily(PREFIX + "aggregator_lag_seconds", "Age of the oldest report not yet folded.", lag)
        yield GaugeMetricFamily(PREFIX + "aggregator_last_run_timestamp_seconds", "When the journal was last folded.",
                                stats.last_aggregation_at or 0.0)
        a = self.aggregator
        yield CounterMetricFamily(PREFIX + "aggregator_passes", "Aggregator passes made (its process's or this one's).",
                                  a.passes)
        yield CounterMetricFamily(PREFIX + "aggregator_folded_reports", "Reports folded into summaries by the "
                                  "aggregator.", a.folded_reports)
        yield CounterMetricFamily(PREFIX + "aggregator_errors", "Aggregator passes that failed.", a.errors)
        yield GaugeMetricFamily(PREFIX + "aggregator_last_pass_seconds", "Duration of the last aggregator pass.",
                                a.last_pass_seconds)
        yield CounterMetricFamily(PREFIX + "retention_pruned_summaries", "Hourly summaries deleted past "
                                  "retention.evidence.", a.pruned_summaries)
        yield CounterMetricFamily(PREFIX + "retention_pruned_report_ranges", "Report-id ranges forgotten past "
                                  "retention.reports_seen.", a.pruned_report_ranges)
        yield GaugeMetricFamily(PREFIX + "retention_last_prune_timestamp_seconds", "When the aggregator last pruned "
                                "(unix time; 0 before the first).", a.last_prune_at)

    def _writer_families(self) -> Iterator[Metric]:
        w = self.store.write_stats
        yield CounterMetricFamily(PREFIX + "store_write_groups", "Write transactions committed by the server's "
                                  "writer (each a group of jobs: reports, token and inventory changes).", w.groups)
        yield CounterMetricFamily(PREFIX + "store_write_jobs", "Write jobs committed by the server's writer.", w.jobs)
        yield CounterMetricFamily(PREFIX + "store_write_lock_wait_seconds",
                                  "Time the server's writer waited for the database's write lock (held by the "
                                  "aggregator or the judge meanwhile).", w.lock_wait_seconds)
        yield CounterMetricFamily(PREFIX + "store_write_held_seconds",
                                  "Time the server's writer held the write lock: running its jobs and committing.",
                                  w.held_seconds)


def request_histogram(registry: CollectorRegistry) -> Histogram:
    """Request latency by route template and method, in the injected registry."""
    return Histogram(PREFIX + "http_request_duration_seconds", "HTTP request latency by route.",
                     ["route", "method"], registry=registry, buckets=LATENCY_BUCKETS)
