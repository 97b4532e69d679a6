"""The pusher's and the spool's families on the agent's /metrics.

``METRIC_DOCS`` names and explains every family (computed at scrape;
``docs/metrics.md`` is generated from it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from commune_agent.batcher import Batch
from commune_agent.probes.base import MetricDoc
from commune_agent.spool import Spool

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass
class PushStats:
    """Counters the pusher keeps for /metrics (written on the loop, read at scrape)."""

    sent: int = 0
    sent_bytes: int = 0
    acked: int = 0
    duplicate: int = 0
    results_acked: int = 0
    rejected: dict[int, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    last_success: float | None = None
    clock_offset: float | None = None
    backoff: float = 0.0
    latency_buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))
    latency_sum: float = 0.0
    latency_count: int = 0

    def observe_latency(self, seconds: float) -> None:
        for i, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                self.latency_buckets[i] += 1
        self.latency_sum += seconds
        self.latency_count += 1


METRIC_DOCS: tuple[MetricDoc, ...] = (
    MetricDoc("agent_push_reports_sent_total", "Reports POSTed to the collector (attempts, resends included).",
              (), "counter"),
    MetricDoc("agent_push_sent_bytes_total", "Compressed report bytes sent to the collector.", (), "counter"),
    MetricDoc("agent_push_reports_acked_total", "Reports the collector acknowledged as stored (duplicates included).",
              (), "counter"),
    MetricDoc("agent_push_reports_duplicate_total", "Acks saying the report was already stored (a resend).",
              (), "counter"),
    MetricDoc("agent_push_results_acked_total", "Check results in acknowledged reports.", (), "counter"),
    MetricDoc("agent_push_reports_rejected_total", "Reports the collector refused for good, by HTTP status "
              "(quarantined in the spool).", ("status",), "counter"),
    MetricDoc("agent_push_failures_total", "Push attempts that will be retried, by reason (connect, timeout, "
              "transport, http_<status>, bad_ack, token, spool).", ("reason",), "counter"),
    MetricDoc("agent_push_duration_seconds", "Latency of report POSTs.", (), "histogram"),
    MetricDoc("agent_push_last_success_timestamp_seconds", "When the collector last acknowledged a report "
              "(unix time; 0 before the first).", ()),
    MetricDoc("agent_push_backoff_seconds", "Wait before the next retry; 0 while pushes succeed.", ()),
    MetricDoc("agent_push_clock_offset_seconds", "This site's clock offset as the collector measured it "
              "(collector time minus agent time, transit included).", ()),
    MetricDoc("agent_push_unspooled_results", "Results in memory, not yet written to the spool.", ()),
    MetricDoc("agent_spool_reports", "Batches in the spool waiting for the collector's ack.", ()),
    MetricDoc("agent_spool_results", "Check results in the spool waiting for the collector's ack.", ()),
    MetricDoc("agent_spool_bytes", "Stored (compressed) batch bytes in the spool, quarantine included; "
              "bounded by collector.spool_max_bytes.", ()),
    MetricDoc("agent_spool_quarantined_reports", "Batches the collector refused for good, kept aside.", ()),
    MetricDoc("agent_spool_oldest_age_seconds", "Age of the oldest batch waiting; 0 when the spool is empty.", ()),
    MetricDoc("agent_spool_dropped_reports_total", "Batches that will never reach the collector, by reason.",
              ("reason",), "counter"),
    MetricDoc("agent_spool_dropped_results_total", "Check results that will never reach the collector, by reason.",
              ("reason",), "counter"),
)
_DOCS = {doc.name: doc for doc in METRIC_DOCS}
_FAMILIES = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily, "histogram": HistogramMetricFamily}


def _family(name: str) -> Any:
    doc = _DOCS[name]
    return _FAMILIES[doc.type]("commune_" + name, doc.help, labels=list(doc.labels))


def _single(name: str, value: float) -> Metric:
    family = _family(name)
    family.add_metric([], value)
    return family


def _by_label(name: str, values: dict[str, int]) -> Metric:
    family = _family(name)
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


class Pushing(Protocol):
    """What the families read of a ``Pusher`` (declared here so that this module need not import it)."""

    stats: PushStats
    spool: Spool
    batch: Batch
    clock: Callable[[], float]


class PushCollector(Collector):
    """The push and spool families (``METRIC_DOCS``), built fresh at each scrape."""

    def __init__(self, pusher: Pushing):
        self.pusher = pusher

    def collect(self) -> Iterator[Metric]:
        p, s = self.pusher, self.pusher.stats
        spool = p.spool.stats
        yield _single("agent_push_reports_sent_total", s.sent)
        yield _single("agent_push_sent_bytes_total", s.sent_bytes)
        yield _single("agent_push_reports_acked_total", s.acked)
        yield _single("agent_push_reports_duplicate_total", s.duplicate)
        yield _single("agent_push_results_acked_total", s.results_acked)
        # dict() copies in one step under the GIL: the loop thread may add keys while we scrape
        yield _by_label("agent_push_reports_rejected_total", {str(k): v for k, v in dict(s.rejected).items()})
        yield _by_label("agent_push_failures_total", dict(s.failures))
        hist = _family("agent_push_duration_seconds")
        buckets = [(str(b), float(n)) for b, n in zip(LATENCY_BUCKETS, s.latency_buckets, strict=True)]
        hist.add_metric([], [*buckets, ("+Inf", float(s.latency_count))], s.latency_sum)
        yield hist
        yield _single("agent_push_last_success_timestamp_seconds", s.last_success or 0.0)
        yield _single("agent_push_backoff_seconds", s.backoff)
        if s.clock_offset is not None:
            yield _single("agent_push_clock_offset_seconds", s.clock_offset)
        yield _single("agent_push_unspooled_results", float(len(p.batch)))
        yield _single("agent_spool_reports", spool.reports)
        yield _single("agent_spool_results", spool.results)
        yield _single("agent_spool_bytes", spool.bytes)
        yield _single("agent_spool_quarantined_reports", spool.quarantined)
        age = max(0.0, p.clock() - spool.oldest_created) if spool.oldest_created is not None else 0.0
        yield _single("agent_spool_oldest_age_seconds", age)
        drops = dict(p.spool.drops.by_reason)
        yield _by_label("agent_spool_dropped_reports_total", {k: v[0] for k, v in drops.items()})
        yield _by_label("agent_spool_dropped_results_total", {k: v[1] for k, v in drops.items()})
