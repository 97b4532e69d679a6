"""Forwarding raw samples to Prometheus remote_write, with their original timestamps.

The protobuf is hand-encoded, so it is checked twice: decoded here by an
independent wire-format reader, and accepted by a real Prometheus
(``--web.enable-remote-write-receiver``) that answers queries at the samples'
own times. A dead endpoint must never slow or fail ingest.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Iterator
from typing import Any

import cramjam
import httpx
import pytest

from commune_collector.remote_write import RemoteWriter, _varint, encode_write_request, series_of
from commune_collector.settings import RemoteWriteSettings
from commune_collector.sites import Site
from commune_common.wire import CheckResult, encode_report
from testsupport.collector import CollectorPeer, make_report
from testsupport.peers._base import free_tcp_port, wait_until
from testsupport.peers.prometheus import PrometheusPeer

SITE = Site("ha-noi-ba-dinh", "Trung tâm Phục vụ hành chính công Phường Ba Đình", "ha-noi", "Phường Ba Đình")


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _fields(data: bytes) -> Iterator[tuple[int, Any]]:
    """A generic protobuf wire-format reader: (field number, raw value)."""
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(data, pos)
        elif wire == 1:
            value, pos = struct.unpack("<d", data[pos:pos + 8])[0], pos + 8
        elif wire == 2:
            length, pos = _read_varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        else:
            raise AssertionError(f"unexpected wire type {wire}")
        yield number, value


def decode_write_request(data: bytes) -> list[tuple[dict[str, str], list[tuple[int, float]]]]:
    out = []
    for number, series in _fields(data):
        assert number == 1
        labels: dict[str, str] = {}
        samples: list[tuple[int, float]] = []
        for field, value in _fields(series):
            if field == 1:
                pair = dict(_fields(value))
                labels[pair[1].decode()] = pair[2].decode()
            else:
                sample = dict(_fields(value))
                samples.append((sample[2], sample[1]))
        out.append((labels, samples))
    return out


def test_varints_match_the_protobuf_spec() -> None:
    assert _varint(0) == b"\x00" and _varint(150) == b"\x96\x01" and _varint(300) == b"\xac\x02"  # the spec's
    assert _read_varint(_varint(1_700_000_000_123), 0) == (1_700_000_000_123, 6)
    assert len(_varint(-1)) == 10  # int64 two's complement


def test_write_request_round_trips_through_an_independent_reader() -> None:
    results = [CheckResult("link/fiber/icmp/dc", "icmp", 1_700_000_000.25, True, 0.05,
                           labels={"link": "fiber", "target": "dc"},
                           values={'icmp_rtt_seconds{stat="avg"}': 0.012, "icmp_loss_ratio": 0.0}),
               CheckResult("link/fiber/icmp/dc", "icmp", 1_700_000_030.25, False, 0.05, reason="timeout",
                           labels={"link": "fiber", "target": "dc"})]
    series: dict[Any, list[tuple[int, float]]] = {}
    for labels, ts, value in series_of("ha-noi-ba-dinh", results, shift_s=2.0):
        series.setdefault(labels, []).append((ts, value))
    decoded = {tuple(sorted(labels.items())): samples for labels, samples in
               decode_write_request(encode_write_request(series))}
    success = (("__name__", "commune_probe_success"), ("check", "link/fiber/icmp/dc"), ("link", "fiber"),
               ("probe", "icmp"), ("site", "ha-noi-ba-dinh"), ("target", "dc"))
    assert decoded[success] == [(1_700_000_002_250, 1.0), (1_700_000_032_250, 0.0)]  # corrected, in time order
    rtt = tuple(sorted({*success[1:], ("__name__", "commune_icmp_rtt_seconds"), ("stat", "avg")}))
    assert decoded[rtt] == [(1_700_000_002_250, 0.012)]
    assert len(decoded) == 4  # success, duration, rtt, loss


def test_a_full_queue_drops_and_counts_instead_of_blocking() -> None:
    writer = RemoteWriter(RemoteWriteSettings(url="http://127.0.0.1:9/api/v1/write", queue_max_samples=20))
    results = make_report(SITE.id, 1, n=2).results  # 2 results x (2 + 3 values) = 10 samples
    assert writer.offer(SITE.id, results, 0.0) and writer.offer(SITE.id, results, 0.0)
    assert writer.offer(SITE.id, results, 0.0) is False
    assert writer.stats.queued == 20 and writer.stats.dropped_full == 10


def test_samples_reach_a_real_prometheus_at_their_original_times() -> None:
    with PrometheusPeer(remote_write_receiver=True) as prom, \
            CollectorPeer(sites=[SITE], settings={"remote_write": {"url": prom.remote_write_url,
                                                                   "batch_samples": 50}}) as collector:
        token = collector.issue_token(SITE.id)
        now = time.time()
        times = [now - 240, now - 180, now - 120]
        with collector.client() as client:
            for seq, ts in enumerate(times, start=1):
                body = encode_report(make_report(SITE.id, seq, n=3, ts=ts, ok=seq != 2))
                response = client.post("/api/v1/reports", content=body, headers={
                    "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
                assert response.status_code == 200
        selector = f'commune_probe_success{{site="{SITE.id}",check="link/fiber/icmp/t1"}}'
        for seq, ts in enumerate(times, start=1):
            result = wait_until(lambda t=ts: prom.api("query", query=f"timestamp({selector})", time=f"{t + 1:.3f}")
                                ["result"], timeout=30, what="the sample in Prometheus")
            # stored at its own time: moved only by the measured clock offset, i.e. the request's transit time
            assert float(result[0]["value"][1]) == pytest.approx(ts, abs=0.25)
            value = prom.api("query", query=selector, time=f"{ts + 1:.3f}")["result"][0]["value"][1]
            assert float(value) == (0.0 if seq == 2 else 1.0)
        rtt = prom.api("query", query=f'commune_icmp_rtt_seconds{{site="{SITE.id}",stat="avg",target="t2"}}',
                       time=f"{times[0] + 1:.3f}")["result"]
        assert float(rtt[0]["value"][1]) == pytest.approx(0.012)
        assert rtt[0]["metric"]["link"] == "fiber" and rtt[0]["metric"]["probe"] == "icmp"
        sent = 'commune_collector_remote_write_samples_total{outcome="sent"} 45.0'  # 3 reports x 3 results x 5
        wait_until(lambda: sent in httpx.get(f"{collector.url}/metrics", headers=collector.headers).text, timeout=30,
                   what="the sent samples to be counted (the count follows Prometheus' answer)")


def test_a_refused_report_does_not_take_the_rest_of_its_batch_down() -> None:
    """Prometheus (no out-of-order window) refuses a whole WriteRequest for one sample older than its
    series' head, rolling back every other sample. One site's spooled backlog batched with other sites'
    fresh reports must not cost them: the writer halves the refused batch until the old report stands
    alone, and only that one is counted rejected."""
    others = [Site(f"hue-{i}", f"Xã {i}", "hue", f"Xã {i}") for i in range(5)]

    async def scenario(prom: PrometheusPeer) -> RemoteWriter:
        writer = RemoteWriter(RemoteWriteSettings(url=prom.remote_write_url, batch_samples=10_000, max_retries=0))
        stop = asyncio.Event()
        now = time.time()
        async with httpx.AsyncClient(timeout=10) as client:
            writer.offer(SITE.id, make_report(SITE.id, 1, n=2, ts=now - 60).results, 0.0)
            await writer._send_one(client, stop)  # the site's series now start at now - 60
            assert writer.stats.sent == 10
            writer.offer(others[0].id, make_report(others[0].id, 1, n=2, ts=now - 30).results, 0.0)
            writer.offer(SITE.id, make_report(SITE.id, 2, n=2, ts=now - 1800).results, 0.0)  # backlog: older
            for site in others[1:]:
                writer.offer(site.id, make_report(site.id, 1, n=2, ts=now - 30).results, 0.0)
            await writer._send_one(client, stop)  # one batch of six reports
        return writer

    with PrometheusPeer(remote_write_receiver=True) as prom:
        writer = asyncio.run(scenario(prom))
        assert (writer.stats.sent, writer.stats.rejected, writer.stats.failed) == (60, 10, 0)
        assert writer.stats.splits >= 1, "the six-report batch was refused, then halved"
        stored = {r["metric"]["site"] for r in prom.api("query", query='commune_probe_success{site=~"hue-.*"}',
                                                         time=f"{time.time():.3f}")["result"]}
        assert stored == {site.id for site in others}


def test_a_dead_endpoint_costs_ingest_nothing() -> None:
    dead = f"http://127.0.0.1:{free_tcp_port()}/api/v1/write"
    with CollectorPeer(sites=[SITE], settings={"remote_write": {"url": dead, "max_retries": 1,
                                                                "timeout": "2s"}}) as collector:
        token = collector.issue_token(SITE.id)
        with collector.client() as client:
            for seq in range(1, 21):
                response = client.post("/api/v1/reports", content=encode_report(make_report(SITE.id, seq, n=3)),
                                       headers={"Authorization": f"Bearer {token}",
                                                "Content-Type": "application/json"})
                assert response.status_code == 200
        def failed() -> float:
            for line in httpx.get(f"{collector.url}/metrics", headers=collector.headers).text.splitlines():
                if line.startswith('commune_collector_remote_write_samples_total{outcome="failed"}'):
                    return float(line.split()[1])
            return 0.0
        wait_until(lambda: failed() > 0, timeout=30, what="the failed sends to be counted")


def test_snappy_block_format_is_what_prometheus_reads() -> None:
    data = encode_write_request({(("__name__", "x"),): [(1, 1.0)]})
    assert bytes(cramjam.snappy.decompress_raw(bytes(cramjam.snappy.compress_raw(data)))) == data
