"""Accepted means durable: a 200 survives ``kill -9`` of the collector, and nothing is stored twice.

A real collector process takes reports from many concurrent senders (so
writes are group-committed), is killed with SIGKILL in the middle of the
stream, and restarted on the same data dir. Every report it acknowledged must
be there (a resend is answered ``duplicate``), and after the journal is folded
each stored report counts exactly once.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from commune_collector.sites import Site
from commune_collector.store.sqlite import SQLiteStore
from commune_common.wire import Report, encode_report
from testsupport.collector import CollectorPeer, make_report
from testsupport.peers._base import wait_until

pytestmark = pytest.mark.slow
SITE = Site("ha-noi-ba-dinh", "Trung tâm Phục vụ hành chính công Phường Ba Đình", "ha-noi", "Phường Ba Đình")
RESULTS_PER_REPORT = 10


def _send(client: httpx.Client, token: str, report: Report) -> bool | None:
    """True: acknowledged as new; False: acknowledged as duplicate; None: no acknowledgement."""
    try:
        response = client.post("/api/v1/reports", content=encode_report(report),
                               headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    return not response.json()["duplicate"]


def test_every_acknowledged_report_survives_kill_9_and_is_counted_once() -> None:
    with CollectorPeer(sites=[SITE], settings={"aggregator": {"interval": "1h"}}) as collector:
        token = collector.issue_token(SITE.id)
        reports = [make_report(SITE.id, seq, n=RESULTS_PER_REPORT) for seq in range(1, 3001)]
        acked: set[int] = set()
        lock = threading.Lock()
        killed = threading.Event()

        def sender(chunk: list[Report]) -> None:
            with collector.client(timeout=10) as client:
                for report in chunk:
                    if _send(client, token, report) is not None:
                        with lock:
                            acked.add(report.seq)
                    if killed.is_set():
                        return

        chunks = [reports[i::16] for i in range(16)]
        with ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(sender, c) for c in chunks]
            wait_until(lambda: len(acked) >= 400, timeout=120, what="400 acknowledged reports")
            collector.kill()
            killed.set()
            [f.result() for f in futures]
        assert 400 <= len(acked) < len(reports), "the kill must land in the middle of the stream"

        collector.restart()
        outcomes: dict[int, bool | None] = {}
        with collector.client() as client:
            for report in reports:
                outcomes[report.seq] = _send(client, token, report)
        assert all(outcomes[seq] is False for seq in acked), "an acknowledged report was lost by kill -9"
        assert all(outcome is not None for outcome in outcomes.values())
        collector._stop_processes()  # graceful SIGTERM: the aggregator folds the journal on the way out

        store = SQLiteStore(collector.data_dir / "collector.db")
        try:
            assert store.stats().journal_reports == 0
            rounds = sum(s.rounds for s in store.summaries(0, time.time() + 3600, [SITE.id]))
        finally:
            store.close()
        assert rounds == len(reports) * RESULTS_PER_REPORT  # every report exactly once
