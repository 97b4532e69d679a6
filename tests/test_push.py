"""The agent's pusher against a fake collector: order, idempotency, rejections, backoff, budget, TLS.

A fake is fine for these units (it answers exactly what the contract with the
collector says, on demand); tests/test_e2e_push.py proves the same behaviour
against the real ``commune-collector`` process.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import gzip
import logging
import os
import random
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import msgspec
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry, generate_latest

from commune_agent.batcher import Batch, to_check_result
from commune_agent.checks import build_checks
from commune_agent.config import AgentConfig, PushSettings
from commune_agent.probes.base import ProbeResult, sample
from commune_agent.push.backoff import Backoff, retry_after_seconds
from commune_agent.push.errors import PushSetupError
from commune_agent.push.metrics import METRIC_DOCS, PushCollector
from commune_agent.push.pusher import Pusher
from commune_agent.push.token import TokenSource
from commune_agent.push.wiring import tls_verify
from commune_agent.spool import Spool
from commune_common.wire import Ack, CheckResult, SpoolState, decode_report
from commune_common.yamlconf import ConfigError, parse_model
from testsupport.peers._base import require_binary

TOKEN = "s3cret-token-for-site-a"
SITE = "site-a"
MiB = 1024 * 1024


# -- a fake collector that keeps the contract ---------------------------------------


@dataclass
class Received:
    seq: int
    instance: str
    results: list[CheckResult]
    duplicate: bool
    headers: dict[str, str]
    spool: SpoolState | None = None


@dataclass
class Step:
    """One scripted answer: an HTTP status, or "timeout" for an answer that never comes."""

    status: int | str
    store: bool = False  # store the report first: the ack is lost on the way back
    kwargs: dict = field(default_factory=dict)


def answer(status: int | str, **kwargs) -> Step:
    return Step(status, False, kwargs)


def store_then(status: int | str, **kwargs) -> Step:
    return Step(status, True, kwargs)


@dataclass
class FakeCollector:
    """Stores reports by (site, instance, seq) like the real one; misbehaves on demand."""

    token: str = TOKEN
    down: bool = False
    script: list[Step] = field(default_factory=list)
    stored: dict[tuple[str, str, int], list[CheckResult]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    peers: list[tuple[str, int]] = field(default_factory=list)  # client address of each request (real server)
    stores: list[str] = field(default_factory=list)  # Ack.stores: [] is an older collector

    def answer(self, headers: dict[str, str], body: bytes) -> httpx.Response:
        if headers.get("authorization") != f"Bearer {self.token}":
            return httpx.Response(401, json={"detail": "bad token"})
        if headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        report = decode_report(body)
        key = (report.site, report.instance, report.seq)
        got = Received(report.seq, report.instance, report.results, key in self.stored, headers, report.spool)
        self.received.append(got)
        step = self.script.pop(0) if self.script else None
        if step is None or step.store:
            self.stored.setdefault(key, report.results)
        if step is not None:
            if step.status == "timeout":
                raise httpx.ReadTimeout("read timed out")
            return httpx.Response(int(step.status), **step.kwargs)
        ack = Ack(accepted=report.seq, duplicate=got.duplicate, clock_offset_s=0.25, stores=self.stores)
        return httpx.Response(200, content=msgspec.json.encode(ack), headers={"content-type": "application/json"})

    def handler(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        return self.answer({k.lower(): v for k, v in request.headers.items()}, request.content)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)

    def all_stored(self) -> list[CheckResult]:
        return [r for results in self.stored.values() for r in results]


# -- helpers ----------------------------------------------------------------------


def result(i: int, check: str = "c") -> CheckResult:
    return CheckResult(check=check, probe="tcp", ts=1000.0 + i, ok=True, duration_s=0.001,
                       values={"tcp_connect_seconds": 0.001 * i})


def settings(tmp_path: Path, **overrides) -> PushSettings:
    token_file = tmp_path / "token"
    tmp_path.mkdir(parents=True, exist_ok=True)
    if not token_file.exists():
        token_file.write_text(TOKEN + "\n")
        token_file.chmod(0o600)
    values = dict(url="http://collector.test", token_file=str(token_file), push_interval="1h",
                  replay_bytes_per_push="1MiB")
    values.update(overrides)
    return PushSettings.model_validate(values)


def make_pusher(tmp_path: Path, fake: FakeCollector, **overrides) -> Pusher:
    cfg = settings(tmp_path, **overrides)
    spool = Spool(tmp_path / "state" / "spool.db", max_bytes=cfg.spool_max_bytes, max_age=cfg.spool_max_age)
    real_http = cfg.url.startswith("https://127.0.0.1")
    return Pusher(cfg, SITE, spool, TokenSource(cfg.token_file, cfg.token_env), verify=tls_verify(cfg.ca_file),
                  transport=None if real_http else fake.transport(),
                  backoff=Backoff(cap=0.05, base=0.01, rng=random.Random(1)))


async def spool_batch(pusher: Pusher, results: list[CheckResult]) -> None:
    """What one push interval does before sending: spool the batch, renew the replay budget."""
    for r in results:
        pusher.batch.add(r)
    await pusher.flush()
    pusher.new_interval()


def stored_keys(results: list[CheckResult]) -> list[tuple[str, float]]:
    return sorted((r.check, r.ts) for r in results)


@pytest.fixture
def fake() -> FakeCollector:
    return FakeCollector()


# -- conversion -------------------------------------------------------------------


def test_to_check_result_carries_check_identity_and_drops_nan() -> None:
    cfg = parse_model(AgentConfig, """
site: {id: site-a, province: ha-noi, commune: Phường Ba Đình}
links:
  - name: fiber
    targets: [{probe: tcp, name: dc, host: 127.0.0.1, port: 9}]
host: {enabled: false}
""")
    [check] = build_checks(cfg)
    probe = ProbeResult(ok=False, reason="refused", ts=12.5, duration_s=0.25,
                        samples=(sample("tcp_connect_seconds", 0.5), sample("x_ratio", float("nan"), stat="avg")))
    wire = to_check_result(check, probe)
    assert wire == CheckResult(check="link/fiber/tcp/dc", probe="tcp", ts=12.5, ok=False, duration_s=0.25,
                               reason="refused", labels={"link": "fiber", "role": "primary", "target": "dc"},
                               values={"tcp_connect_seconds": 0.5})
    long = to_check_result(check, ProbeResult(ok=False, reason="x" * 5000))
    assert len(long.reason) == 1000 and long.reason.endswith("…")


def test_batch_is_bounded_and_drops_oldest() -> None:
    dropped: list[int] = []
    b = Batch(3, on_drop=dropped.append)
    for i in range(5):
        b.add(result(i))
    assert [r.ts for r in b.take()] == [1002.0, 1003.0, 1004.0] and dropped == [1, 1]
    b.add(result(9))
    b.put_back([result(7), result(8)])
    assert [r.ts for r in b.take()] == [1007.0, 1008.0, 1009.0]


# -- the push protocol ------------------------------------------------------------


async def test_push_is_gzip_json_with_bearer_token_and_ack_deletes(tmp_path: Path, fake: FakeCollector) -> None:
    pusher = make_pusher(tmp_path, fake)
    async with pusher.client() as client:
        await spool_batch(pusher, [result(1), result(2)])
        assert await pusher.send_pending(client) is None
    [got] = fake.received
    assert got.headers["content-encoding"] == "gzip" and got.headers["content-type"] == "application/json"
    assert got.seq == 1 and got.instance == pusher.spool.instance and got.results == [result(1), result(2)]
    assert pusher.spool.stats.reports == 0
    assert (pusher.stats.sent, pusher.stats.acked, pusher.stats.results_acked) == (1, 1, 2)
    assert pusher.stats.clock_offset == 0.25 and pusher.stats.last_success is not None


async def test_current_state_first_then_backlog_oldest_first(tmp_path: Path, fake: FakeCollector) -> None:
    pusher = make_pusher(tmp_path, fake)
    fake.down = True
    async with pusher.client() as client:
        for i in range(4):  # four intervals while the collector is unreachable
            await spool_batch(pusher, [result(10 * i), result(10 * i + 1)])
            outcome = await pusher.send_pending(client)
            assert outcome is not None and outcome.kind == "retry" and not outcome.delivered
        assert pusher.spool.stats.reports == 4 and pusher.stats.failures == {"connect": 4}
        fake.down = False
        await spool_batch(pusher, [result(50), result(51)])
        assert await pusher.send_pending(client) is None
    first, second = fake.received
    assert [r.ts for r in first.results] == [1050.0, 1051.0]  # the current state first
    assert [r.ts for r in second.results] == [1000.0, 1001.0, 1010.0, 1011.0, 1020.0, 1021.0, 1030.0, 1031.0]
    assert second.seq > first.seq  # never-sent rows were renumbered and coalesced into one report
    assert len(fake.all_stored()) == 10 and pusher.spool.stats.reports == 0


async def test_the_backlog_rides_along_only_once_the_collector_said_it_keeps_it(
        tmp_path: Path, fake: FakeCollector) -> None:
    pusher = make_pusher(tmp_path, fake)
    async with pusher.client() as client:
        await spool_batch(pusher, [result(1)])
        assert await pusher.send_pending(client) is None  # an older collector: no Ack.stores
        fake.stores = ["spool"]
        await spool_batch(pusher, [result(2)])
        assert await pusher.send_pending(client) is None  # the first ack that lists it
        fake.down = True
        for i in range(3):
            await spool_batch(pusher, [result(10 + i)])
            await pusher.send_pending(client)
        pusher.batch.on_drop(7)  # what a full memory batch reports
        fake.down = False
        await spool_batch(pusher, [result(20)])
        assert await pusher.send_pending(client) is None
    assert [r.spool for r in fake.received[:2]] == [None, None]  # never sent to a collector that did not ask
    current, backlog = fake.received[2], fake.received[3]
    assert current.spool is not None and current.spool.reports == 4  # three waiting, and itself
    assert current.spool.dropped_results == 7 and current.spool.dropped_reports == 0
    assert 0 <= current.spool.oldest_age_s < 60
    assert backlog.spool is not None and backlog.spool.reports == 3
    fake.stores = []
    async with pusher.client() as client:
        await spool_batch(pusher, [result(30)])
        await spool_batch(pusher, [result(31)])
        assert await pusher.send_pending(client) is None
    assert fake.received[-1].spool is None  # the next ack came from an older collector (a rollback)


async def test_lost_ack_resends_the_same_report_stored_once(tmp_path: Path, fake: FakeCollector) -> None:
    pusher = make_pusher(tmp_path, fake)
    fake.script = [store_then(503), store_then("timeout")]
    async with pusher.client() as client:
        await spool_batch(pusher, [result(1)])
        assert (await pusher.send_pending(client)).reason == "http_503"
        assert (await pusher.send_pending(client)).reason == "timeout"
        assert await pusher.send_pending(client) is None
    assert [(g.seq, g.duplicate) for g in fake.received] == [(1, False), (1, True), (1, True)]
    assert all(g.results == [result(1)] for g in fake.received)
    assert len(fake.all_stored()) == 1
    assert pusher.stats.duplicate == 1 and pusher.stats.failures == {"http_503": 1, "timeout": 1}


async def test_a_report_that_may_have_arrived_keeps_its_number(tmp_path: Path, fake: FakeCollector) -> None:
    pusher = make_pusher(tmp_path, fake)
    fake.script = [store_then("timeout")]
    async with pusher.client() as client:
        await spool_batch(pusher, [result(1)])
        assert (await pusher.send_pending(client)).reason == "timeout"  # stored, answer lost
        fake.down = True
        await spool_batch(pusher, [result(2)])
        assert (await pusher.send_pending(client)).reason == "connect"
        assert (await pusher.send_pending(client)).reason == "connect"
        fake.down = False
        await spool_batch(pusher, [result(3)])
        assert await pusher.send_pending(client) is None
    by_seq = {g.seq: [r.ts for r in g.results] for g in fake.received}
    assert by_seq[1] == [1001.0]  # never renumbered nor coalesced with newer rows
    assert stored_keys(fake.all_stored()) == stored_keys([result(1), result(2), result(3)])
    assert pusher.stats.duplicate == 1


@pytest.mark.parametrize("status", [400, 413, 422])
async def test_permanent_rejection_quarantines_and_queue_moves_on(
        tmp_path: Path, fake: FakeCollector, status: int, caplog: pytest.LogCaptureFixture) -> None:
    pusher = make_pusher(tmp_path, fake)
    fake.script = [answer(status, json={"detail": "results[0].ts: expected a number"})]
    caplog.set_level(logging.DEBUG)
    async with pusher.client() as client:
        await spool_batch(pusher, [result(1)])
        assert await pusher.send_pending(client) is None
        await spool_batch(pusher, [result(2)])
        assert await pusher.send_pending(client) is None
    assert fake.all_stored() == [result(2)]
    assert pusher.stats.rejected == {status: 1}
    assert pusher.spool.drops.by_reason == {"rejected": (1, 1)} and pusher.spool.stats.quarantined == 1
    line = next(r.getMessage() for r in caplog.records if "refused" in r.getMessage())
    assert f"HTTP {status}" in line and "results[0].ts: expected a number" in line
    assert TOKEN not in caplog.text


async def test_a_refused_token_holds_the_data_until_the_token_is_fixed(
        tmp_path: Path, fake: FakeCollector, caplog: pytest.LogCaptureFixture) -> None:
    pusher = make_pusher(tmp_path, fake)
    fake.token = "the-token-the-collector-knows"  # the agent's file holds another (revoked, mistyped)
    caplog.set_level(logging.DEBUG)
    async with pusher.client() as client:
        for i in range(3):
            await spool_batch(pusher, [result(i)])
            outcome = await pusher.send_pending(client)
            assert outcome.kind == "retry" and outcome.reason == "http_401"
        (tmp_path / "token").write_text("the-token-the-collector-knows\n")  # the operator fixes the file
        fake.script = [answer(403, json={"detail": "this token may only report for its own site"})]
        assert (await pusher.send_pending(client)).reason == "http_403"
        assert pusher.spool.stats.results == 3 and pusher.spool.stats.quarantined == 0
        assert pusher.spool.drops.by_reason == {}
        assert await pusher.send_pending(client) is None
    assert stored_keys(fake.all_stored()) == stored_keys([result(0), result(1), result(2)])
    assert pusher.stats.failures == {"http_401": 3, "http_403": 1} and pusher.stats.rejected == {}
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "HTTP 401" in errors[0] and "token_file" in errors[0]
    assert TOKEN not in caplog.text and "the-token-the-collector-knows" not in caplog.text


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 404])
async def test_retryable_answers_keep_the_data(tmp_path: Path, fake: FakeCollector, status: int) -> None:
    pusher = make_pusher(tmp_path, fake)
    fake.script = [answer(status, text="busy")]
    async with pusher.client() as client:
        await spool_batch(pusher, [result(1)])
        outcome = await pusher.send_pending(client)
        assert outcome.kind == "retry" and outcome.reason == f"http_{status}"
        assert pusher.spool.stats.reports == 1 and fake.stored == {}
        assert await pusher.send_pending(client) is None
    assert [g.seq for g in fake.received] == [1, 1] and fake.all_stored() == [result(1)]


async def test_200_without_a_valid_ack_is_not_taken_as_stored(tmp_path: Path, fake: FakeCollector) -> None:
    pusher = make_pusher(tmp_path, fake)
    fake.script = [answer(200, html="<html>captive portal</html>"), answer(200, json={"accepted": 99})]
    async with pusher.client() as client:
        await spool_batch(pusher, [result(1)])
        assert (await pusher.send_pending(client)).reason == "bad_ack"
        assert (await pusher.send_pending(client)).reason == "bad_ack"
        assert pusher.spool.stats.reports == 1
        assert await pusher.send_pending(client) is None
    assert fake.all_stored() == [result(1)]


async def test_retry_after_is_honoured(tmp_path: Path, fake: FakeCollector) -> None:
    pusher = make_pusher(tmp_path, fake, backoff_max="10m")
    fake.script = [answer(429, headers={"Retry-After": "120"})]
    async with pusher.client() as client:
        await spool_batch(pusher, [result(1)])
        outcome = await pusher.send_pending(client)
    assert outcome.retry_after == 120.0
    assert Backoff(cap=600, base=1, rng=random.Random(3)).next_delay(outcome.retry_after) >= 120.0


async def test_replay_spends_at_most_the_byte_budget_per_interval(tmp_path: Path, fake: FakeCollector) -> None:
    pusher = make_pusher(tmp_path, fake)
    fake.down = True
    async with pusher.client() as client:
        for i in range(10):
            await spool_batch(pusher, [result(10 * i + j, check=f"c{j}") for j in range(20)])
            await pusher.send_pending(client)
        row_bytes = pusher.spool.stats.bytes / 10
        pusher.settings = pusher.settings.model_copy(update={"replay_bytes_per_push": int(row_bytes * 2.5)})
        fake.down = False
        sent_per_interval = []
        for i in range(4):
            before = len(fake.received)
            await spool_batch(pusher, [result(1000 + i)])
            assert await pusher.send_pending(client) is None
            assert await pusher.send_pending(client) is None  # nothing more until the next interval
            sent_per_interval.append([len(g.results) for g in fake.received[before:]])
    # each interval: the current report (1 result), then two backlog batches (40 results) coalesced
    assert sent_per_interval == [[1, 40], [1, 40], [1, 40], [1, 40]]
    assert pusher.spool.stats.reports == 2


async def test_a_tiny_budget_still_drains_one_batch_per_interval(tmp_path: Path, fake: FakeCollector) -> None:
    pusher = make_pusher(tmp_path, fake, replay_bytes_per_push=1)
    fake.down = True
    async with pusher.client() as client:
        for i in range(3):
            await spool_batch(pusher, [result(i)])
            await pusher.send_pending(client)
        fake.down = False
        await spool_batch(pusher, [result(9)])
        await pusher.send_pending(client)
    assert [[r.ts for r in g.results] for g in fake.received] == [[1009.0], [1000.0]]


async def test_unwritable_spool_keeps_results_in_memory_within_a_bound(
        tmp_path: Path, fake: FakeCollector, monkeypatch: pytest.MonkeyPatch) -> None:
    pusher = make_pusher(tmp_path, fake, max_batch_results=2)  # memory bound: 10 intervals of 2

    def disk_full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")
    monkeypatch.setattr(pusher.spool, "append", disk_full)
    await spool_batch(pusher, [result(i) for i in range(15)])
    assert len(pusher.batch) == 15  # the failed write put them back
    await spool_batch(pusher, [result(i) for i in range(15, 25)])
    assert [r.ts for r in pusher.batch.take()] == [1000.0 + i for i in range(5, 25)]  # the oldest 5 dropped
    assert pusher.spool.drops.by_reason == {"memory": (0, 5)}


# -- backoff ----------------------------------------------------------------------


def test_backoff_grows_with_full_jitter_up_to_the_cap_and_resets() -> None:
    b = Backoff(cap=300, base=1, rng=random.Random(7))
    delays = [b.next_delay() for _ in range(40)]
    assert all(1 <= d <= 300 for d in delays)
    assert all(d <= 2 ** i for i, d in enumerate(delays[:8]))  # ceilings 1, 2, 4, 8 ...
    assert max(delays[20:]) > 100 and len(set(delays[20:])) > 15  # reaches the cap region, jittered
    b.reset()
    assert b.next_delay() == 1


def test_retry_after_seconds_and_http_date() -> None:
    now = time.time()
    assert retry_after_seconds("30", now) == 30.0
    date = email.utils.format_datetime(dt.datetime.fromtimestamp(now + 90, dt.UTC), usegmt=True)
    assert 88 <= retry_after_seconds(date, now) <= 91
    assert retry_after_seconds("soon", now) is None and retry_after_seconds(None, now) is None


# -- the whole loop, real timers ------------------------------------------------------


async def _wait_for(condition: Callable[[], bool], within: float = 20.0) -> None:
    """Poll a real condition under a hard deadline (never a sleep standing in for it)."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_run_rides_out_an_outage_and_delivers_everything_once(tmp_path: Path, fake: FakeCollector) -> None:
    pusher = make_pusher(tmp_path, fake, replay_bytes_per_push="1KiB")
    # 50 ms, below the config's 1 s minimum (model_copy skips validation): the test compresses time
    pusher.settings = pusher.settings.model_copy(update={"push_interval": 0.05})
    stop = asyncio.Event()
    produced: list[CheckResult] = []

    def produce(n: int) -> None:
        for _ in range(n):
            produced.append(result(len(produced)))
            pusher.batch.add(produced[-1])

    runner = asyncio.create_task(pusher.run(stop))
    produce(5)
    await _wait_for(lambda: len(fake.all_stored()) == 5)
    fake.down = True
    for _ in range(30):  # the collector is down while results keep coming (pacing, not synchronisation)
        produce(3)
        await asyncio.sleep(0.02)
    await _wait_for(lambda: pusher.spool.stats.results >= 80)
    backlog, before = pusher.spool.stats.reports, len(fake.received)
    fake.down = False
    produce(1)
    await _wait_for(lambda: len(fake.all_stored()) == len(produced))
    stop.set()
    await asyncio.wait_for(runner, 10)
    assert stored_keys(fake.all_stored()) == stored_keys(produced)
    assert pusher.stats.failures["connect"] >= 1
    assert len(fake.received) - before < backlog  # the backlog went out coalesced, not batch by batch


async def test_stop_flushes_memory_to_the_spool(tmp_path: Path, fake: FakeCollector) -> None:
    fake.down = True
    pusher = make_pusher(tmp_path, fake)  # push_interval 1h: nothing is flushed by the timer
    stop = asyncio.Event()
    runner = asyncio.create_task(pusher.run(stop))
    for i in range(7):
        pusher.batch.add(result(i))
    stop.set()
    await asyncio.wait_for(runner, 10)
    reopened = Spool(pusher.spool.path, max_bytes=MiB, max_age=3600)
    assert [r.ts for r in reopened.pending_results()] == [1000.0 + i for i in range(7)]
    reopened.close()


# -- token, metrics, TLS, CLI ------------------------------------------------------


def test_token_source_rules(tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch) -> None:
    with pytest.raises(PushSetupError, match="token_file"):
        TokenSource(None, None)
    with pytest.raises(PushSetupError, match="cannot read"):
        TokenSource(tmp_path / "missing", None)
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(PushSetupError, match="is empty"):
        TokenSource(empty, None)
    loose = tmp_path / "loose"
    loose.write_text("abc\n")
    loose.chmod(0o644)
    caplog.set_level(logging.WARNING)
    source = TokenSource(loose, None)
    assert source.read() == "abc" and "chmod 600" in caplog.text and "abc" not in caplog.text
    loose.write_text("rotated\n")
    assert source.read() == "rotated"  # picked up without a restart
    monkeypatch.setenv("SITE_TOKEN", "from-env")
    assert TokenSource(None, "SITE_TOKEN").read() == "from-env"


def test_config_needs_exactly_one_token_source() -> None:
    text = "site: {id: a, province: b, commune: c}\ncollector:\n  url: https://c.example\n"
    with pytest.raises(ConfigError, match="agent.yaml:2 collector: set exactly one of token_file or token_env"):
        parse_model(AgentConfig, text, "agent.yaml")
    with pytest.raises(ConfigError, match="exactly one"):
        parse_model(AgentConfig, text + "  token_file: /t\n  token_env: T\n", "agent.yaml")


async def test_metrics_report_push_and_spool_state_without_the_token(tmp_path: Path, fake: FakeCollector) -> None:
    pusher = make_pusher(tmp_path, fake)
    registry = CollectorRegistry()
    registry.register(PushCollector(pusher))
    fake.script = [answer(422, json={"detail": "bad"})]
    async with pusher.client() as client:
        await spool_batch(pusher, [result(1), result(2)])
        await pusher.send_pending(client)  # rejected
        fake.down = True
        await spool_batch(pusher, [result(3)])
        await pusher.send_pending(client)  # connect failure
        fake.down = False
        await pusher.send_pending(client)  # acked
    value = registry.get_sample_value
    assert value("commune_agent_push_reports_sent_total") == 3
    assert value("commune_agent_push_reports_acked_total") == 1
    assert value("commune_agent_push_results_acked_total") == 1
    assert value("commune_agent_push_reports_rejected_total", {"status": "422"}) == 1
    assert value("commune_agent_push_failures_total", {"reason": "connect"}) == 1
    assert value("commune_agent_spool_dropped_results_total", {"reason": "rejected"}) == 2
    assert value("commune_agent_spool_quarantined_reports") == 1
    assert value("commune_agent_spool_reports") == 0 and value("commune_agent_spool_oldest_age_seconds") == 0
    assert value("commune_agent_push_duration_seconds_count") == 3
    assert value("commune_agent_push_clock_offset_seconds") == 0.25
    assert value("commune_agent_push_last_success_timestamp_seconds") > 0
    assert TOKEN not in generate_latest(registry).decode()


async def test_every_push_family_is_exposed_and_passes_promtool(tmp_path: Path, fake: FakeCollector) -> None:
    promtool = require_binary("promtool")
    pusher = make_pusher(tmp_path, fake)
    registry = CollectorRegistry()
    registry.register(PushCollector(pusher))
    fake.script = [answer(413, json={"detail": "too big"}), answer(503)]
    async with pusher.client() as client:
        for i in range(3):
            await spool_batch(pusher, [result(i)])
            await pusher.send_pending(client)
    pusher.spool.drops.add("age", 1, 1)
    exposition = generate_latest(registry)
    exposed = {line.split()[2].removesuffix("_total") for line in exposition.decode().splitlines()
               if line.startswith("# TYPE")}
    documented = {"commune_" + doc.name.removesuffix("_total") for doc in METRIC_DOCS}
    assert documented == exposed
    _promtool_clean(promtool, exposition)


def _promtool_clean(promtool: str, exposition: bytes) -> None:
    lint = subprocess.run([promtool, "check", "metrics"], input=exposition, capture_output=True, timeout=30)
    assert lint.returncode == 0 and not lint.stdout.strip() and not lint.stderr.strip(), lint.stdout + lint.stderr


def _make_ca_and_server_cert(tmp_path: Path) -> tuple[Path, Path, Path]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def cert(subject: str, key, issuer_name, issuer_key, ca: bool) -> x509.Certificate:
        builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(issuer_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, srv_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "commune test CA")])
    ca_cert = cert("commune test CA", ca_key, ca_name, ca_key, True)
    srv_cert = cert("127.0.0.1", srv_key, ca_name, ca_key, False)
    paths = tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key"
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(srv_cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(srv_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return paths


async def _serve(fake: FakeCollector, cert: Path, key: Path):
    """The fake behind a real uvicorn HTTPS server on a kernel-chosen loopback port."""
    app = FastAPI()

    @app.post("/api/v1/reports")
    async def reports(request: Request) -> Response:
        assert request.client is not None
        fake.peers.append((request.client.host, request.client.port))  # one source port per TCP connection
        reply = fake.answer({k.lower(): v for k, v in request.headers.items()}, await request.body())
        return Response(reply.content, reply.status_code, media_type="application/json")

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                          ssl_certfile=str(cert), ssl_keyfile=str(key), lifespan="off"))
    task = asyncio.create_task(server.serve())
    await _wait_for(lambda: server.started or task.done())
    return server, task, server.servers[0].sockets[0].getsockname()[1]


async def test_tls_with_a_private_ca_file(tmp_path: Path, fake: FakeCollector) -> None:
    ca, cert, key = _make_ca_and_server_cert(tmp_path)
    server, task, port = await _serve(fake, cert, key)
    try:
        url = f"https://127.0.0.1:{port}"
        trusting = make_pusher(tmp_path / "a", fake, url=url, ca_file=str(ca))
        async with trusting.client() as client:
            await spool_batch(trusting, [result(1)])
            assert await trusting.send_pending(client) is None
        assert fake.all_stored() == [result(1)]
        assert fake.received[0].headers["content-encoding"] == "gzip"

        stranger = make_pusher(tmp_path / "b", fake, url=url)  # system CAs do not know our CA
        async with stranger.client() as client:
            await spool_batch(stranger, [result(2)])
            outcome = await stranger.send_pending(client)
        assert outcome.kind == "retry" and outcome.reason == "connect" and "CERTIFICATE_VERIFY_FAILED" in outcome.detail
        assert stranger.spool.stats.results == 1 and len(fake.all_stored()) == 1
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def test_pushes_reuse_one_tls_connection_unless_keep_alive_is_0s(tmp_path: Path, fake: FakeCollector) -> None:
    """A push every 30 s over a new connection is a TCP and a TLS handshake each time: two round trips
    more on a slow backup link, and one handshake a push for the collector. Kept alive, three pushes
    arrive on one connection (one source port); with keep_alive 0s, on three."""
    ca, cert, key = _make_ca_and_server_cert(tmp_path)
    server, task, port = await _serve(fake, cert, key)
    try:
        url = f"https://127.0.0.1:{port}"
        for name, overrides, connections in (("kept", {}, 1), ("closing", {"keep_alive": "0s"}, 3)):
            fake.peers.clear()
            pusher = make_pusher(tmp_path / name, fake, url=url, ca_file=str(ca), **overrides)
            async with pusher.client() as client:
                for i in range(3):
                    await spool_batch(pusher, [result(i, check=name)])
                    assert await pusher.send_pending(client) is None
            assert len(fake.peers) == 3 and len(set(fake.peers)) == connections, (name, fake.peers)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
    # the defaults line up: a push interval < the agent's keep-alive < the collector's, so the agent closes first
    from commune_collector.settings import CollectorSettings as ServerSettings
    agent_side = settings(tmp_path / "defaults", push_interval="30s")
    assert agent_side.push_interval < agent_side.keep_alive < ServerSettings().keep_alive


def test_cli_run_exits_2_when_the_token_file_is_missing(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(f"""
site: {{id: site-a, province: ha-noi, commune: Ba Đình}}
agent: {{listen: "127.0.0.1:0", state_dir: {tmp_path / 'state'}}}
host: {{enabled: false}}
collector: {{url: "http://127.0.0.1:9", token_file: {tmp_path / 'nope'}}}
""")
    proc = subprocess.run([sys.executable, "-m", "commune_agent.cli", "run", "--config", str(config)], capture_output=True,
                          text=True, timeout=60, cwd=Path(__file__).resolve().parents[1],
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert proc.returncode == 2, proc.stderr
    assert f"collector.token_file {tmp_path / 'nope'}: cannot read" in proc.stderr
