"""The collector process on a real PostgreSQL: same API, and a database outage is a 503, not a loss.

While PostgreSQL is down the collector answers 503 with Retry-After (the agent
keeps the report spooled and retries) and /readyz says not ready; once it is
back, the same connections are re-opened and the retried reports are stored.
"""

from __future__ import annotations

import httpx
import pytest

from commune_collector.sites import Site
from commune_common.wire import encode_report
from testsupport.collector import CollectorPeer, make_report
from testsupport.peers._base import wait_until
from testsupport.peers.postgres import PostgresPeer

pytestmark = pytest.mark.slow
SITE = Site("ha-noi-ba-dinh", "Trung tâm Phục vụ hành chính công Phường Ba Đình", "ha-noi", "Phường Ba Đình")


def _post(client: httpx.Client, token: str, seq: int) -> httpx.Response:
    return client.post("/api/v1/reports", content=encode_report(make_report(SITE.id, seq, n=3)),
                       headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})


def test_a_database_outage_answers_503_and_recovers() -> None:
    with PostgresPeer() as pg, CollectorPeer(sites=[SITE], settings={"database": {"dsn": pg.dsn},
                                                                      "auth": {"cache_ttl": "0s"}}) as collector:
        token = collector.issue_token(SITE.id)
        with collector.client() as client:
            assert _post(client, token, 1).status_code == 200
            assert client.get(f"/api/v1/sites/{SITE.id}").json()["commune"] == "Phường Ba Đình"

            pg._stop_processes()  # the database goes away under a running collector
            down = _post(client, token, 2)
            assert down.status_code == 503 and down.headers["retry-after"] == "5", down.text
            assert client.get("/readyz").status_code == 503
            sites = client.get("/api/v1/sites")
            assert sites.status_code == 503 and sites.headers["content-type"] == "application/problem+json"

            pg._procs = []
            pg._launch()
            pg.wait_ready(pg._is_ready, what="postgres to come back")
            wait_until(lambda: _post(client, token, 2).status_code == 200, timeout=60, interval=0.5,
                       what="the collector to store again after the outage")
            assert _post(client, token, 2).json()["duplicate"] is True
            assert client.get("/readyz").status_code == 200
            assert client.get(f"/api/v1/sites/{SITE.id}").json()["last_seq"] == 2
        assert "s3cret" not in collector.log_text() and pg.password not in collector.log_text()
