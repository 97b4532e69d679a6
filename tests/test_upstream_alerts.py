"""An upstream outage raises one province alert, and the commune alerts it explains are inhibited.

The alert comes from the collector's alert book (what the judge listener
sends); the inhibition is the shipped Alertmanager config in a real
Alertmanager: the communes of the province behind the cut are held, a
commune cut on its own elsewhere still pages.
"""

from __future__ import annotations

import pytest

from commune_collector.alerting.rules import AlertBook
from tests.test_deploy_alertmanager import WebhookSink, alert, shipped_config_for_tests
from testsupport.peers._base import wait_until

EVENT = {"key": "province:thanh-hoa", "kind": "province", "name": "thanh-hoa", "province": "thanh-hoa",
         "started_at": 1_700_000_000.0, "sites": 40, "reporting": 120, "share": 0.333}


class Views(dict):
    """A judge snapshot as listeners see it: site -> verdict, plus this pass's upstream events."""

    def __init__(self, verdicts: dict, events: list[dict]):
        super().__init__(verdicts)
        self.upstream_events = events


def test_one_alert_per_upstream_event_fired_once_and_resolved():
    book = AlertBook("http://collector:8470")
    fired = book.apply([], Views({}, [EVENT]), 1_700_000_100.0)
    assert len(fired) == 1
    labels = fired[0].labels
    assert labels["alertname"] == "CommuneUpstreamOutage" and labels["province"] == "thanh-hoa"
    assert labels["upstream"] == "province:thanh-hoa" and "site" not in labels
    assert "40/120" in fired[0].annotations["description"]
    assert book.apply([], Views({}, [EVENT]), 1_700_000_130.0) == []  # still firing: nothing new to say
    assert len(book.firing) == 1
    resolved = book.apply([], Views({}, []), 1_700_000_160.0)
    assert len(resolved) == 1 and resolved[0].ends_at == 1_700_000_160.0 and not book.firing


def test_a_regression_of_an_upstream_member_is_labelled_for_inhibition():
    book = AlertBook("http://collector:8470")
    verdict = {"site": "th-a", "province": "thanh-hoa", "name": "Xã A", "state": "not_completed",
               "outage_cause": "upstream", "criteria": [], "regressions": []}
    change = {"site": "th-a", "province": "thanh-hoa", "kind": "regression", "at": 1.0, "detail": "x"}
    fired = book.apply([change], Views({"th-a": verdict}, [EVENT]), 2.0)
    assert {a.labels["alertname"]: a.labels.get("cause") for a in fired} == {
        "CommuneSiteRegressed": "upstream", "CommuneUpstreamOutage": None}


@pytest.fixture
def alertmanager():
    from testsupport.peers.alertmanager import AlertmanagerPeer
    sink = WebhookSink()
    peer = AlertmanagerPeer(shipped_config_for_tests(sink.url))
    try:
        peer.start()
        yield peer, sink
    finally:
        peer.stop()
        sink.close()


def test_upstream_alert_inhibits_the_province_communes_only(alertmanager):
    am, sink = alertmanager
    book = AlertBook("http://collector:8470")
    import time
    now = time.time()
    upstream = book.apply([], Views({}, [{**EVENT, "started_at": now - 60}]), now)
    am.post_alerts([a.payload(now, 300.0) for a in upstream])
    wait_until(lambda: len(am.alerts()) == 1, timeout=30, what="the upstream alert to be held")
    am.post_alerts([
        alert("CommuneLinkDown", "th-a", "critical", province="thanh-hoa", link="fiber", item="network",
              source="prometheus"),
        alert("CommuneSiteSilent", "th-b", "warning", province="thanh-hoa", item="reporting", source="prometheus"),
        alert("CommuneSiteRegressed", "th-c", "critical", province="thanh-hoa", item="overall", cause="upstream"),
        # not explained by the cut: another province's commune, and a power alert in the same province
        alert("CommuneLinkDown", "cm-cut", "critical", province="ca-mau", link="fiber", item="network",
              source="prometheus"),
        alert("CommuneOnBattery", "th-d", "warning", province="thanh-hoa", item="power", criterion="mains-power"),
    ])

    def status(name: str, site: str) -> dict:
        found = am.alerts(filters=[f'alertname="{name}"', f'site="{site}"'])
        assert len(found) == 1, found
        return found[0]["status"]

    wait_until(lambda: len(am.alerts()) == 6 and all(status(n, s)["inhibitedBy"] for n, s in (
        ("CommuneLinkDown", "th-a"), ("CommuneSiteSilent", "th-b"), ("CommuneSiteRegressed", "th-c"))),
        timeout=30, what="the communes behind the cut to be inhibited")
    assert status("CommuneLinkDown", "cm-cut")["state"] == "active"
    assert status("CommuneOnBattery", "th-d")["state"] == "active"
    wait_until(lambda: "CommuneUpstreamOutage" in sink.alerts_for("national-oncall-critical")
               and "CommuneLinkDown" in sink.alerts_for("national-oncall-critical"),
               timeout=30, what="the province alert and the unrelated commune alert to be notified")
    notified = {(n, s) for r in list(sink.received) for n, sites in sink.alerts_for(r).items() for s in sites}
    assert not notified & {("CommuneLinkDown", "th-a"), ("CommuneSiteSilent", "th-b"), ("CommuneSiteRegressed", "th-c")}
