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


def member(site: str, province: str, event: dict | None = EVENT) -> dict:
    """A commune's verdict: not completed, its outage explained by ``event`` (None: its own outage)."""
    return {"site": site, "province": province, "name": f"Xã {site}", "state": "not_completed",
            "outage_cause": "upstream" if event else "network", "upstream": event, "criteria": [], "regressions": []}


def regression(site: str, province: str, at: float = 1.0) -> dict:
    return {"site": site, "province": province, "kind": "regression", "at": at, "detail": "x"}


def test_a_regression_of_an_upstream_member_is_labelled_for_inhibition():
    book = AlertBook("http://collector:8470")
    fired = book.apply([regression("th-a", "thanh-hoa")], Views({"th-a": member("th-a", "thanh-hoa")}, [EVENT]), 2.0)
    assert {a.labels["alertname"]: (a.labels.get("cause"), a.labels.get("upstream")) for a in fired} == {
        "CommuneSiteRegressed": ("upstream", "province:thanh-hoa"),
        "CommuneUpstreamOutage": (None, "province:thanh-hoa"),
        "CommuneBehindUpstreamOutage": ("upstream", "province:thanh-hoa")}
    marker = next(a for a in fired if a.kind == "member")
    assert marker.labels["site"] == "th-a" and marker.labels["severity"] == "info"


def test_an_alert_raised_before_its_event_was_recognised_is_raised_again_with_the_event():
    """The first communes' losses reach the judge a pass before the rest: their alerts had no event yet."""
    book = AlertBook("http://collector:8470")
    early = book.apply([regression("th-a", "thanh-hoa")], Views({"th-a": member("th-a", "thanh-hoa", None)}, []), 2.0)
    assert [a.labels.get("upstream") for a in early] == [None]
    later = book.apply([], Views({"th-a": member("th-a", "thanh-hoa")}, [EVENT]), 3.0)
    regressions = sorted((a.labels.get("upstream") or "", a.ends_at) for a in later
                         if a.labels["alertname"] == "CommuneSiteRegressed")
    assert regressions == [("", 3.0), ("province:thanh-hoa", None)]  # the first copy resolved, the second held
    assert book.apply([], Views({"th-a": member("th-a", "thanh-hoa")}, [EVENT]), 4.0) == []


def test_markers_follow_the_event_members_and_resolve_with_it():
    book = AlertBook("http://collector:8470")
    views = Views({"th-a": member("th-a", "thanh-hoa"), "th-b": member("th-b", "thanh-hoa")}, [EVENT])
    assert sum(a.kind == "member" for a in book.apply([], views, 2.0)) == 2
    fewer = book.apply([], Views({"th-a": member("th-a", "thanh-hoa"), "th-b": member("th-b", "thanh-hoa", None)},
                                 [EVENT]), 3.0)
    assert [(a.labels["site"], a.ends_at) for a in fewer] == [("th-b", 3.0)]
    gone = book.apply([], Views({}, []), 4.0)
    assert sorted(a.labels["alertname"] for a in gone) == ["CommuneBehindUpstreamOutage", "CommuneUpstreamOutage"]
    assert not book.firing


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
        alert("CommuneSiteRegressed", "th-c", "critical", province="thanh-hoa", item="overall", cause="upstream",
              upstream="province:thanh-hoa"),
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


GROUP = {"key": "group:agg-router-7", "kind": "group", "name": "agg-router-7", "province": None,
         "started_at": 1_700_000_000.0, "sites": 2, "reporting": 2, "share": 1.0}


def test_a_group_spanning_provinces_holds_its_communes_alerts_in_each_province_and_no_others(alertmanager):
    """An aggregation router serving communes of two provinces: its event carries no province, yet it holds
    its communes' link and verdict alerts in both, and nothing of the provinces' other communes."""
    am, sink = alertmanager
    import time
    now = time.time()
    event = {**GROUP, "started_at": now - 60}
    book = AlertBook("http://collector:8470")
    views = Views({"th-g": member("th-g", "thanh-hoa", event), "na-g": member("na-g", "nghe-an", event)}, [event])
    sent = book.apply([regression("th-g", "thanh-hoa", now - 30), regression("na-g", "nghe-an", now - 30)],
                      views, now)
    assert [a.labels["alertname"] for a in sent] == ["CommuneUpstreamOutage", *["CommuneBehindUpstreamOutage"] * 2,
                                                     *["CommuneSiteRegressed"] * 2]  # inhibitors first
    # posted as the collector's notifier does: the outage's alerts in a POST ahead of the ones they hold
    am.post_alerts([a.payload(now, 300.0) for a in sent[:3]])
    wait_until(lambda: len(am.alerts()) == 3, timeout=30, what="the group's alerts to be held")
    am.post_alerts([a.payload(now, 300.0) for a in sent[3:]])
    wait_until(lambda: len(am.alerts()) == 5, timeout=30, what="the communes' alerts to be held")
    am.post_alerts([alert("CommuneLinkDown", site, "critical", province=province, link="fiber", item="network",
                          source="prometheus")
                    for site, province in (("th-g", "thanh-hoa"), ("na-g", "nghe-an"),
                                           ("th-x", "thanh-hoa"), ("na-x", "nghe-an"))])

    def status(name: str, site: str) -> dict:
        found = am.alerts(filters=[f'alertname="{name}"', f'site="{site}"'])
        assert len(found) == 1, found
        return found[0]["status"]

    held = [(n, s) for n in ("CommuneLinkDown", "CommuneSiteRegressed", "CommuneBehindUpstreamOutage")
            for s in ("th-g", "na-g")]
    wait_until(lambda: len(am.alerts()) == 9 and all(status(n, s)["inhibitedBy"] for n, s in held),
               timeout=30, what="the group's communes to be held in both provinces")
    assert status("CommuneLinkDown", "th-x")["state"] == "active"  # the group is not its provinces
    assert status("CommuneLinkDown", "na-x")["state"] == "active"
    wait_until(lambda: "CommuneUpstreamOutage" in sink.alerts_for("national-oncall-critical")
               and {"th-x", "na-x"} <= sink.alerts_for("national-oncall-critical").get("CommuneLinkDown", set()),
               timeout=30, what="the group alert and the other communes' alerts to be notified")
    notified = {(n, s) for r in list(sink.received) for n, sites in sink.alerts_for(r).items() for s in sites}
    assert not notified & set(held)
    assert "inhibit-only" not in sink.received


def test_the_notifier_posts_the_outage_ahead_of_the_alerts_it_holds():
    """Alertmanager flushes an alert whose startsAt is past group_wait at once: the inhibitor must be there."""
    import httpx

    from commune_collector.alerting import AlertingSettings, AlertmanagerNotifier

    settings = AlertingSettings(hold_down=False, alertmanager_url="http://am.test:9093")
    notifier = AlertmanagerNotifier(settings, clock=lambda: 2.0, transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    notifier([regression("th-a", "thanh-hoa")], Views({"th-a": member("th-a", "thanh-hoa")}, [EVENT]))
    batches = [[a["labels"]["alertname"] for a in notifier._queue.get_nowait()] for _ in range(notifier._queue.qsize())]
    assert batches == [["CommuneUpstreamOutage", "CommuneBehindUpstreamOutage"], ["CommuneSiteRegressed"]]
    assert [a["labels"]["alertname"] for a in notifier.resend_batch()] == [
        "CommuneUpstreamOutage", "CommuneBehindUpstreamOutage", "CommuneSiteRegressed"]
