"""Alerts on verdict changes: the mapping (units) and a real Alertmanager (integration).

The units feed the alert book the judge's listener input (``VerdictChange``
events and a snapshot of SiteVerdict dicts, as in the verdict API contract)
and check which alerts fire and resolve with which labels. The integration
test starts a real Alertmanager, fires an alert through the notifier's own
sender thread, reads it back through Alertmanager's v2 API and resolves it.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

import httpx
import pytest
from prometheus_client import CollectorRegistry

from commune_collector.alerting import AlertingSettings, AlertmanagerNotifier, build_notifier
from commune_collector.alerting.alertmanager import redact_url
from commune_collector.alerting.rules import AlertBook, iso
from commune_common.yamlconf import ConfigError, parse_model

T0 = 1_750_000_000.0
EXTERNAL = "http://status.example.test"


@dataclass
class Change:
    """The judge's VerdictChange, as the contract names its fields."""

    site: str
    province: str
    kind: str
    criterion: str | None = None
    detail: str = ""
    at: float = T0


def criterion(cid: str, item: str, met: bool | None, *, value: float | None = 0.0,
              reason: str = "", threshold: float = 0.99, op: str = ">=", unit: str = "ratio") -> dict:
    return {"id": cid, "item": item, "title": cid, "required": True, "met": met, "value": value,
            "threshold": threshold, "op": op, "unit": unit, "expr": "...", "window_s": 86400.0,
            "evidence_ts": T0 - 30, "coverage": 1.0, "reason": reason, "checks": [f"check/{cid}"]}


def verdict(site: str, state: str, criteria: list[dict], *, regressions: list[dict] | None = None,
            since: float = T0, province: str = "ha-noi") -> dict:
    return {"site": site, "name": f"Xã {site}", "province": province, "commune": site, "state": state,
            "since": since, "candidate_since": None, "evaluated_at": T0, "stable_period_s": 3600.0,
            "connectivity": "primary", "outage_cause": None, "items": {}, "criteria": criteria,
            "regressions": regressions or []}


LOSS_BAD = criterion("network.loss", "network", False, value=0.123, threshold=0.01, op="<",
                     reason="loss 12.3% over 24h, threshold < 1%")
LOSS_OK = criterion("network.loss", "network", True, value=0.001, threshold=0.01, op="<",
                    reason="loss 0.1% over 24h, threshold < 1%")
REGRESSION = {"at": T0, "from": "completed", "to": "not_completed", "cause": ["network.loss"],
              "detail": "network.loss failed"}


# -- the mapping --------------------------------------------------------------


def test_regression_fires_with_routing_labels_and_evidence():
    book = AlertBook(EXTERNAL)
    snapshot = [verdict("hn-001", "not_completed", [LOSS_BAD], regressions=[REGRESSION])]
    changed = book.apply([Change("hn-001", "ha-noi", "regression", detail="completed -> not_completed")],
                         snapshot, T0)
    assert len(changed) == 1
    alert = changed[0]
    assert alert.labels == {"alertname": "CommuneSiteRegressed", "service": "commune-monitor",
                            "site": "hn-001", "province": "ha-noi", "severity": "critical",
                            "item": "overall"}
    payload = alert.payload(T0, 240)
    assert payload["endsAt"] == "2025-06-15T15:10:40.000Z"  # firing: held 240 s past now
    assert payload["generatorURL"] == f"{EXTERNAL}/s/hn-001"
    ann = payload["annotations"]
    assert "Xã hn-001" in ann["summary"] and "ha-noi" in ann["summary"]
    assert "loss 12.3% over 24h, threshold < 1%" in ann["description"]
    assert "value 12.3% | threshold < 1% | window 1d | evidence at 2025-06-15T15:06:10.000Z" in ann["description"]
    assert ann["runbook_url"] == f"{EXTERNAL}/help/alerts#CommuneSiteRegressed"


def test_regression_resolves_when_the_snapshot_shows_completed_again():
    book = AlertBook(EXTERNAL)
    book.apply([Change("hn-001", "ha-noi", "regression")],
               [verdict("hn-001", "not_completed", [LOSS_BAD], regressions=[REGRESSION])], T0)
    # the site stays not completed for a while: nothing changes, the alert keeps firing
    assert book.apply([], [verdict("hn-001", "not_completed", [LOSS_BAD], regressions=[REGRESSION])],
                      T0 + 60) == []
    assert len(book.firing) == 1
    changed = book.apply([], [verdict("hn-001", "completed", [LOSS_OK], regressions=[REGRESSION])], T0 + 120)
    assert [a.ends_at for a in changed] == [T0 + 120]
    assert changed[0].payload(T0 + 120, 240)["endsAt"] == "2025-06-15T15:08:40.000Z"
    assert book.firing == {}


def test_each_kind_maps_to_its_alert_and_clearing_event():
    snapshot = [verdict("s1", "not_completed", [
        criterion("power.mains", "power", False, reason="on battery since 10:00", unit="bool"),
        criterion("devices.up", "devices", False, reason="router down"),
        criterion("reporting.fresh", "reporting", None, reason="last report 2h ago")])]
    book = AlertBook(EXTERNAL)
    fired = book.apply([Change("s1", "ha-noi", "on_battery", "power.mains"),
                        Change("s1", "ha-noi", "device_down", "devices.up"),
                        Change("s1", "ha-noi", "site_silent", "reporting.fresh")], snapshot, T0)
    by_name = {a.labels["alertname"]: a.labels for a in fired}
    assert by_name["CommuneOnBattery"]["item"] == "power"
    assert by_name["CommuneOnBattery"]["criterion"] == "power.mains"
    assert by_name["CommuneOnBattery"]["severity"] == "warning"
    assert by_name["CommuneDeviceDown"]["item"] == "devices"
    assert by_name["CommuneSiteSilent"]["item"] == "reporting"
    resolved = book.apply([Change("s1", "ha-noi", "on_mains", "power.mains"),
                           Change("s1", "ha-noi", "device_up", "devices.up"),
                           Change("s1", "ha-noi", "site_reporting", "reporting.fresh")], snapshot, T0 + 60)
    assert sorted(a.labels["alertname"] for a in resolved) == [
        "CommuneDeviceDown", "CommuneOnBattery", "CommuneSiteSilent"]
    assert all(a.ends_at == T0 + 60 for a in resolved)
    assert book.firing == {}


def test_a_missed_clearing_event_is_made_good_by_the_snapshot():
    book = AlertBook(EXTERNAL)
    bad = criterion("power.mains", "power", False, unit="bool")
    book.apply([Change("s1", "ha-noi", "on_battery", "power.mains")], [verdict("s1", "not_completed", [bad])], T0)
    good = criterion("power.mains", "power", True, unit="bool")
    resolved = book.apply([], [verdict("s1", "completed", [good])], T0 + 30)
    assert [a.labels["alertname"] for a in resolved] == ["CommuneOnBattery"]


def test_unknown_criterion_keeps_the_alert_firing():
    """Unknown is not 'cleared': a site gone silent while on battery stays on battery."""
    book = AlertBook(EXTERNAL)
    book.apply([Change("s1", "ha-noi", "on_battery", "power.mains")],
               [verdict("s1", "not_completed", [criterion("power.mains", "power", False)])], T0)
    assert book.apply([], [verdict("s1", "unknown", [criterion("power.mains", "power", None)])], T0 + 30) == []
    assert len(book.firing) == 1


def test_a_site_removed_from_the_inventory_resolves_its_alerts():
    book = AlertBook(EXTERNAL)
    book.apply([Change("s1", "ha-noi", "device_down", "devices.up")],
               [verdict("s1", "not_completed", [criterion("devices.up", "devices", False)])], T0)
    resolved = book.apply([], [], T0 + 30)
    assert [a.labels["site"] for a in resolved] == ["s1"]


def test_a_repeated_event_does_not_fire_twice():
    book = AlertBook(EXTERNAL)
    snap = [verdict("s1", "not_completed", [criterion("devices.up", "devices", False)])]
    assert len(book.apply([Change("s1", "ha-noi", "device_down", "devices.up")], snap, T0)) == 1
    assert book.apply([Change("s1", "ha-noi", "device_down", "devices.up")], snap, T0 + 30) == []
    assert len(book.firing) == 1


def test_a_restart_re_fires_regressions_from_the_snapshot_alone():
    book = AlertBook(EXTERNAL)
    regressed = verdict("s1", "not_completed", [LOSS_BAD], regressions=[REGRESSION], since=T0)
    older = {**REGRESSION, "at": T0 - 86400}
    never_completed = verdict("s2", "not_completed", [LOSS_BAD])
    recovered_then_failed_again_later = verdict("s3", "not_completed", [LOSS_BAD], regressions=[older])
    fired = book.apply([], [regressed, never_completed, recovered_then_failed_again_later], T0 + 5)
    assert [a.labels["site"] for a in fired] == ["s1"]
    assert fired[0].starts_at == T0
    assert book.apply([], [regressed], T0 + 10) == []  # seeding happens once


def test_evidence_is_refreshed_on_every_pass():
    book = AlertBook(EXTERNAL)
    book.apply([Change("s1", "ha-noi", "regression")],
               [verdict("s1", "not_completed", [LOSS_BAD], regressions=[REGRESSION])], T0)
    worse = criterion("network.loss", "network", False, value=0.4, threshold=0.01, op="<",
                      reason="loss 40% over 24h, threshold < 1%")
    book.apply([], [verdict("s1", "not_completed", [worse], regressions=[REGRESSION])], T0 + 60)
    (alert,) = book.firing.values()
    assert "loss 40% over 24h" in alert.annotations["description"]


def test_judge_objects_are_read_as_well_as_dicts():
    """The snapshot may be the judge's own model objects rather than dicts."""
    from pydantic import BaseModel

    class Verdict(BaseModel):
        site: str
        province: str
        name: str
        state: str
        since: float
        criteria: list[dict]
        regressions: list[dict]

    book = AlertBook(EXTERNAL)
    snapshot = {"s1": Verdict(site="s1", province="hue", name="Phường A", state="not_completed", since=T0,
                              criteria=[criterion("devices.up", "devices", False, reason="switch down")],
                              regressions=[])}
    (alert,) = book.apply([Change("s1", "hue", "device_down", "devices.up")], snapshot, T0)
    assert alert.labels["province"] == "hue"
    assert "switch down" in alert.annotations["description"]


# -- settings -------------------------------------------------------------------


def test_settings_defaults_mean_alerting_off():
    settings = AlertingSettings()
    assert not settings.enabled
    assert build_notifier(settings) is None
    assert build_notifier(None) is None


def test_settings_errors_name_the_line_and_field():
    with pytest.raises(ConfigError) as err:
        parse_model(AlertingSettings, "alertmanager_url: 127.0.0.1:9093\nresend_interval: 5x\n", "c.yaml")
    text = str(err.value)
    assert "c.yaml:1 alertmanager_url: '127.0.0.1:9093' must start with http:// or https://" in text
    assert "c.yaml:2 resend_interval: '5x' is not a duration" in text
    with pytest.raises(ConfigError, match="c.yaml:1 resend: unknown key"):
        parse_model(AlertingSettings, "resend: 1m\n", "c.yaml")


def test_basic_auth_credentials_never_reach_the_logs():
    assert redact_url("http://am:s3cret@127.0.0.1:9093/api/v2/alerts") == "http://127.0.0.1:9093/api/v2/alerts"
    assert redact_url("http://127.0.0.1:9093/x") == "http://127.0.0.1:9093/x"


# -- the sender (unit: httpx MockTransport, a fake clock) ----------------------


class FakeAlertmanager:
    """Records POSTed batches; fails the first ``failures`` requests."""

    def __init__(self, failures: int = 0):
        self.failures = failures
        self.batches: list[list[dict]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v2/alerts"
        if self.failures:
            self.failures -= 1
            return httpx.Response(503, text="busy")
        self.batches.append(json.loads(request.content))
        return httpx.Response(200)


def notifier_with(fake: FakeAlertmanager, **overrides) -> AlertmanagerNotifier:
    settings = AlertingSettings(hold_down=False, alertmanager_url="http://am.test:9093", external_url=EXTERNAL, **overrides)
    return AlertmanagerNotifier(settings, clock=lambda: T0, transport=httpx.MockTransport(fake))


def test_sender_retries_then_delivers_and_counts():
    fake = FakeAlertmanager(failures=2)
    notifier = notifier_with(fake, max_attempts=3)
    notifier._stop.wait = lambda _timeout: False  # no real backoff sleeping in a unit test
    notifier([Change("s1", "ha-noi", "regression")],
             [verdict("s1", "not_completed", [LOSS_BAD], regressions=[REGRESSION])])
    with httpx.Client(transport=httpx.MockTransport(fake)) as client:
        assert notifier.deliver(client, notifier._queue.get_nowait())
    assert [b[0]["labels"]["alertname"] for b in fake.batches] == ["CommuneSiteRegressed"]
    assert notifier.stats["posts_failed"] == 2 and notifier.stats["posts_ok"] == 1
    registry = CollectorRegistry()
    registry.register(notifier.collector())
    assert registry.get_sample_value("commune_alertmanager_posts_total", {"result": "failure"}) == 2
    assert registry.get_sample_value("commune_alerts_firing", {"alertname": "CommuneSiteRegressed"}) == 1
    assert registry.get_sample_value("commune_alertmanager_alerts_sent_total") == 1


def test_sender_gives_up_after_max_attempts_and_counts_the_drop():
    fake = FakeAlertmanager(failures=10)
    notifier = notifier_with(fake, max_attempts=2)
    notifier._stop.wait = lambda _timeout: False
    with httpx.Client(transport=httpx.MockTransport(fake)) as client:
        assert not notifier.deliver(client, [{"labels": {"alertname": "x"}}])
    assert notifier.stats["dropped_alerts"] == 1 and notifier.stats["posts_failed"] == 2


def test_a_full_queue_drops_the_oldest_batch_and_never_blocks_the_judge():
    notifier = notifier_with(FakeAlertmanager(), queue_size=2)  # not started: nothing drains
    snapshot = [verdict(f"s{n}", "not_completed", [criterion("devices.up", "devices", False)]) for n in range(5)]
    for n in range(5):
        notifier([Change(f"s{n}", "ha-noi", "device_down", "devices.up")], snapshot)
    assert notifier._queue.qsize() == 2
    assert notifier.stats["dropped_alerts"] == 3
    newest = [notifier._queue.get_nowait()[0]["labels"]["site"] for _ in range(2)]
    assert newest == ["s3", "s4"]


def test_resend_batch_carries_every_firing_alert_with_a_fresh_end():
    times = iter([T0, T0 + 600])
    settings = AlertingSettings(hold_down=False, alertmanager_url="http://am.test:9093", resend_interval="1m")
    notifier = AlertmanagerNotifier(settings, clock=lambda: next(times))
    notifier([Change("s1", "ha-noi", "regression")],
             [verdict("s1", "not_completed", [LOSS_BAD], regressions=[REGRESSION])])
    (entry,) = notifier.resend_batch()
    assert entry["startsAt"] == "2025-06-15T15:06:40.000Z"
    assert entry["endsAt"] == "2025-06-15T15:20:40.000Z"  # T0 + 600 + 4 x 60 s


def test_a_broken_snapshot_is_counted_not_raised():
    notifier = notifier_with(FakeAlertmanager())
    notifier([Change("s1", "ha-noi", "regression", at="yesterday")], [])  # type: ignore[arg-type]
    assert notifier.stats["listener_errors"] == 1


# -- fed by the real judge (in process, synthetic evidence) -------------------


def drain(notifier: AlertmanagerNotifier, fake: FakeAlertmanager) -> None:
    with httpx.Client(transport=httpx.MockTransport(fake)) as client:
        while not notifier._queue.empty():
            notifier.deliver(client, notifier._queue.get_nowait())


def test_real_judge_passes_fire_and_resolve_alerts():
    from testsupport.web.judge_scenario import H, Scenario

    scenario = Scenario()
    fake = FakeAlertmanager()
    notifier = AlertmanagerNotifier(AlertingSettings(hold_down=False, alertmanager_url="http://am.test:9093"),
                                    clock=lambda: scenario.now, transport=httpx.MockTransport(fake))
    scenario.judge.add_listener(notifier)
    scenario.settle()
    drain(notifier, fake)
    (battery,) = [a for a in notifier.book.firing.values() if a.labels["alertname"] == "CommuneOnBattery"]
    assert battery.labels["site"] == "hue-battery" and battery.labels["criterion"] == "mains-power"
    assert battery.labels["item"] == "power" and battery.labels["province"] == "hue"
    assert "on battery yes, expected no" in battery.annotations["description"]
    assert battery.annotations["what_vi"].startswith("Đang dùng điện lưới: giá trị có, cần không")

    scenario.break_site("hn-ok-1")
    scenario.advance(3 * H)
    drain(notifier, fake)
    (regressed,) = [a for a in notifier.book.firing.values() if a.labels["alertname"] == "CommuneSiteRegressed"]
    assert regressed.labels["site"] == "hn-ok-1" and regressed.labels["severity"] == "critical"
    assert "primary-loss" in regressed.annotations["description"]

    scenario.heal_site("hn-ok-1")
    for _ in range(5):
        scenario.advance(5 * H)  # the lossy hours leave the 24 h window
    scenario.advance(H + 1)  # and the criteria hold for the stable period
    drain(notifier, fake)
    assert scenario.judge.snapshot.verdict("hn-ok-1")["state"] == "completed"
    sent = [(name, site) for batch in fake.batches for a in batch
            for name, site in [(a["labels"]["alertname"], a["labels"]["site"])]]
    assert sent.count(("CommuneSiteRegressed", "hn-ok-1")) == 2  # fired, then resolved
    last = [a for batch in fake.batches for a in batch if a["labels"]["site"] == "hn-ok-1"][-1]
    assert last["endsAt"] < iso(scenario.now + 1)  # ended: endsAt is now, not in the future
    assert [a.labels["site"] for a in notifier.book.firing.values()] == ["hue-battery"]


# -- against a real Alertmanager ----------------------------------------------


def am_alerts(base_url: str, site: str) -> list[dict]:
    response = httpx.get(f"{base_url}/api/v2/alerts", params={"filter": f'site="{site}"'}, timeout=5)
    response.raise_for_status()
    return response.json()


def wait_for(condition, what: str, timeout: float = 20.0):
    from testsupport.peers._base import wait_until

    return wait_until(condition, timeout=timeout, interval=0.1, what=what)


@pytest.mark.slow
def test_alert_fires_is_seen_in_alertmanager_and_resolves(alertmanager):
    base_url = alertmanager.url
    settings = AlertingSettings(hold_down=False, alertmanager_url=base_url, external_url=EXTERNAL, resend_interval="1m")
    notifier = AlertmanagerNotifier(settings).start()
    try:
        site = f"am-{threading.get_ident()}"
        bad = verdict(site, "not_completed", [LOSS_BAD], regressions=[{**REGRESSION, "at": T0}], province="hue")
        notifier([Change(site, "hue", "regression", detail="completed -> not_completed")], [bad])
        alerts = wait_for(lambda: am_alerts(base_url, site), "the alert in Alertmanager")
        (alert,) = alerts
        assert alert["labels"]["alertname"] == "CommuneSiteRegressed"
        assert alert["labels"]["province"] == "hue"
        assert alert["labels"]["severity"] == "critical"
        assert alert["labels"]["service"] == "commune-monitor"
        assert alert["status"]["state"] == "active"
        assert "loss 12.3% over 24h" in alert["annotations"]["description"]
        assert alert["generatorURL"] == f"{EXTERNAL}/s/{site}"

        good = verdict(site, "completed", [LOSS_OK], regressions=[REGRESSION], province="hue")
        notifier([Change(site, "hue", "recovered")], [good])
        wait_for(lambda: am_alerts(base_url, site) == [], "the alert to resolve in Alertmanager")
        assert notifier.stats["posts_ok"] >= 2 and notifier.stats["posts_failed"] == 0
    finally:
        notifier.stop()


@pytest.mark.slow
def test_an_unreachable_alertmanager_is_counted_and_never_blocks(tmp_path):
    from testsupport.peers._base import free_tcp_port

    port = free_tcp_port()  # nothing listens here
    settings = AlertingSettings(alertmanager_url=f"http://127.0.0.1:{port}", max_attempts=2, timeout="1s")
    notifier = AlertmanagerNotifier(settings).start()
    try:
        notifier([Change("s1", "hue", "regression")],
                 [verdict("s1", "not_completed", [LOSS_BAD], regressions=[REGRESSION], province="hue")])
        wait_for(lambda: notifier.stats["dropped_alerts"] == 1, "the batch to be given up")
        assert notifier.stats["posts_failed"] == 2
    finally:
        notifier.stop()


@pytest.mark.slow
def test_a_real_collector_alerts_on_battery_and_resolves_on_mains(alertmanager, tmp_path):
    """The whole path: agent reports -> ingest -> judge -> notifier -> Alertmanager, and back."""
    import time

    from commune_collector.sites import Site
    from commune_common.wire import Report, encode_report
    from testsupport.collector import CollectorPeer
    from testsupport.synth import SiteScript, icmp_check, ups_check

    site = Site("hue-ups-test", "Xã Phong Điền", "hue", "Phong Điền")
    on_battery = {"now": True}

    def push(collector: CollectorPeer, token: str, seq: int, start: float, end: float) -> None:
        script = SiteScript(site.id, [
            icmp_check("link/fiber/icmp/provincial-dc", {"link": "fiber", "role": "primary",
                                                         "target": "provincial-dc"}, interval=60),
            ups_check("power/ups", {"ups": "ups", "source": "nut", "target": "ups"},
                      on_battery=lambda ts: on_battery["now"], interval=60)])
        report = Report(site=site.id, instance="alert-test", seq=seq, sent_at=time.time(), agent_version="test",
                        results=script.rounds(start, end))
        response = httpx.post(f"{collector.url}/api/v1/reports", content=encode_report(report), timeout=30,
                              headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        assert response.status_code == 200, response.text

    settings = {"aggregator": {"interval": "1s"}, "judge": {"interval": "1s"},
                "alerting": {"hold_down": False, "alertmanager_url": alertmanager.url, "resend_interval": "5s",
                             "external_url": "http://status.example.test"}}
    with CollectorPeer(sites=[site], settings=settings) as collector:
        token = collector.issue_token(site.id)
        now = time.time()
        push(collector, token, 1, now - 2 * 3600, now)
        alert = wait_for(lambda: [a for a in am_alerts(alertmanager.url, site.id)
                                  if a["labels"]["alertname"] == "CommuneOnBattery"], "CommuneOnBattery",
                         timeout=60)[0]
        assert alert["labels"]["province"] == "hue" and alert["labels"]["item"] == "power"
        assert alert["labels"]["criterion"] == "mains-power"
        assert alert["generatorURL"] == f"http://status.example.test/s/{site.id}"
        metrics = httpx.get(f"{collector.url}/metrics", timeout=10, headers=collector.headers).text
        assert 'commune_alerts_firing{alertname="CommuneOnBattery"} 1.0' in metrics

        on_battery["now"] = False  # mains is back: the UPS's next round says so
        push(collector, token, 2, time.time(), time.time() + 1)
        wait_for(lambda: not [a for a in am_alerts(alertmanager.url, site.id)
                              if a["labels"]["alertname"] == "CommuneOnBattery"],
                 "CommuneOnBattery to resolve", timeout=60)
        assert token not in collector.log_text()  # secrets never reach the logs


def test_notifier_metrics_pass_promtool():
    import subprocess

    from prometheus_client import generate_latest

    from testsupport.peers._base import require_binary

    promtool = require_binary("promtool")
    registry = CollectorRegistry()
    registry.register(notifier_with(FakeAlertmanager()).collector())
    result = subprocess.run([promtool, "check", "metrics"], input=generate_latest(registry), capture_output=True,
                            timeout=30, check=False)
    assert result.returncode == 0, result.stderr.decode()
