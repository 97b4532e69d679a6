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
import gzip
import logging
import sqlite3
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

import httpx

from commune_agent import __version__
from commune_agent.batcher import Batch, to_check_result
from commune_agent.checks import Check
from commune_agent.config import PushSettings
from commune_agent.probes.base import ProbeResult
from commune_agent.push.backoff import Backoff
from commune_agent.push.errors import PushSetupError
from commune_agent.push.metrics import PushStats
from commune_agent.push.request import AUTH, REPORTS_PATH, PushOutcome, classify
from commune_agent.push.token import TokenSource
from commune_agent.spool import Group, Spool
from commune_common.wire import MAX_AGE_S, MAX_RESULTS_PER_REPORT, Report, SpoolState, encode_report

log = logging.getLogger("commune_agent.push")
T = TypeVar("T")

MEMORY_INTERVALS = 10  # results kept in memory while the spool cannot be written, in batches


class Pusher:
    """Owns the batch, the spool and the HTTP client; ``run(stop)`` is its whole life."""

    def __init__(self, settings: PushSettings, site: str, spool: Spool, token: TokenSource, *,
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
        self._send_spool = False  # the collector's Ack said it keeps Report.spool (an older one would refuse it)

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
                    outcome = PushOutcome("retry", "spool")
                except Exception:  # a bug must not silently end pushing while probes go on
                    log.exception("unexpected error while sending; will retry")
                    outcome = PushOutcome("retry", "internal")
                if outcome is None:
                    break
                delay = self.backoff.next_delay(outcome.retry_after)
                self.stats.backoff = delay
                if await _stopped_within(stop, delay):
                    return

    async def send_pending(self, client: httpx.AsyncClient) -> PushOutcome | None:
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

    async def _send(self, client: httpx.AsyncClient, group: Group) -> PushOutcome:
        if not group.row_ids:  # every row of it was quarantined as corrupt
            return PushOutcome("acked")
        outcome = await self._post(client, group)
        await self._settle(group, outcome)
        return outcome

    def _spool_state(self) -> SpoolState:
        """The backlog and the drops as /metrics shows them, for the collector's fleet view."""
        stats, drops = self.spool.stats, self.spool.drops.by_reason.values()
        age = max(0.0, self.clock() - stats.oldest_created) if stats.oldest_created is not None else 0.0
        return SpoolState(reports=stats.reports, oldest_age_s=min(age, MAX_AGE_S),
                          dropped_reports=sum(r for r, _ in drops), dropped_results=sum(n for _, n in drops))

    async def _post(self, client: httpx.AsyncClient, group: Group) -> PushOutcome:
        try:
            token = self.token.read()
        except PushSetupError as exc:  # nothing sent; the report keeps its number, if any
            return PushOutcome("retry", "token", detail=str(exc))
        report = Report(site=self.site, instance=self.spool.instance, seq=group.seq, sent_at=self.clock(),
                        agent_version=__version__, results=group.results, config_version=self.config_version,
                        config_error=self.config_error, spool=self._spool_state() if self._send_spool else None)
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
            return PushOutcome("retry", "connect", detail=_describe(exc), delivered=False)
        except httpx.TimeoutException as exc:
            return PushOutcome("retry", "timeout", detail=_describe(exc))
        except httpx.TransportError as exc:
            return PushOutcome("retry", "transport", detail=_describe(exc))
        finally:
            self.stats.observe_latency(time.perf_counter() - started)
        return classify(response, group.seq, self.clock())

    async def _settle(self, group: Group, outcome: PushOutcome) -> None:
        """Make the spool and the counters agree with the answer."""
        if outcome.kind == "acked":
            results = await self._db(self.spool.ack, group.seq)
            self._recovered()
            self.stats.acked += 1
            self.stats.results_acked += results
            self.stats.last_success = self.clock()
            if outcome.ack is not None:
                self._send_spool = "spool" in outcome.ack.stores
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
            log.info("push works again: the collector acknowledged a report after %d failed attempts; "
                     "%d batches to replay",
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
