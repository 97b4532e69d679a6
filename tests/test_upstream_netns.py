"""Upstream outages from real agents: a province's communes behind one shared emulated link.

Seven real ``commune-agent run`` processes, each in its own network namespace,
ping the provincial data center through one emulated upstream link
(testsupport/linkemu/province.py) and push to a real collector on the host,
which alerts a real Alertmanager running the shipped config. Cutting the
upstream link must give one province alert and no commune alert that pages,
every commune's outage labelled upstream with the event; with the link back,
cutting one commune's own link must page for that commune alone, with no
upstream event. The criteria below only shorten time (stable period,
silence, a one-minute clustering window); the detector's thresholds are the
shipped defaults (at least 5 communes and 30 %).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from commune_collector.sites import Site
from tests.test_deploy_alertmanager import WebhookSink, shipped_config_for_tests
from testsupport.collector import CollectorPeer, in_netns, program
from testsupport.linkemu import require_root_netns
from testsupport.linkemu.province import Province, province_behind_upstream
from testsupport.peers._base import ManagedProcess, free_tcp_port, wait_until
from testsupport.peers.alertmanager import AlertmanagerPeer

pytestmark = pytest.mark.slow

PROVINCE = "thanh-hoa"
COMMUNES = 7
SITES = [Site(f"th-{i}", f"Trung tâm Phục vụ hành chính công Xã Thọ {i}", PROVINCE, f"Xã Thọ {i}")
         for i in range(COMMUNES)]
EVENT_KEY = f"province:{PROVINCE}"
CRITERIA = """
stable_period: 2s
min_coverage: 0%
expected_interval: 1s
restart_grace: 5s
silent_after: 4s
upstream: {within: 1m}
items: {network: {title: {en: Network, vi: Mạng}}}
criteria:
  - {id: primary-loss, item: network, title: {en: Primary link loss under 50%, vi: Mất gói dưới 50%},
     select: {probe: icmp, role: primary, target: provincial-dc}, expr: "last(icmp_loss_ratio, 1h) < 50%"}
"""


def agent_config(root: Path, site: Site, dc: str, collector_url: str, token: Path) -> Path:
    """One commune's agent: its primary link probes the data center every second, pushes every second."""
    path = root / f"{site.id}.yaml"
    path.write_text(f"""
site: {{id: {site.id}, province: {site.province}, commune: {site.commune}}}
agent: {{listen: "127.0.0.1:{free_tcp_port()}", state_dir: {root / site.id}, jitter: 0}}
defaults: {{interval: 1s, timeout: 1s}}
links:
  - name: fiber
    role: primary
    targets:
      - {{probe: icmp, name: provincial-dc, host: {dc}, count: 3, packet_interval: 50ms, echo_timeout: 300ms}}
host: {{enabled: false}}
collector: {{url: {collector_url}, token_file: {token}, push_interval: 1s, timeout: 2s, backoff_max: 2s}}
""", encoding="utf-8")
    return path


@dataclass
class World:
    province: Province
    collector: CollectorPeer
    am: AlertmanagerPeer
    sink: WebhookSink
    agents: list[ManagedProcess]

    def verdicts(self) -> dict[str, dict[str, Any]]:
        with self.collector.client(timeout=10) as client:
            return {s.id: client.get(f"/api/v1/verdicts/{s.id}").raise_for_status().json() for s in SITES}

    def live_alerts(self) -> list[dict[str, Any]]:
        """Alerts Alertmanager holds and has not seen resolved."""
        now = time.time()
        return [a for a in self.am.alerts() if _ts(a["endsAt"]) > now]

    def died(self) -> str | None:
        dead = [a.describe() for a in self.agents if a.exit_code() is not None]
        return f"agents exited: {dead}; log: {self.agents[0].log_path.read_text()[-1500:]}" if dead else None

    def wait(self, condition: Any, what: str, timeout: float = 90.0) -> Any:
        return wait_until(condition, timeout=timeout, interval=0.5, what=what, abort=self.died)


def _ts(text: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    require_root_netns("ping")
    with ExitStack() as stack:  # unwinds in reverse: agents, collector, namespaces, Alertmanager, sink
        sink = WebhookSink()
        stack.callback(sink.close)
        am = AlertmanagerPeer(shipped_config_for_tests(sink.url))
        stack.callback(am.stop)
        am.start()
        province = stack.enter_context(province_behind_upstream(COMMUNES, seed=17))
        (tmp_path / "criteria.yaml").write_text(CRITERIA, encoding="utf-8")
        collector = CollectorPeer(sites=SITES, settings={
            "alerting": {"alertmanager_url": am.url, "hold_down": False, "resend_interval": "5s"},
            "judge": {"interval": "1s", "criteria_file": str(tmp_path / "criteria.yaml")},
            "aggregator": {"interval": "1s"}})
        collector.host = province.host_address  # the communes reach it over the hub, not the data center
        stack.callback(collector.stop)
        collector.start()
        agents = []
        for i, site in enumerate(SITES):
            token = tmp_path / f"{site.id}.token"
            token.write_text(collector.issue_token(site.id) + "\n")
            token.chmod(0o600)
            config = agent_config(tmp_path, site, province.dc_address, collector.url, token)
            agent = ManagedProcess(in_netns(province.communes[i].netns,
                                            [program("commune-agent"), "run", "--config", str(config)]),
                                   tmp_path / f"{site.id}.log")
            stack.callback(agent.stop)
            agent.start()
            agents.append(agent)
        yield World(province, collector, am, sink, agents)


def named(alerts: list[dict[str, Any]], alertname: str) -> list[dict[str, Any]]:
    return [a for a in alerts if a["labels"]["alertname"] == alertname]


def paging(alerts: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Commune alerts that would notify someone: active (not inhibited, not silenced)."""
    return [(a["labels"]["alertname"], a["labels"].get("site", "")) for a in alerts
            if a["labels"].get("site") and a["status"]["state"] == "active"]


def test_upstream_cut_is_one_province_alert_and_a_commune_cut_is_that_commune_alone(world: World) -> None:
    world.wait(lambda: all(v["state"] == "completed" for v in world.verdicts().values()),
               "every commune to be completed on a healthy upstream")

    world.province.cut_upstream()
    verdicts = world.wait(lambda: (v := world.verdicts()) and all(
        d["outage_cause"] == "upstream" and d["state"] == "not_completed" for d in v.values()) and v,
        "every commune's outage to be labelled upstream")
    for verdict in verdicts.values():
        assert verdict["connectivity"] == "down"  # reports still arrive: the communes' path to us is not cut
        assert verdict["upstream"]["key"] == EVENT_KEY and verdict["upstream"]["province"] == PROVINCE
        assert verdict["upstream"]["sites"] == COMMUNES and verdict["upstream"]["reporting"] == COMMUNES

    def held() -> list[dict[str, Any]] | None:
        alerts = world.live_alerts()
        regressed = {a["labels"]["site"] for a in named(alerts, "CommuneSiteRegressed")}
        markers = {a["labels"]["site"] for a in named(alerts, "CommuneBehindUpstreamOutage")}
        done = regressed == markers == {s.id for s in SITES} and not paging(alerts)
        return alerts if done and named(alerts, "CommuneUpstreamOutage") else None

    alerts = world.wait(held, "one upstream alert, every commune's alert held by it")
    upstream = named(alerts, "CommuneUpstreamOutage")
    assert len(upstream) == 1 and upstream[0]["status"]["state"] == "active"
    assert upstream[0]["labels"]["province"] == PROVINCE and upstream[0]["labels"]["upstream"] == EVENT_KEY
    for alert in named(alerts, "CommuneSiteRegressed"):
        assert alert["labels"]["upstream"] == EVENT_KEY and alert["status"]["inhibitedBy"]
    world.wait(lambda: "CommuneUpstreamOutage" in world.sink.alerts_for("national-oncall-critical"),
               "the province alert to be notified", timeout=30)
    assert "inhibit-only" not in world.sink.received

    world.province.restore_upstream()
    world.wait(lambda: all(v["state"] == "completed" and v["upstream"] is None for v in world.verdicts().values())
               and not world.live_alerts(), "the communes completed again and every alert resolved")

    world.province.cut_commune(0)
    cut = SITES[0].id

    def silent_alone() -> list[dict[str, Any]] | None:
        alerts = world.live_alerts()
        return alerts if paging(alerts) == [("CommuneSiteSilent", cut)] else None

    alerts = world.wait(silent_alone, "the cut commune's alert, alone")
    assert not named(alerts, "CommuneUpstreamOutage") and not named(alerts, "CommuneBehindUpstreamOutage")
    verdicts = world.verdicts()
    assert verdicts[cut]["outage_cause"] == "network" and verdicts[cut]["upstream"] is None
    assert all(v["outage_cause"] is None for site, v in verdicts.items() if site != cut)
    world.wait(lambda: cut in world.sink.alerts_for("national-oncall").get("CommuneSiteSilent", set()),
               "the cut commune's alert to be notified", timeout=30)
