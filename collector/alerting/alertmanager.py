"""Send verdict alerts to Alertmanager's v2 API (``POST /api/v2/alerts``).

The notifier is a judge listener that must never slow the judge down: the
listener call only updates the alert book and hands a batch to a bounded queue;
a thread of its own posts batches with retries and backoff. When Alertmanager
is away, the oldest batches are dropped (and counted) rather than piling up;
that loses nothing for good, because every firing alert is re-sent each
``resend_interval`` and every firing alert carries an ``endsAt`` a few
intervals ahead, so Alertmanager resolves by itself what we could not tell it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from commune_collector.alerting.rules import INHIBITING, RULES, AlertBook, inhibitors_first
from commune_collector.alerting.settings import AlertingSettings

log = logging.getLogger("commune_collector.alerting")

HOLD_INTERVALS = 4  # a firing alert stays firing this many re-send intervals past its last send
MAX_ALERTS_PER_POST = 1000
MAX_BACKOFF_S = 30.0
Batch = list[dict[str, Any]]


def redact_url(url: str) -> str:
    """The URL without user:password, for logs (a basic-auth URL is a secret)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class AlertmanagerNotifier:
    """A judge listener that fires and resolves alerts in Alertmanager.

    Call it as ``notifier(changes, snapshot)`` after every judge pass; ``start()``
    runs the sender thread, ``stop()`` ends it. ``clock`` and ``transport`` are
    injectable so unit tests need no network and no waiting.
    """

    def __init__(self, settings: AlertingSettings, *, default_external_url: str = "http://localhost:8470",
                 clock: Callable[[], float] = time.time, transport: httpx.BaseTransport | None = None):
        if not settings.alertmanager_url:
            raise ValueError("alerting.alertmanager_url is not set")
        self.settings = settings
        self.url = f"{settings.alertmanager_url}/api/v2/alerts"
        self.clock = clock
        external_url = (settings.external_url or default_external_url).rstrip("/")
        self.book = AlertBook(external_url, runbook=lambda name: settings.runbook_for(name, external_url),
                              hold_down=settings.hold_down)
        self.hold_s = HOLD_INTERVALS * settings.resend_interval
        self._transport = transport
        self._queue: queue.Queue[Batch] = queue.Queue(maxsize=settings.queue_size)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats: Counter[str] = Counter()
        self.last_success_ts = 0.0

    # -- the judge side: quick and never blocking ----------------------------

    def __call__(self, changes: Iterable[Any], snapshot: Any) -> None:
        """Judge listener: fold one pass into the book and queue what changed."""
        try:
            now = self.clock()
            with self._lock:
                changed = self.book.apply(changes, snapshot, now)
                # an upstream outage's alerts go in a POST of their own ahead of the commune alerts they
                # hold: Alertmanager sends an alert whose startsAt is past group_wait at once, and the
                # inhibitor has to know the outage by then
                parts = ([a.payload(now, self.hold_s) for a in changed if a.kind in INHIBITING],
                         [a.payload(now, self.hold_s) for a in changed if a.kind not in INHIBITING])
            for alert in changed:
                self.stats["resolved" if alert.ends_at is not None else "fired"] += 1
            for payloads in parts:
                for chunk in _chunks(payloads):
                    self._enqueue(chunk)
        except Exception:  # noqa: BLE001 - alerting must never break the judge
            self.stats["listener_errors"] += 1
            log.exception("alerting listener failed; the judge goes on")

    def _enqueue(self, batch: Batch) -> None:
        while True:
            try:
                self._queue.put_nowait(batch)
                return
            except queue.Full:
                try:
                    dropped = self._queue.get_nowait()
                except queue.Empty:
                    continue
                self.stats["dropped_alerts"] += len(dropped)
                log.warning("alert queue full: dropped a batch of %d alerts", len(dropped))

    # -- the sender thread ----------------------------------------------------

    def start(self) -> AlertmanagerNotifier:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="alertmanager-notifier", daemon=True)
            self._thread.start()
            log.info("alerting to %s every %gs", redact_url(self.url), self.settings.resend_interval)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """End the sender thread. Firing alerts are not resolved: they expire by ``endsAt``."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        with httpx.Client(timeout=self.settings.timeout, transport=self._transport) as client:
            next_resend = self.clock() + self.settings.resend_interval
            while not self._stop.is_set():
                try:
                    batch = self._queue.get(timeout=max(0.0, min(next_resend - self.clock(), 1.0)))
                except queue.Empty:
                    if self.clock() < next_resend:
                        continue
                    next_resend = self.clock() + self.settings.resend_interval
                    for chunk in _chunks(self.resend_batch()):
                        self.deliver(client, chunk)
                    continue
                self.deliver(client, batch)

    def resend_batch(self) -> Batch:
        """Every firing alert with a fresh ``endsAt``: Alertmanager's keep-alive."""
        now = self.clock()
        with self._lock:
            return [alert.payload(now, self.hold_s) for alert in inhibitors_first(self.book.firing.values())]

    def deliver(self, client: httpx.Client, batch: Batch) -> bool:
        """POST one batch with retries and exponential backoff; count the outcome."""
        backoff = 0.5
        for attempt in range(1, self.settings.max_attempts + 1):
            error = self._post(client, batch)
            if error is None:
                self.stats["posts_ok"] += 1
                self.stats["sent_alerts"] += len(batch)
                self.last_success_ts = self.clock()
                return True
            self.stats["posts_failed"] += 1
            log.warning("alertmanager post failed (attempt %d/%d): %s", attempt,
                        self.settings.max_attempts, error)
            if attempt < self.settings.max_attempts and self._stop.wait(backoff):
                break
            backoff = min(backoff * 2, MAX_BACKOFF_S)
        self.stats["dropped_alerts"] += len(batch)
        return False

    def _post(self, client: httpx.Client, batch: Batch) -> str | None:
        try:
            response = client.post(self.url, json=batch)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__} talking to {redact_url(self.url)}"
        if response.status_code >= 300:
            return f"HTTP {response.status_code}: {response.text[:300]}"
        return None

    # -- metrics --------------------------------------------------------------

    def collector(self) -> Collector:
        """A Prometheus collector for the notifier's own health (register it on /metrics)."""
        return _NotifierCollector(self)

    def firing_by_alertname(self) -> dict[str, int]:
        with self._lock:
            counts = Counter(alert.labels["alertname"] for alert in self.book.firing.values())
        return {rule.alertname: counts.get(rule.alertname, 0) for rule in RULES.values()}


def _chunks(payloads: Batch) -> Iterator[Batch]:
    for start in range(0, len(payloads), MAX_ALERTS_PER_POST):
        yield payloads[start:start + MAX_ALERTS_PER_POST]


class _NotifierCollector(Collector):
    def __init__(self, notifier: AlertmanagerNotifier):
        self.notifier = notifier

    def collect(self) -> Iterator[Metric]:
        stats = self.notifier.stats
        firing = GaugeMetricFamily("commune_alerts_firing", "Verdict alerts firing now, by alert name.",
                                   labels=["alertname"])
        for name, count in sorted(self.notifier.firing_by_alertname().items()):
            firing.add_metric([name], count)
        yield firing
        changes = CounterMetricFamily("commune_alert_transitions", "Alerts fired or resolved.",
                                      labels=["transition"])
        changes.add_metric(["fired"], stats["fired"])
        changes.add_metric(["resolved"], stats["resolved"])
        yield changes
        posts = CounterMetricFamily("commune_alertmanager_posts", "POSTs to Alertmanager, by result.",
                                    labels=["result"])
        posts.add_metric(["success"], stats["posts_ok"])
        posts.add_metric(["failure"], stats["posts_failed"])
        yield posts
        yield CounterMetricFamily("commune_alertmanager_alerts_sent", "Alerts delivered to Alertmanager.",
                                  value=stats["sent_alerts"])
        yield CounterMetricFamily("commune_alertmanager_alerts_dropped",
                                  "Alerts given up on (queue full or retries exhausted).",
                                  value=stats["dropped_alerts"])
        yield CounterMetricFamily("commune_alerting_listener_errors",
                                  "Judge passes the alerting listener failed to fold in.",
                                  value=stats["listener_errors"])
        yield GaugeMetricFamily("commune_alertmanager_queue_batches", "Batches waiting to be sent.",
                                value=self.notifier._queue.qsize())
        yield GaugeMetricFamily("commune_alertmanager_last_success_timestamp_seconds",
                                "When a POST to Alertmanager last succeeded (0 = never).",
                                value=self.notifier.last_success_ts)
