"""The shipped Alertmanager config in a real Alertmanager: routing per province and severity,
grouping by site, and inhibition (a silent site silences its own link and device alerts).

The config is deploy/alertmanager/alertmanager.yml with only what cannot run
here changed: every receiver posts to a webhook sink on loopback (no e-mail
leaves the machine) and the group timers are seconds, not minutes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from testsupport.peers._base import wait_until
from testsupport.peers.alertmanager import AlertmanagerPeer

pytestmark = pytest.mark.slow

SHIPPED = Path(__file__).resolve().parents[1] / "deploy" / "alertmanager"


class WebhookSink:
    """Collects Alertmanager's webhook notifications: receiver name -> list of payloads."""

    def __init__(self) -> None:
        received: dict[str, list[dict[str, Any]]] = {}
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                payload = json.loads(body)
                received.setdefault(payload["receiver"], []).append(payload)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts_for(self, receiver: str) -> dict[str, set[str]]:
        """alertname -> sites notified to ``receiver`` (firing)."""
        out: dict[str, set[str]] = {}
        for payload in self.received.get(receiver, []):
            for alert in payload["alerts"]:
                if alert["status"] == "firing":
                    out.setdefault(alert["labels"]["alertname"], set()).add(alert["labels"].get("site", ""))
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def shipped_config_for_tests(sink_url: str) -> str:
    config = yaml.safe_load((SHIPPED / "alertmanager.yml").read_text())
    config["global"] = {"resolve_timeout": "5m"}
    config["templates"] = [str(SHIPPED / "templates" / "*.tmpl")]
    # group_wait stays (shortened): it is what lets an inhibiting alert arrive before its symptoms are sent
    config["route"].update({"group_wait": "2s", "group_interval": "1s"})
    # every receiver that notifies posts to the sink instead; one that notifies nobody stays so
    config["receivers"] = [{"name": r["name"], "webhook_configs": [{"url": sink_url, "send_resolved": True}]}
                           if len(r) > 1 else r for r in config["receivers"]]
    return yaml.safe_dump(config)


@pytest.fixture(scope="module")
def shipped_alertmanager() -> Iterator[tuple[AlertmanagerPeer, WebhookSink]]:
    sink = WebhookSink()
    peer = AlertmanagerPeer(shipped_config_for_tests(sink.url))
    try:
        peer.start()
        yield peer, sink
    finally:
        peer.stop()
        sink.close()


def alert(name: str, site: str, severity: str, **labels: str) -> dict[str, Any]:
    return {"labels": {"alertname": name, "site": site, "severity": severity, "service": "commune-monitor",
                       **labels},
            "annotations": {"summary": f"{name} at {site}", "runbook": "check it"}}


def test_routing_grouping_and_inhibition(shipped_alertmanager):
    am, sink = shipped_alertmanager
    sources = [
        # site hn-silent stopped reporting: its link and device alerts are consequences
        alert("CommuneSiteSilent", "hn-silent", "warning", province="ha-noi", item="reporting", source="prometheus"),
        # the collector's own on-battery alert inhibits the copy Prometheus computed for the same site
        alert("CommuneOnBattery", "hue-ups", "warning", province="hue", item="power", criterion="mains-power"),
    ]
    am.post_alerts(sources)
    wait_until(lambda: len(am.alerts()) == len(sources), timeout=30, what="the inhibiting alerts to be held")
    am.post_alerts([
        alert("CommuneLinkDown", "hn-silent", "critical", province="ha-noi", link="fiber", item="network",
              source="prometheus"),
        alert("CommuneDeviceDown", "hn-silent", "warning", province="ha-noi", device="router", item="devices",
              source="prometheus"),
        # another Hà Nội site with only its link down: pages Hà Nội's critical route
        alert("CommuneLinkDown", "hn-cut", "critical", province="ha-noi", link="fiber", item="network",
              source="prometheus"),
        alert("CommuneOnBattery", "hue-ups", "warning", province="hue", item="power", ups="ups",
              source="prometheus"),
        # a province without a route of its own, and the platform
        alert("CommuneLinkDown", "cm-cut", "critical", province="ca-mau", link="fiber", item="network",
              source="prometheus"),
        {"labels": {"alertname": "CommuneCollectorDown", "severity": "critical", "item": "platform",
                    "service": "commune-monitor", "source": "prometheus", "instance": "c1:8470"},
         "annotations": {"summary": "down"}},
    ])

    def state(name: str, site: str, **match: str) -> dict[str, Any]:
        found = [a for a in am.alerts(filters=[f'alertname="{name}"', f'site="{site}"'])
                 if all(a["labels"].get(k) == v for k, v in match.items())]
        assert len(found) == 1, found
        return found[0]["status"]

    def inhibition_settled() -> bool:
        # the inhibitor works on its own goroutine: poll until it has seen every alert
        return (len(am.alerts()) == 8
                and bool(state("CommuneLinkDown", "hn-silent")["inhibitedBy"])
                and bool(state("CommuneDeviceDown", "hn-silent")["inhibitedBy"])
                and bool(state("CommuneOnBattery", "hue-ups", source="prometheus")["inhibitedBy"]))

    wait_until(inhibition_settled, timeout=30, what="the alerts to be held and inhibited")
    assert state("CommuneSiteSilent", "hn-silent")["state"] == "active"
    assert state("CommuneLinkDown", "hn-cut")["state"] == "active"
    assert state("CommuneOnBattery", "hue-ups", criterion="mains-power")["state"] == "active"
    assert state("CommuneLinkDown", "cm-cut")["state"] == "active"

    expected = {
        "ha-noi-oncall": {"CommuneSiteSilent": {"hn-silent"}},
        "ha-noi-oncall-critical": {"CommuneLinkDown": {"hn-cut"}},
        "central-region-oncall": {"CommuneOnBattery": {"hue-ups"}},
        "national-oncall-critical": {"CommuneLinkDown": {"cm-cut"}},
        "national-platform": {"CommuneCollectorDown": {""}},
    }
    wait_until(lambda: all(sink.alerts_for(r) == want for r, want in expected.items()), timeout=30,
               what=f"the notifications {expected}")
    # inhibited alerts were never notified, anywhere
    notified = {(n, s) for r in list(sink.received) for n, sites in sink.alerts_for(r).items() for s in sites}
    assert ("CommuneLinkDown", "hn-silent") not in notified and ("CommuneDeviceDown", "hn-silent") not in notified
    # one notification per site: the group key holds province and site
    for payloads in list(sink.received.values()):
        for payload in payloads:
            assert {a["labels"].get("site", "") for a in payload["alerts"]} == {payload["groupLabels"].get("site", "")}
