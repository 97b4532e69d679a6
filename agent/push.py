"""Push results to the collector: spool first, then send; retry with backoff; replay oldest first.

Flow: the scheduler's results land in an in-memory ``Batch``; every
``push_interval`` the batch is written to the spool (fsynced) and only then
sent, so everything produced is durable within one interval. The sender sends
the *current* batch first, so the collector sees the site's state now as soon
as the link is back, then replays the backlog oldest first, coalescing never-
sent batches into reports of up to ``max_batch_results`` results, and spending
at most ``replay_bytes_per_push`` of stored (compressed) bytes per interval on
replay, for metered 4G links (at least one backlog report per interval, so
the queue always drains). Bodies go out gzip-compressed.

Answers (the contract with ``collector/``):

- 200 with ``Ack`` (``duplicate`` too): stored; the rows are deleted.
- 400, 413, 415, 422: the report itself is refused for good; it is quarantined in
  the spool (never blocks the queue), counted, logged with status and detail.
- 401, 403: the *token* is refused (missing, revoked, another site's). Every
  report would fail alike, so nothing is quarantined: the data stays spooled,
  an error is logged, and sending resumes once the token file is fixed.
- 408, 429, 5xx, connection errors, timeouts, a 200 without a valid ``Ack``
  and anything else: retried with exponential backoff and full jitter (1 s up
  to ``backoff_max``), honouring ``Retry-After``; the data stays spooled.

Metrics: ``METRIC_DOCS`` below names and explains every family the pusher
adds to the agent's /metrics (computed at scrape; ``docs/metrics.md`` is
generated from it). Dropped results are counted by reason: ``age``, ``size``,
``rejected``, ``corrupt``, ``memory`` (the spool could not be written and the
in-memory bound was hit).
"""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import logging
import os
import random
import sqlite3
import ssl
import stat
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import urlsplit

import httpx
import msgspec
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from commune_agent import __version__
from commune_agent.batcher import Batch, to_check_result
from commune_agent.checks import Check
from commune_agent.config import CollectorSettings
from commune_agent.probes.base import MetricDoc, ProbeResult
from commune_agent.spool import FILE_NAME, DropCounts, Group, Spool, SpoolError
from commune_common.wire import MAX_RESULTS_PER_REPORT, Ack, Report, encode_report

if TYPE_CHECKING:
    from commune_agent.app import Agent

log = logging.getLogger(__name__)
T = TypeVar("T")

REPORTS_PATH = "/api/v1/reports"
PERMANENT = frozenset({400, 413, 415, 422})  # the report itself is bad: resending it can never succeed
AUTH = frozenset({401, 403})  # the agent's token is bad: every report would fail alike, so hold them all
BACKOFF_BASE = 1.0
MEMORY_INTERVALS = 10  # results kept in memory while the spool cannot be written, in batches
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_ack_decoder = msgspec.json.Decoder(Ack)


class PushSetupError(Exception):
    """The pusher cannot start (token, CA file, spool); the message says what to fix."""


# -- the token -------------------------------------------------------------------


class TokenSource:
    """The site token, read at every send so a rotated file is picked up without a restart."""

    def __init__(self, file: Path | None = None, env: str | None = None):
        if file is None and env is None:
            raise PushSetupError("collector: set token_file (or token_env) to the token issued for this site")
        self.file = file
        self.env = env
        self.read()  # fail at start, not at the first push
        if file is not None and os.stat(file).st_mode & (stat.S_IRGRP | stat.S_IROTH):
            log.warning("token file %s is readable by group or others; chmod 600 it", file)

    def read(self) -> str:
        if self.file is not None:
            try:
                token = self.file.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise PushSetupError(f"collector.token_file {self.file}: cannot read: {exc}") from None
            where = f"collector.token_file {self.file}"
        else:
            token = os.environ.get(str(self.env), "").strip()
            where = f"environment variable {self.env} (collector.token_env)"
        if not token:
            raise PushSetupError(f"{where} is empty")
        return token


# -- backoff ---------------------------------------------------------------------


@dataclass
class Backoff:
    """Exponential backoff with full jitter: the n-th wait is uniform in [base, min(cap, base*2^n)].

    Jitter spreads 10,000 agents that lost the collector at the same moment,
    so they do not all come back in the same second.
    """

    cap: float = 300.0
    base: float = BACKOFF_BASE
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0

    def next_delay(self, retry_after: float | None = None) -> float:
        ceiling = min(self.cap, self.base * 2 ** min(self.failures, 30))
        self.failures += 1
        delay = max(self.base, self.rng.uniform(0, ceiling))
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.cap))
        return delay

    def reset(self) -> None:
        self.failures = 0


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds from now: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


# -- one request -----------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What one POST came to."""

    kind: Literal["acked", "rejected", "retry"]
    reason: str = ""  # failure kind for metrics: connect, timeout, http_503 ...
    status: int | None = None
    detail: str = ""
    delivered: bool = True  # False only when the request provably never reached the collector
    retry_after: float | None = None
    ack: Ack | None = None


def classify(response: httpx.Response, seq: int, now: float) -> Outcome:
    """Map the collector's answer to acked / rejected for good / retry."""
    status = response.status_code
    if status == 200:
        try:
            ack = _ack_decoder.decode(response.content)
        except msgspec.DecodeError as exc:  # e.g. a captive portal's HTML page: nothing was stored
            return Outcome("retry", "bad_ack", status, f"not an Ack: {exc}")
        if ack.accepted != seq:
            return Outcome("retry", "bad_ack", status, f"acked seq {ack.accepted}, sent {seq}")
        return Outcome("acked", status=status, ack=ack)
    detail = response.text[:300].replace("\n", " ")
    if status in PERMANENT:
        return Outcome("rejected", f"http_{status}", status, detail)
    if status in AUTH:  # fixed by the operator (token file, site id), not by dropping data
        return Outcome("retry", f"http_{status}", status, detail)
    return Outcome("retry", f"http_{status}", status, detail,
                   retry_after=retry_after_seconds(response.headers.get("retry-after"), now))


# -- metrics ---------------------------------------------------------------------


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


class PushCollector(Collector):
    """The push and spool families (``METRIC_DOCS``), built fresh at each scrape."""

    def __init__(self, pusher: Pusher):
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


# -- the pusher ------------------------------------------------------------------


class Pusher:
    """Owns the batch, the spool and the HTTP client; ``run(stop)`` is its whole life."""

    def __init__(self, settings: CollectorSettings, site: str, spool: Spool, token: TokenSource, *,
                 verify: ssl.SSLContext | bool = True, transport: httpx.AsyncBaseTransport | None = None,
                 clock: Callable[[], float] = time.time, backoff: Backoff | None = None):
        self.settings = settings
        self.site = site
        self.spool = spool
        self.token = token
        self.url = settings.url.rstrip("/") + REPORTS_PATH
        self.max_results = min(settings.max_batch_results, MAX_RESULTS_PER_REPORT)
        self.clock = clock
        self.stats = PushStats()
        self.backoff = backoff or Backoff(cap=settings.backoff_max)
        self.batch = Batch(self.max_results * MEMORY_INTERVALS,
                           on_drop=lambda n: self.spool.drops.add("memory", 0, n))
        self._verify = verify
        self._transport = transport
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool")
        self._wake = asyncio.Event()
        self._current: int | None = None  # newest spooled row: sent before the backlog
        self._budget = 0
        self._replayed = False  # whether this interval already replayed one backlog report
        self._failing = 0
        self.config_version = ""  # set by commune_agent.remote_config when centrally managed
        self.config_error = ""

    def sink(self, check: Check, result: ProbeResult) -> None:
        """Agent sink: keep the result for the next spool write."""
        self.batch.add(to_check_result(check, result))

    async def run(self, stop: asyncio.Event) -> None:
        """Flush and send until ``stop``; then flush what is left to disk (SIGTERM loses nothing)."""
        async with self.client() as client:
            self._wake.set()  # a backlog left by an earlier run goes out at once
            tasks = [asyncio.create_task(self._flush_loop(stop), name="spool-flush"),
                     asyncio.create_task(self._send_loop(stop, client), name="push-send")]
            try:
                await stop.wait()
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await self.flush()
                await self._db(self.spool.close)
                self._executor.shutdown(wait=True)

    def client(self) -> httpx.AsyncClient:
        """The HTTP client ``run`` uses (tests drive ``flush``/``send_pending`` with it)."""
        # one connection, kept between pushes (httpx's default keeps it 5 s, less than any push interval)
        limits = httpx.Limits(max_connections=4, max_keepalive_connections=1,
                              keepalive_expiry=self.settings.keep_alive)
        return httpx.AsyncClient(timeout=self.settings.timeout, verify=self._verify, transport=self._transport,
                                 limits=limits, headers={"User-Agent": f"commune-agent/{__version__}"})

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a spool call on the spool's own thread: the loop never waits for an fsync."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, partial(fn, *args, **kwargs))

    # -- spooling --------------------------------------------------------------

    async def _flush_loop(self, stop: asyncio.Event) -> None:
        """Every interval: spool what came in, give replay a fresh byte budget, wake the sender."""
        while not await _stopped_within(stop, self.settings.push_interval):
            await self.flush()
            self.new_interval()

    def new_interval(self) -> None:
        self._budget = self.settings.replay_bytes_per_push
        self._replayed = False
        self._wake.set()

    async def flush(self) -> None:
        """Write the in-memory batch to the spool (one fsynced transaction); it becomes the current report."""
        items = self.batch.take()
        if not items:
            return
        try:
            ids = await self._db(self.spool.append, items, self.max_results)
        except (sqlite3.Error, OSError) as exc:
            log.error("cannot write the spool %s: %s; keeping %d results in memory", self.spool.path, exc, len(items))
            self.batch.put_back(items)
            return
        self._current = ids[-1]

    # -- sending ---------------------------------------------------------------

    async def _send_loop(self, stop: asyncio.Event, client: httpx.AsyncClient) -> None:
        self._budget = self.settings.replay_bytes_per_push
        while True:
            await self._wake.wait()
            self._wake.clear()
            while True:
                try:
                    outcome = await self.send_pending(client)
                except (sqlite3.Error, OSError) as exc:
                    log.error("spool error while sending: %s", exc)
                    outcome = Outcome("retry", "spool")
                except Exception:  # a bug must not silently end pushing while probes go on
                    log.exception("unexpected error while sending; will retry")
                    outcome = Outcome("retry", "internal")
                if outcome is None:
                    break
                delay = self.backoff.next_delay(outcome.retry_after)
                self.stats.backoff = delay
                if await _stopped_within(stop, delay):
                    return

    async def send_pending(self, client: httpx.AsyncClient) -> Outcome | None:
        """Current state first, then the backlog oldest first within the byte budget.

        Returns the failure to back off from, or None when done until the next interval.
        """
        if self._current is not None:
            group = await self._db(self.spool.claim, self._current)
            if group is not None:
                outcome = await self._send(client, group)
                if outcome.kind == "retry":
                    return outcome
            self._current = None
        while True:
            group = await self._db(self.spool.claim_oldest, self.max_results, max(self._budget, 0),
                                   force=not self._replayed)
            if group is None:
                return None
            outcome = await self._send(client, group)
            if outcome.kind == "retry":
                return outcome
            self._budget -= group.stored_bytes
            self._replayed = True

    async def _send(self, client: httpx.AsyncClient, group: Group) -> Outcome:
        if not group.row_ids:  # every row of it was quarantined as corrupt
            return Outcome("acked")
        outcome = await self._post(client, group)
        await self._settle(group, outcome)
        return outcome

    async def _post(self, client: httpx.AsyncClient, group: Group) -> Outcome:
        try:
            token = self.token.read()
        except PushSetupError as exc:  # nothing sent; the report keeps its number, if any
            return Outcome("retry", "token", detail=str(exc))
        report = Report(site=self.site, instance=self.spool.instance, seq=group.seq, sent_at=self.clock(),
                        agent_version=__version__, results=group.results, config_version=self.config_version,
                        config_error=self.config_error)
        body = gzip.compress(encode_report(report), compresslevel=6)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                   "Content-Encoding": "gzip"}
        await self._db(self.spool.begin_attempt, group.seq)
        self.stats.sent += 1
        self.stats.sent_bytes += len(body)
        started = time.perf_counter()
        try:
            response = await client.post(self.url, content=body, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            return Outcome("retry", "connect", detail=_describe(exc), delivered=False)
        except httpx.TimeoutException as exc:
            return Outcome("retry", "timeout", detail=_describe(exc))
        except httpx.TransportError as exc:
            return Outcome("retry", "transport", detail=_describe(exc))
        finally:
            self.stats.observe_latency(time.perf_counter() - started)
        return classify(response, group.seq, self.clock())

    async def _settle(self, group: Group, outcome: Outcome) -> None:
        """Make the spool and the counters agree with the answer."""
        if outcome.kind == "acked":
            results = await self._db(self.spool.ack, group.seq)
            self._recovered()
            self.stats.acked += 1
            self.stats.results_acked += results
            self.stats.last_success = self.clock()
            if outcome.ack is not None:
                self.stats.duplicate += int(outcome.ack.duplicate)
                self.stats.clock_offset = outcome.ack.clock_offset_s
        elif outcome.kind == "rejected":
            reports, results = await self._db(self.spool.reject, group.seq, outcome.status or 0)
            self._recovered()
            status = outcome.status or 0
            self.stats.rejected[status] = self.stats.rejected.get(status, 0) + 1
            log.error("collector refused report seq %d (%d batches, %d results) with HTTP %d: %s; quarantined in %s",
                      group.seq, reports, results, status, outcome.detail, self.spool.path)
        else:
            if not outcome.delivered:
                await self._db(self.spool.release, group.seq)
            self.stats.failures[outcome.reason] = self.stats.failures.get(outcome.reason, 0) + 1
            self._failing += 1
            if outcome.status in AUTH:
                if self._failing == 1:
                    log.error("collector refused this agent's token with HTTP %d: %s; check collector.token_file "
                              "or token_env and site.id. Results stay spooled and are sent once the token is "
                              "accepted (the token is re-read before every attempt)", outcome.status, outcome.detail)
                return
            level = logging.WARNING if self._failing == 1 else logging.DEBUG
            log.log(level, "push to %s failed (%s%s); will retry, %d batches spooled", self.url, outcome.reason,
                    f": {outcome.detail}" if outcome.detail else "", self.spool.stats.reports)

    def _recovered(self) -> None:
        if self._failing:
            log.warning("collector reachable again after %d failed attempts; %d batches to replay",
                        self._failing, self.spool.stats.reports)
        self._failing = 0
        self.backoff.reset()
        self.stats.backoff = 0.0


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds``; True if ``stop`` was set meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
        return True
    except TimeoutError:
        return stop.is_set()


# -- wiring ----------------------------------------------------------------------


def open_spool(state_dir: Path, settings: CollectorSettings, clock: Callable[[], float] = time.time) -> Spool:
    try:
        return Spool(Path(state_dir) / FILE_NAME, max_bytes=settings.spool_max_bytes,
                     max_age=settings.spool_max_age, clock=clock, drops=DropCounts())
    except (SpoolError, OSError) as exc:
        raise PushSetupError(f"agent.state_dir: {exc}") from None


def build_pusher(agent: Agent, **kwargs: Any) -> Pusher:
    """The pusher for ``agent``, registered as its sink and on its /metrics registry."""
    settings = agent.config.collector
    if settings is None:
        raise PushSetupError("no collector section in the config: nothing to push to")
    _warn_cleartext(settings.url)
    verify = tls_verify(settings.ca_file)
    token = TokenSource(settings.token_file, settings.token_env)
    spool = open_spool(agent.config.agent.state_dir, settings)
    pusher = Pusher(settings, agent.config.site.id, spool, token, verify=verify, **kwargs)
    agent.sinks.append(pusher.sink)
    agent.registry.register(PushCollector(pusher))
    log.info("pushing to %s every %gs as instance %s; spool %s (%d batches pending)", settings.url,
             settings.push_interval, spool.instance, spool.path, spool.stats.reports)
    return pusher


def start_pusher(agent: Agent) -> Callable[[asyncio.Event], Awaitable[None]]:
    """What ``commune-agent run`` calls: a task body taking the agent's stop event."""
    return build_pusher(agent).run


def tls_verify(ca_file: Path | None) -> ssl.SSLContext | bool:
    """System CAs by default; only ``ca_file`` when given (a private CA for the collector)."""
    if ca_file is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise PushSetupError(f"collector.ca_file {ca_file}: not a readable PEM CA bundle: {exc}") from None


def _warn_cleartext(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "::1", "localhost"):
        log.warning("collector.url %s is plain http: the site token crosses the network in clear", url)
