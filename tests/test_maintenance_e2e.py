"""A declared window, end to end: a real collector, the shipped Alertmanager config in a real Alertmanager.

Declared through the API, the window becomes a silence at once; the commune's
alerts are held while another commune's still page; its verdict says why;
cancelled, the silence ends and the commune's alerts page again.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from commune_collector.sites import Site
from tests.test_deploy_alertmanager import WebhookSink, alert, shipped_config_for_tests
from testsupport.collector import CollectorPeer
from testsupport.peers._base import wait_until
from testsupport.peers.alertmanager import AlertmanagerPeer

ICT = timezone(timedelta(hours=7))
SITES = [Site("ha-noi-dong-anh", "Trung tâm Phục vụ hành chính công Xã Đông Anh", "ha-noi", "Xã Đông Anh"),
         Site("ha-noi-soc-son", "Trung tâm Phục vụ hành chính công Xã Sóc Sơn", "ha-noi", "Xã Sóc Sơn")]


@pytest.fixture
def center() -> Iterator[tuple[CollectorPeer, AlertmanagerPeer, WebhookSink]]:
    sink = WebhookSink()
    am = AlertmanagerPeer(shipped_config_for_tests(sink.url))
    collector = None
    try:
        am.start()
        collector = CollectorPeer(settings={"alerting": {"alertmanager_url": am.url}, "judge": {"interval": "1s"},
                                            "aggregator": {"interval": "1h"}}, sites=SITES)
        collector.start()
        yield collector, am, sink
    finally:
        if collector is not None:
            collector.stop()
        am.stop()
        sink.close()


def ours(am: AlertmanagerPeer) -> list[dict[str, Any]]:
    silences = httpx.get(f"{am.url}/api/v2/silences", timeout=5).json()
    return [s for s in silences if s["createdBy"] == "commune-collector" and s["status"]["state"] != "expired"]


def state_of(am: AlertmanagerPeer, site: str) -> str | None:
    found = am.alerts(filters=[f'site="{site}"'])
    return found[0]["status"]["state"] if found else None


def notified(sink: WebhookSink) -> set[str]:
    return {a["labels"].get("site", "") for payloads in sink.received.values() for p in payloads
            for a in p["alerts"] if a["status"] == "firing"}


def test_a_declared_window_silences_the_commune_and_shows_on_its_verdict(center) -> None:
    collector, am, sink = center
    now = datetime.now(ICT)
    with collector.client() as client:
        response = client.post("/api/v1/maintenance", json={
            "covers": {"kind": "sites", "sites": ["ha-noi-dong-anh"]}, "starts_at": (now - timedelta(minutes=5)).isoformat(),
            "ends_at": (now + timedelta(hours=2)).isoformat(), "reason": "EVN cắt điện theo lịch"})
        assert response.status_code == 201, response.text
        window = response.json()
        silence = wait_until(lambda: ours(am) or None, timeout=30, what="the window's silence")[0]
        assert window["id"] in silence["comment"] and "EVN cắt điện theo lịch" in silence["comment"]
        assert silence["matchers"][0]["name"] == "site" and silence["matchers"][0]["isRegex"]
        ends = datetime.fromisoformat(silence["endsAt"].replace("Z", "+00:00")).timestamp()
        assert abs(ends - window["ends_at"]) < 0.01, "silenced for exactly the window"

        am.post_alerts([alert("CommuneLinkDown", site.id, "critical", province="ha-noi", link="fiber",
                              item="network", source="prometheus") for site in SITES])
        wait_until(lambda: "ha-noi-soc-son" in notified(sink), timeout=30, what="the other commune to page")
        assert state_of(am, "ha-noi-dong-anh") == "suppressed"
        assert "ha-noi-dong-anh" not in notified(sink)

        verdict = wait_until(lambda: (client.get("/api/v1/verdicts/ha-noi-dong-anh").json()
                                      .get("maintenance") or None), timeout=30, what="the verdict to say why")
        assert verdict["window"] == window["id"] and verdict["reason"] == "EVN cắt điện theo lịch"
        assert client.get("/api/v1/verdicts/ha-noi-soc-son").json()["maintenance"] is None
        page = client.get("/s/ha-noi-dong-anh").text
        assert "Bảo trì: EVN cắt điện theo lịch" in page and "UTC+7" in page
        province = client.get("/p/ha-noi").text
        assert province.count('data-testid="maintenance-badge"') == 1

        assert client.post(f"/api/v1/maintenance/{window['id']}/cancel", json={}).status_code == 200
        wait_until(lambda: not ours(am), timeout=30, what="the silence to end with the window")
        assert state_of(am, "ha-noi-dong-anh") == "active"
        metrics = client.get("/metrics").text
        assert "commune_collector_maintenance_silences 0.0" in metrics
