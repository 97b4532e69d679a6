"""Optional forwarding of raw samples to a Prometheus remote_write endpoint.

The collector keeps summaries; the raw series belong in a TSDB. After a report
is durable, its results are offered here and sent with their original
(clock-corrected) timestamps. The queue is bounded and sending runs in its own
task, so a slow or absent TSDB never slows ingest: when the queue is full the
newest samples are dropped and counted.

The wire format is protobuf ``prometheus.WriteRequest`` compressed with raw
Snappy. It has four tiny messages, encoded here by hand rather than pulling in
protobuf code generation.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import struct
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import cramjam
import httpx
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from commune_collector.settings import RemoteWriteSettings
from commune_common.wire import CheckResult, split_key

log = logging.getLogger("commune_collector.remote_write")
PREFIX = "commune_"
Labels = tuple[tuple[str, str], ...]
_HEADERS = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
            "X-Prometheus-Remote-Write-Version": "0.1.0", "User-Agent": "commune-collector"}

# -- protobuf, by hand --------------------------------------------------------------


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # int64 two's complement, as protobuf does
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _label(name: str, value: str) -> bytes:
    return _field(1, name.encode()) + _field(2, value.encode())


def _sample(value: float, ts_ms: int) -> bytes:
    return b"\x09" + struct.pack("<d", value) + b"\x10" + _varint(ts_ms)


def encode_write_request(series: dict[Labels, list[tuple[int, float]]]) -> bytes:
    """``WriteRequest{timeseries: [{labels, samples}]}``; labels sorted, samples in time order."""
    out = bytearray()
    for labels, samples in series.items():
        body = b"".join(_field(1, _label(n, v)) for n, v in sorted(labels))
        body += b"".join(_field(2, _sample(v, ts)) for ts, v in sorted(samples))
        out += _field(1, body)
    return bytes(out)


def snappy_block(data: bytes) -> bytes:
    return bytes(cramjam.snappy.compress_raw(data))


# -- results to series ----------------------------------------------------------------


def series_of(site: str, results: Sequence[CheckResult], shift_s: float) -> Iterator[tuple[Labels, int, float]]:
    """Each result as samples named like the agent's /metrics (``commune_<name>``)."""
    for r in results:
        base = {**r.labels, "site": site, "check": r.check, "probe": r.probe}
        ts_ms = int(round((r.ts + shift_s) * 1000))
        yield _labels("probe_success", base), ts_ms, 1.0 if r.ok else 0.0
        yield _labels("probe_duration_seconds", base), ts_ms, r.duration_s
        for key, value in r.values.items():
            name, extra = split_key(key)
            yield _labels(name, {**extra, **base}), ts_ms, value


def _labels(name: str, labels: dict[str, str]) -> Labels:
    return (("__name__", PREFIX + name), *labels.items())


# -- the queue and its sender -----------------------------------------------------------


@dataclass
class RemoteWriteStats:
    queued: int = 0
    sent: int = 0
    dropped_full: int = 0
    rejected: int = 0
    failed: int = 0
    retries: int = 0
    splits: int = 0  # refused requests sent again as two halves


class RemoteWriter:
    """A bounded queue of reports and a task that ships them in batches."""

    def __init__(self, settings: RemoteWriteSettings, client: httpx.AsyncClient | None = None):
        if not settings.url:
            raise ValueError("remote_write.url is not set")
        self.settings = settings
        self.url = settings.url
        self.stats = RemoteWriteStats()
        self._queue: deque[tuple[str, Sequence[CheckResult], float, int]] = deque()
        self._wake = asyncio.Event()
        self._client = client

    def offer(self, site: str, results: Sequence[CheckResult], shift_s: float) -> bool:
        """Queue a stored report's results; False (and counted) when the queue is full."""
        n = sum(2 + len(r.values) for r in results)
        if self.stats.queued + n > self.settings.queue_max_samples:
            self.stats.dropped_full += n
            return False
        self._queue.append((site, results, shift_s, n))
        self.stats.queued += n
        self._wake.set()
        return True

    def _take_batch(self) -> list[tuple[str, Sequence[CheckResult], float, int]]:
        """Queued reports up to ``batch_samples`` samples (at least one report)."""
        items: list[tuple[str, Sequence[CheckResult], float, int]] = []
        count = 0
        while self._queue and count < self.settings.batch_samples:
            item = self._queue.popleft()
            self.stats.queued -= item[3]
            count += item[3]
            items.append(item)
        return items

    async def run(self, stop: asyncio.Event) -> None:
        """Send until ``stop``; then one last attempt to drain what is queued."""
        verify = ssl.create_default_context(cafile=str(self.settings.ca_file)) if self.settings.ca_file else True
        client = self._client or httpx.AsyncClient(timeout=self.settings.timeout, verify=verify)
        try:
            while not stop.is_set():
                if not self._queue:
                    self._wake.clear()
                    waiter = asyncio.ensure_future(self._wake.wait())
                    stopper = asyncio.ensure_future(stop.wait())
                    await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
                    stopper.cancel()
                    continue
                await self._send_one(client, stop)
            await self._drain(client, stop)
        finally:
            if self._client is None:
                await client.aclose()

    async def _drain(self, client: httpx.AsyncClient, stop: asyncio.Event, budget_s: float = 5.0) -> None:
        """At shutdown, one try per batch within ``budget_s``; the rest is dropped and counted."""
        try:
            async with asyncio.timeout(budget_s):
                while self._queue:
                    await self._send_one(client, stop, retries=0)
        except TimeoutError:
            self.stats.failed += self.stats.queued
            self._queue.clear()
            self.stats.queued = 0

    async def _send_one(self, client: httpx.AsyncClient, stop: asyncio.Event, retries: int | None = None) -> None:
        await self._send_items(client, stop, self._take_batch(), retries)

    async def _send_items(self, client: httpx.AsyncClient, stop: asyncio.Event,
                          items: list[tuple[str, Sequence[CheckResult], float, int]], retries: int | None) -> None:
        """Send these reports as one WriteRequest; when it is refused, each half on its own.

        Prometheus refuses a whole request for one out-of-order or too-old sample (rolling back the
        rest), and a batch easily mixes an agent's spooled backlog with everyone's fresh reports:
        halving until the refused reports stand alone delivers all the others, for a few more
        requests (2 log2 n for one bad report among n).
        """
        series: dict[Labels, list[tuple[int, float]]] = {}
        for site, results, shift, _n in items:
            for labels, ts, value in series_of(site, results, shift):
                series.setdefault(labels, []).append((ts, value))
        count = sum(item[3] for item in items)
        refused = await self._post(client, stop, series, count, retries)
        if refused is None:
            return
        if len(items) > 1:
            half = len(items) // 2
            self.stats.splits += 1
            await self._send_items(client, stop, items[:half], retries)
            await self._send_items(client, stop, items[half:], retries)
            return
        log.warning("remote_write refused %d samples of site %s: %s", count, items[0][0], refused)
        self.stats.rejected += count

    async def _post(self, client: httpx.AsyncClient, stop: asyncio.Event,
                    series: dict[Labels, list[tuple[int, float]]], count: int, retries: int | None) -> str | None:
        """POST with retries on 5xx, 429 and network errors; the refusal (a 4xx) as text, None otherwise."""
        body = snappy_block(encode_write_request(series))
        attempts = 1 + (self.settings.max_retries if retries is None else retries)
        status: int | None = None
        detail = ""
        for attempt in range(attempts):
            try:
                response = await client.post(self.url, content=body, headers=_HEADERS)
            except httpx.HTTPError as exc:
                status, detail = None, str(exc)
            else:
                status, detail = response.status_code, response.text[:200]
                if 200 <= status < 300:
                    self.stats.sent += count
                    return None
                if 400 <= status < 500 and status != 429:
                    return f"{status} {detail.strip()}"
            if attempt + 1 < attempts:
                self.stats.retries += 1
                delay = min(30.0, 0.5 * 2 ** attempt) * random.uniform(0.5, 1.0)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                except TimeoutError:
                    pass
        log.warning("remote_write gave up on %d samples: %s %s", count, status, detail)
        self.stats.failed += count
        return None

    def metrics(self) -> Iterator[Metric]:
        s = self.stats
        samples = CounterMetricFamily("commune_collector_remote_write_samples",
                                      "Samples handled by remote_write forwarding, by outcome.", labels=["outcome"])
        for outcome, n in (("sent", s.sent), ("dropped_queue_full", s.dropped_full), ("rejected", s.rejected),
                           ("failed", s.failed)):
            samples.add_metric([outcome], n)
        yield samples
        yield CounterMetricFamily("commune_collector_remote_write_retries", "Remote write requests retried.", s.retries)
        yield CounterMetricFamily("commune_collector_remote_write_splits",
                                  "Refused remote write requests sent again as two halves (to deliver the rest).",
                                  s.splits)
        yield GaugeMetricFamily("commune_collector_remote_write_queue_samples", "Samples waiting to be sent.", s.queued)
