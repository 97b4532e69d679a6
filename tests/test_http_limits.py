"""The collector's own HTTP limits, against a real ``commune-collector serve`` over raw sockets.

Header size (431 without reading a 64 MiB header whole: the server's peak RSS
stays put), header and body time-outs (a thousand idle half-requests neither
stop the collector answering nor keep their file descriptors once the
time-out has passed), the connection bound (503 and closed), and a client that
goes away mid-body (one log line, a counter, no traceback). The time-outs are
made short through the collector's settings, never waited out with a sleep:
every wait polls a condition under a bound.
"""

from __future__ import annotations

import os
import re
import select
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from commune_collector.httpguard import LINGER_SECONDS
from commune_collector.sites import Site
from commune_common.wire import encode_report
from testsupport.collector import CollectorPeer, make_report, self_signed_cert
from testsupport.peers._base import wait_until

SITE = Site("ha-noi-ba-dinh", "Trung tâm Phục vụ hành chính công Phường Ba Đình", "ha-noi", "Phường Ba Đình")
HEADER_LIMIT = 16 * 1024
TIMEOUT_S = 4.0  # header and body time-outs of this collector (production: 60 s)
MAX_CONNECTIONS = 1100
IDLE = 1000


@pytest.fixture(scope="module")
def collector() -> Iterator[CollectorPeer]:
    peer = CollectorPeer(sites=[SITE], settings={
        "http": {"max_header_bytes": f"{HEADER_LIMIT}B", "header_timeout": f"{TIMEOUT_S:g}s",
                 "body_timeout": f"{TIMEOUT_S:g}s", "max_connections": MAX_CONNECTIONS}})
    with peer:
        peer.token = peer.issue_token(SITE.id)  # type: ignore[attr-defined]
        yield peer


def _server_pid(collector: CollectorPeer) -> int:
    pid = collector._procs[0].pid
    assert pid is not None
    return pid


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _peak_rss_kib(pid: int) -> int:
    status = open(f"/proc/{pid}/status").read()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]


def _metric(collector: CollectorPeer, name: str) -> float:
    text = httpx.get(f"{collector.url}/metrics", timeout=10, headers=collector.headers).text
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def _connect(collector: CollectorPeer) -> socket.socket:
    return socket.create_connection((collector.host, collector.port), timeout=30)


def _read_response(sock: socket.socket, limit: float = 30.0) -> bytes:
    """Everything the server sends until it closes (bounded)."""
    sock.settimeout(limit)
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):  # a reset, or TLS closed without close_notify
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _settled_fds(pid: int, baseline: int) -> int | None:
    n = _fds(pid)
    return n if n <= baseline + 5 else None


def _report_request(collector: CollectorPeer, body: bytes, extra_headers: str = "") -> bytes:
    return (f"POST /api/v1/reports HTTP/1.1\r\nHost: {collector.host}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {collector.token}\r\nContent-Length: {len(body)}\r\n"  # type: ignore[attr-defined]
            f"{extra_headers}Connection: close\r\n\r\n").encode() + body


def test_a_64_mib_header_gets_431_without_being_read_whole(collector: CollectorPeer) -> None:
    pid = _server_pid(collector)
    peak_before = _peak_rss_kib(pid)
    refused_before = _metric(collector, 'commune_collector_http_refused_requests_total{reason="header_too_large"}')
    sock = _connect(collector)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
    chunk, sent, answer = b"a" * 65536, 0, b""
    sock.setblocking(False)
    while sent < 64 * 1024 * 1024 and not answer:
        try:
            sent += sock.send(chunk)
        except (BlockingIOError, BrokenPipeError, ConnectionResetError):
            pass
        readable, _, _ = select.select([sock], [], [], 0.01)
        if readable:
            answer = sock.recv(65536)
    sock.setblocking(True)
    answer += _read_response(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"application/problem+json" in answer
    assert b"exceed" in answer
    # a 64 MiB header read whole costs at least 64 MiB; refused after 16 KiB, the peak does not move
    assert _peak_rss_kib(pid) - peak_before < 16 * 1024, (peak_before, _peak_rss_kib(pid))
    assert _metric(collector, 'commune_collector_http_refused_requests_total{reason="header_too_large"}') \
        == refused_before + 1
    assert httpx.get(f"{collector.url}/healthz", timeout=10).status_code == 200


def test_headers_under_the_limit_and_a_large_body_in_one_write_are_served(collector: CollectorPeer) -> None:
    """The limit counts the header section only, even when a body larger than it arrives in the same read."""
    report = make_report(SITE.id, 1, n=400)
    body = encode_report(report)
    assert len(body) > 4 * HEADER_LIMIT
    request = _report_request(collector, body, extra_headers=f"X-Padding: {'p' * (HEADER_LIMIT // 2)}\r\n")
    sock = _connect(collector)
    sock.sendall(request)
    answer = _read_response(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]


def test_a_thousand_idle_half_requests_neither_block_nor_keep_their_descriptors(collector: CollectorPeer) -> None:
    pid = _server_pid(collector)
    baseline = wait_until(lambda: _fds(pid), timeout=5, what="the server's descriptors")
    timeouts_before = _metric(collector, 'commune_collector_http_refused_requests_total{reason="header_timeout"}')
    idle = []
    try:
        for n in range(IDLE):
            sock = _connect(collector)
            if n % 2:  # half of them send half a request; the others connect and say nothing
                sock.sendall(b"POST /api/v1/reports HTTP/1.1\r\nHost: x\r\nContent-Type: appl")
            idle.append(sock)
        wait_until(lambda: _fds(pid) >= baseline + IDLE, timeout=30, what="the server to hold the idle connections")
        # while they are all open, the collector answers, and takes a report
        assert httpx.get(f"{collector.url}/healthz", timeout=10).status_code == 200
        ack = httpx.post(f"{collector.url}/api/v1/reports", content=encode_report(make_report(SITE.id, 2)),
                         headers={"Authorization": f"Bearer {collector.token}",  # type: ignore[attr-defined]
                                  "Content-Type": "application/json"}, timeout=10)
        assert ack.status_code == 200, ack.text
        # after the header time-out, every one of them is closed by the server
        wait_until(lambda: _settled_fds(pid, baseline), timeout=TIMEOUT_S + 30, what="the idle connections to close")
        answers = [_read_response(sock, 10) for sock in idle[:20]]
    finally:
        for sock in idle:
            sock.close()
    assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers[1::2]), answers[1]  # half a request: 408
    assert all(a == b"" for a in answers[0::2]), answers[0]  # nothing sent: closed without an answer
    assert _metric(collector, 'commune_collector_http_refused_requests_total{reason="header_timeout"}') \
        >= timeouts_before + IDLE


def test_connections_beyond_the_bound_get_503_and_are_closed(collector: CollectorPeer) -> None:
    pid = _server_pid(collector)
    baseline = _fds(pid)
    held = []
    try:
        for _ in range(MAX_CONNECTIONS + 20):
            held.append(_connect(collector))
        refused = []
        for sock in held[-20:]:
            answer = _read_response(sock, 10)
            refused.append(answer)
        assert all(a.startswith(b"HTTP/1.1 503 ") and b"retry-after: 5" in a.lower() for a in refused), refused[0]
        # the refused ones hold no descriptor once their answer has lingered (LINGER_SECONDS), while we still do
        wait_until(lambda: _fds(pid) <= baseline + MAX_CONNECTIONS + 5, timeout=LINGER_SECONDS + 20,
                   what="the refused connections to be closed")
    finally:
        for sock in held:
            sock.close()
    wait_until(lambda: _settled_fds(pid, baseline), timeout=30, what="the connections to close")
    assert httpx.get(f"{collector.url}/healthz", timeout=10).status_code == 200


def test_a_body_that_stops_arriving_is_timed_out(collector: CollectorPeer) -> None:
    before = _metric(collector, 'commune_collector_http_refused_requests_total{reason="body_timeout"}')
    body = encode_report(make_report(SITE.id, 3))
    sock = _connect(collector)
    sock.sendall(_report_request(collector, body)[: -len(body) // 2])
    assert _read_response(sock, TIMEOUT_S + 30) == b""  # closed by the server, not by us
    sock.close()
    assert _metric(collector, 'commune_collector_http_refused_requests_total{reason="body_timeout"}') == before + 1


def test_a_client_gone_mid_body_is_one_log_line_and_a_counter(collector: CollectorPeer) -> None:
    before = _metric(collector, "commune_collector_client_disconnects_total")
    log_before = len(collector.log_text())
    body = encode_report(make_report(SITE.id, 4, n=50))
    sock = _connect(collector)
    sock.sendall(_report_request(collector, body)[: -len(body) // 2])
    sock.close()
    wait_until(lambda: _metric(collector, "commune_collector_client_disconnects_total") > before, timeout=30,
               what="the disconnect to be counted")
    assert _metric(collector, "commune_collector_client_disconnects_total") == before + 1
    new_log = collector.log_text()[log_before:]
    assert "Traceback" not in new_log and "ERROR" not in new_log, new_log
    assert len([line for line in new_log.splitlines() if "went away" in line]) == 1, new_log
    site = httpx.get(f"{collector.url}/api/v1/sites/{SITE.id}", timeout=10, headers=collector.headers).json()
    assert site["last_seq"] != 4  # nothing of it stored
    assert httpx.get(f"{collector.url}/healthz", timeout=10).status_code == 200


def test_the_limits_hold_over_tls(tmp_path: Path) -> None:
    """The collector serving HTTPS itself: the same 431 and 408 through the TLS layer."""
    cert, key = self_signed_cert(tmp_path)
    settings = {"tls": {"cert_file": str(cert), "key_file": str(key)},
                "http": {"max_header_bytes": f"{HEADER_LIMIT}B", "header_timeout": f"{TIMEOUT_S:g}s"}}
    context = ssl.create_default_context(cafile=str(cert))
    with CollectorPeer(sites=[SITE], settings=settings) as peer:
        with context.wrap_socket(_connect(peer), server_hostname=peer.host) as big:
            big.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (4 * HEADER_LIMIT))
            assert _read_response(big).startswith(b"HTTP/1.1 431 ")
        with context.wrap_socket(_connect(peer), server_hostname=peer.host) as half:
            half.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            assert _read_response(half, TIMEOUT_S + 30).startswith(b"HTTP/1.1 408 ")
        with httpx.Client(base_url=peer.url, verify=context, timeout=30) as client:
            assert client.get("/healthz").status_code == 200
