"""The deployment end to end: real agent -> real collector -> real Prometheus (shipped rules) -> real Alertmanager.

One stack for the module, on loopback:

- ``commune-agent run`` for site ``ha-noi-e2e-agent``: a primary link whose only
  target is a TCP listener this test owns (the target the fault kills), a backup
  link (ICMP, HTTP to the collector, and a TCP port nobody listens on), a
  video-conference endpoint, a router over SNMP (real ``snmpd``) and a UPS over
  NUT (real ``upsd`` + ``dummy-ups``); it pushes every second;
- ``commune-collector serve`` judging with the shipped criteria (stable period cut
  to seconds), forwarding the agent's samples to Prometheus with remote_write, and
  three more communes whose last 14 hours arrive through the ingest API (two
  completed, one losing 12.3% of its packets);
- Prometheus (Debian) run from the shipped ``deploy/prometheus/prometheus.yml``
  and rule files (scrape/evaluation every second, ``for:`` cut to two seconds in a
  test copy; nothing else changed), scraping the collector and the agent through
  file_sd and sending alerts to the session's Alertmanager.

Then every Grafana panel's query is run against that Prometheus and must return
data, and the induced fault (the TCP target stops answering) must reach
Alertmanager as CommuneLinkDown for that site and province, and resolve.
"""

from __future__ import annotations

import json
import re
import socketserver
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from commune_collector.sites import Site
from commune_common.wire import Report, encode_report
from testsupport.collector import VENV_BIN, CollectorPeer
from testsupport.peers._base import Peer, free_tcp_port, http_ok, wait_until
from testsupport.peers.prometheus import PrometheusPeer
from testsupport.synth import SiteScript, icmp_check, ups_check

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
AGENT_SITE = "ha-noi-e2e-agent"
SITES = [
    Site(AGENT_SITE, "Trung tâm Phục vụ hành chính công Phường Ba Đình", "ha-noi", "Phường Ba Đình"),
    Site("ha-noi-e2e-ok", "Trung tâm Phục vụ hành chính công Phường Hoàn Kiếm", "ha-noi", "Phường Hoàn Kiếm"),
    Site("ha-noi-e2e-lossy", "Trung tâm Phục vụ hành chính công Xã Sóc Sơn", "ha-noi", "Xã Sóc Sơn"),
    Site("hue-e2e-ok", "Trung tâm Phục vụ hành chính công Phường Thuận Hóa", "hue", "Phường Thuận Hóa"),
]
EXPECTED = {"ha-noi-e2e-ok": "completed", "ha-noi-e2e-lossy": "not_completed", "hue-e2e-ok": "completed"}
HOURS = 14  # of pushed history: enough coverage (>= 50%) for the 24 h criteria
TEST_FOR = "2s"  # every alert's for: in the test copy of the rules


# -- the stack's own pieces ----------------------------------------------------------------------


class TcpTarget:
    """A TCP service on loopback the test can take down and bring back (the 'dead target')."""

    def __init__(self) -> None:
        self.port = free_tcp_port()
        self._server: socketserver.TCPServer | None = None

    def start(self) -> None:
        socketserver.TCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), socketserver.BaseRequestHandler)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class AgentPeer(Peer):
    """``commune-agent run`` with a config written by the test; ready when /metrics answers."""

    name = "agent"

    def __init__(self, config: dict[str, Any], port: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.config, self.port = config, port
        self.config_path = self.dir / "agent.yaml"

    def _prepare(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.config, allow_unicode=True), encoding="utf-8")

    def _launch(self) -> None:
        self._spawn([str(VENV_BIN / "commune-agent"), "run", "--config", str(self.config_path)])

    def _is_ready(self) -> bool:
        return http_ok(f"http://127.0.0.1:{self.port}/metrics")


def agent_config(directory: Path, metrics_port: int, collector: CollectorPeer, target: TcpTarget,
                 snmpd: Any, nut: Any) -> dict[str, Any]:
    (directory / "snmp-community").write_text(snmpd.community + "\n")
    (directory / "snmp-community").chmod(0o600)
    return {
        "site": {"id": AGENT_SITE, "province": "ha-noi", "commune": "Phường Ba Đình"},
        "agent": {"listen": f"127.0.0.1:{metrics_port}", "state_dir": str(directory / "state"), "jitter": 0.0},
        "defaults": {"interval": "3s", "timeout": "2500ms"},
        "collector": {"url": collector.url, "token_file": str(directory / "token"), "push_interval": "1s",
                      "backoff_max": "2s"},
        "links": [
            {"name": "fiber", "role": "primary", "targets": [
                {"probe": "tcp", "name": "provincial-dc", "host": "127.0.0.1", "port": target.port}]},
            {"name": "lte", "role": "backup", "targets": [
                {"probe": "icmp", "name": "provincial-dc", "host": "127.0.0.1", "count": 3,
                 "packet_interval": "100ms", "echo_timeout": "500ms"},
                {"probe": "http", "name": "collector", "url": f"{collector.url}/readyz"},
                {"probe": "tcp", "name": "legacy-portal", "host": "127.0.0.1", "port": free_tcp_port()}]},
        ],
        "devices": [
            {"name": "vc-terminal", "kind": "ping", "host": "127.0.0.1", "role": "video_conference", "count": 2},
            {"name": "router", "kind": "router", "host": "127.0.0.1",
             "snmp": {"version": "2c", "port": snmpd.port, "community_file": str(directory / "snmp-community"),
                      "timeout": "500ms", "retries": 1}},
        ],
        "power": [{"name": "ups", "source": "nut", "host": nut.host, "port": nut.port, "ups": nut.ups_name}],
        "host": {"disks": ["/"]},
    }


def history(site: str) -> SiteScript:
    """What a commune's agent reported over the last hours (the lossy one loses 12.3% on its primary link)."""
    loss = 0.123 if "lossy" in site else 0.0
    return SiteScript(site, [
        icmp_check("link/fiber/icmp/provincial-dc", {"link": "fiber", "role": "primary", "target": "provincial-dc"},
                   loss=lambda ts: loss, interval=60),
        icmp_check("link/lte/icmp/provincial-dc", {"link": "lte", "role": "backup", "target": "provincial-dc"},
                   interval=60),
        ups_check("power/ups", {"ups": "ups", "source": "nut", "target": "ups"}, interval=60),
        icmp_check("device/vc-terminal/icmp", {"device": "vc-terminal", "kind": "ping", "required": "true",
                                               "target": "vc-terminal", "role": "video_conference"}, interval=60),
    ])


def push(collector: CollectorPeer, site: str, token: str, results: list, seq: int = 1) -> httpx.Response:
    report = Report(site=site, instance="deploy-e2e", seq=seq, sent_at=time.time(), agent_version="test",
                    results=results)
    return httpx.post(f"{collector.url}/api/v1/reports", content=encode_report(report), timeout=60,
                      headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})


def criteria_file(directory: Path) -> Path:
    """The shipped criteria, stable period cut to seconds, the reporting age widened (history is pushed once)."""
    text = (ROOT / "config" / "criteria.yaml").read_text(encoding="utf-8")
    text, n_stable = re.subn(r"(?m)^stable_period: .*$", "stable_period: 2s", text)
    text, n_report = re.subn(r"(?m)^(\s+expr: )report_age\(\) < 1m", r"\1report_age() < 1h", text)
    assert n_stable == 1 and n_report == 1, "config/criteria.yaml changed shape; update this test"
    path = directory / "criteria.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def prometheus_setup(collector_port: int, agent_port: int, alertmanager_url: str) -> tuple[str, dict[str, str]]:
    """The shipped prometheus.yml and rules at test speed, and file_sd targets on loopback: (config, files)."""
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    config["global"].update({"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"})
    for job in config["scrape_configs"]:
        job.update({"scrape_interval": "1s", "scrape_timeout": "1s"})
        for sd in job["file_sd_configs"]:
            sd["refresh_interval"] = "1s"
    files = {
        "targets/collector.yml": yaml.safe_dump([{"targets": [f"127.0.0.1:{collector_port}"]}]),
        "targets/agents.yml": yaml.safe_dump([{"targets": [f"127.0.0.1:{agent_port}"],
                                               "labels": {"site": AGENT_SITE, "province": "ha-noi"}}]),
        "targets/alertmanager.yml": yaml.safe_dump([{"targets": [alertmanager_url.split("//")[1]]}]),
        "secrets/commune-collector.token": "",  # the scrape credential, written once the collector made it
    }
    for path in (DEPLOY / "prometheus" / "rules").glob("*.yml"):
        doc = yaml.safe_load(path.read_text())
        for group in doc["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = TEST_FOR
        files[f"rules/{path.name}"] = yaml.safe_dump(doc, allow_unicode=True)
    return yaml.safe_dump(config), files


@dataclass
class Stack:
    prometheus: PrometheusPeer
    collector: CollectorPeer
    agent: AgentPeer
    target: TcpTarget
    alertmanager: Any


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, snmpd, nut_ups, alertmanager) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("deploy-e2e")
    target = TcpTarget()
    target.start()
    collector_port, agent_port = free_tcp_port(), free_tcp_port()
    config, files = prometheus_setup(collector_port, agent_port, alertmanager.url)
    prometheus = PrometheusPeer(config, files=files, remote_write_receiver=True)
    collector: CollectorPeer | None = None
    agent: AgentPeer | None = None
    try:
        prometheus.start()
        collector = CollectorPeer(sites=SITES, settings={
            "aggregator": {"interval": "1s"},
            "judge": {"criteria_file": str(criteria_file(work)), "interval": "1s"},
            "remote_write": {"url": prometheus.remote_write_url}})
        collector.port = collector_port  # the port prometheus.yml's file_sd already names
        collector.start()
        scraper = collector.cli("operator", "create", "prometheus", "--role", "metrics").stdout.strip()
        (prometheus.dir / "secrets" / "commune-collector.token").write_text(scraper + "\n")  # reread at each scrape
        now = time.time()
        for site in EXPECTED:
            response = push(collector, site, collector.issue_token(site), history(site).rounds(now - HOURS * 3600, now))
            assert response.status_code == 200, response.text
        # a report with a wrong token, once Prometheus has seen the counter at 0 (rate() needs the rise):
        # the collector refuses it, and CommuneCollectorRejectingReports fires
        prometheus.wait_for_query('commune_collector_ingest_rejected_requests_total{reason="unauthorized"} == 0',
                                  timeout=60)
        assert push(collector, AGENT_SITE, "not-a-token", []).status_code == 401
        (work / "token").write_text(collector.issue_token(AGENT_SITE) + "\n")
        (work / "token").chmod(0o600)
        agent = AgentPeer(agent_config(work, agent_port, collector, target, snmpd, nut_ups), agent_port)
        agent.start()
        wait_for_stack(prometheus)
        yield Stack(prometheus, collector, agent, target, alertmanager)
    finally:
        for peer in (agent, collector, prometheus):
            if peer is not None:
                peer.stop()
        target.stop()


def wait_for_stack(prometheus: PrometheusPeer) -> None:
    """Until Prometheus holds what every dashboard and rule reads: scrapes, forwarded samples, verdicts."""
    needed = [
        'up{job="commune-collector"} == 1',
        'up{job="commune-agent"} == 1',
        f'commune_probe_success{{site="{AGENT_SITE}", job=""}}',  # forwarded by the collector's remote_write
        f'commune_snmp_interface_receive_bytes_per_second{{site="{AGENT_SITE}"}}',  # two router rounds
        f'commune_power_on_battery{{site="{AGENT_SITE}"}}',
        f'commune_collector_fleet_spool_oldest_age_seconds{{site="{AGENT_SITE}"}}',  # the agent's spool, reported
        f'commune_site_criterion_met{{site="{AGENT_SITE}"}}',
        'commune_site_criterion_met{province="ha-noi"} == 0',
        'ALERTS{alertname="CommuneCollectorRejectingReports", alertstate="firing"}',
        *(f'commune_site_verdict{{site="{site}", state="{state}"}}' for site, state in EXPECTED.items()),
    ]
    for expr in needed:
        prometheus.wait_for_query(expr, timeout=120)


# -- the dashboards ------------------------------------------------------------------------------------


def dashboard_queries() -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for path in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json")):
        board = json.loads(path.read_text(encoding="utf-8"))
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                out.append((path.stem, f"{panel['title']} [{target['refId']}]", target))
    return out


def substitute(expr: str) -> str:
    return (expr.replace("$province", "ha-noi").replace("$site", AGENT_SITE)
            .replace("$__rate_interval", "30s"))


def test_every_dashboard_variable_lists_the_test_sites(stack):
    """Province and site variables list slugs as values and names as texts (Grafana's regex, run here)."""
    for path in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json")):
        for variable in json.loads(path.read_text(encoding="utf-8"))["templating"]["list"]:
            if variable["type"] != "query":
                continue
            match = re.fullmatch(r"query_result\((.+)\)", variable["query"]["query"])
            assert match, variable["query"]
            pattern = re.compile(variable["regex"].strip("/").replace("(?<", "(?P<"))
            options = {}
            for series in stack.prometheus.query(substitute(match.group(1))):
                labels = ", ".join(f'{k}="{v}"' for k, v in sorted(series["metric"].items()))
                found = pattern.search("{" + labels + "}")
                if found:
                    options[found.group("value")] = found.group("text")
            expected = {"province": "ha-noi", "site": AGENT_SITE}[variable["name"]]
            assert expected in options, f"{path.name}: ${variable['name']} offers {options}"
            assert options[expected] != expected, f"{path.name}: ${variable['name']} shows a slug, not a name"


@pytest.mark.parametrize(("board", "panel", "target"), dashboard_queries(),
                         ids=[f"{b}: {p}" for b, p, _ in dashboard_queries()])
def test_every_panel_query_returns_data(stack, board, panel, target):
    expr = substitute(target["expr"])
    if target.get("instant"):
        result = stack.prometheus.query(expr)
    else:
        end = time.time()
        result = stack.prometheus.api("query_range", query=expr, start=str(end - 120), end=str(end), step="5")["result"]
    assert result, f"{board} / {panel}: {expr} returned no data"


def test_rules_and_dashboards_only_use_metric_names_that_exist(stack):
    """Every commune_* name in the rules and dashboards is one the agent defines or the real collector exposes."""
    from commune_agent.metricsdoc import _own_doc_modules
    from commune_agent.registry import PROBES

    own = [doc for _, docs in _own_doc_modules() for doc in docs]  # every agent module's METRIC_DOCS
    agent = set()  # from the registry: some need hardware this stack lacks (printers, https targets)
    for doc in [*own, *(m for spec in PROBES.values() for m in spec.metrics)]:
        name = "commune_" + doc.name
        agent.add(name + "_total" if doc.type == "counter" and not name.endswith("_total") else name)
    scraped = {r["metric"]["__name__"] for r in stack.prometheus.query(
        'group by (__name__) ({__name__=~"commune_.+", job="commune-collector"})')}
    exprs = [rule["expr"] for path in (DEPLOY / "prometheus" / "rules").glob("*.yml")
             for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]
    exprs += [target["expr"] for _, _, target in dashboard_queries()]
    used = {name for expr in exprs for name in re.findall(r"\bcommune_[a-z_]+\b", expr)}
    assert "commune_site_verdict" in scraped and "commune_collector_ingest_reports_total" in scraped
    # exposed only when the collector serves TLS itself (tests/test_host_metrics.py reads it from a real certificate)
    only_with_tls = {"commune_collector_tls_cert_expiry_timestamp_seconds"}
    # a sample per site only once agents managed from the center report trouble (tests/test_fleet_api.py reads them)
    # (or enrollment tokens: tests/test_fleet_api.py reads those too)
    only_with_fleet_trouble = {"commune_collector_fleet_duplicate_agents", "commune_collector_fleet_config_apply_error",
                               "commune_collector_fleet_config_drift_seconds",
                               "commune_collector_enroll_token_uses_remaining", "commune_collector_enroll_token_uses_max",
                               "commune_collector_enroll_token_expiry_timestamp_seconds"}
    assert used - agent - scraped - only_with_tls - only_with_fleet_trouble == set()


# -- the induced fault ------------------------------------------------------------------------------------


def link_down_alerts(stack: Stack, link: str = "fiber") -> list[dict[str, Any]]:
    return stack.alertmanager.alerts(filters=['alertname="CommuneLinkDown"', f'site="{AGENT_SITE}"', f'link="{link}"'])


def test_a_dead_target_reaches_alertmanager_as_link_down_and_resolves(stack):
    prometheus = stack.prometheus
    # a quiet start: no link-down alert of this site, pending or firing. Once in a clean-clone CI run the
    # backup link (ICMP and HTTP to loopback, a refused port) showed every target failed for one evaluation
    # here, with `for:` cut to 2 s (15 min in production); its cause is not found, so the test waits for
    # the quiet start it needs and, below, judges the fault by the primary link's alert alone
    wait_until(lambda: prometheus.query(f'ALERTS{{alertname="CommuneLinkDown", site="{AGENT_SITE}"}}') == [],
               timeout=30, interval=0.5, what="no CommuneLinkDown of the site before the fault")
    assert link_down_alerts(stack) == []
    assert prometheus.query_value(f'commune:link_up:max{{site="{AGENT_SITE}", link="fiber"}}') == 1.0

    stack.target.stop()  # the provincial DC's service stops answering: the fiber link's only target
    alert = wait_until(lambda: link_down_alerts(stack), timeout=90, interval=0.5,
                       what="CommuneLinkDown in Alertmanager")[0]
    labels = alert["labels"]
    assert labels == {"alertname": "CommuneLinkDown", "site": AGENT_SITE, "province": "ha-noi", "link": "fiber",
                      "role": "primary", "severity": "critical", "item": "network", "service": "commune-monitor",
                      "source": "prometheus", "monitor": "commune-monitor"}  # the last: prometheus.yml's external label
    assert alert["status"]["state"] == "active"
    assert alert["annotations"]["summary"] == f"{AGENT_SITE} (ha-noi): primary link fiber is down"
    assert "carrier" in alert["annotations"]["runbook"]
    # names for people, looked up in the collector's commune_site_info by the rule itself
    assert alert["annotations"]["site_name"] == SITES[0].name
    assert alert["annotations"]["province_name"] == "Hà Nội"
    # the backup link kept answering: only the primary link is down
    assert prometheus.query_value(f'commune:link_up:max{{site="{AGENT_SITE}", link="lte"}}') == 1.0

    stack.target.start()  # the service is back: Prometheus resolves the alert, Alertmanager drops it
    wait_until(lambda: not link_down_alerts(stack), timeout=90, interval=0.5,
               what="CommuneLinkDown to resolve in Alertmanager")
    assert prometheus.query_value(f'commune:link_up:max{{site="{AGENT_SITE}", link="fiber"}}') == 1.0


def test_the_collector_rejecting_reports_reaches_alertmanager(stack):
    alert = wait_until(lambda: stack.alertmanager.alerts(filters=['alertname="CommuneCollectorRejectingReports"',
                                                                  'reason="unauthorized"']),
                       timeout=60, interval=0.5, what="CommuneCollectorRejectingReports")[0]
    assert alert["labels"]["item"] == "platform" and alert["labels"]["severity"] == "warning"
    assert alert["labels"]["instance"] == f"127.0.0.1:{stack.collector.port}"


def test_history_replayed_through_remote_write_is_kept(stack):
    """Hours-old samples (a spool replayed after an outage) are accepted: prometheus.yml's out-of-order window."""
    ten_hours_ago = str(time.time() - 10 * 3600)
    old = stack.prometheus.api("query", query='commune_icmp_loss_ratio{site="ha-noi-e2e-lossy", link="fiber"}',
                               time=ten_hours_ago)["result"]
    assert [float(r["value"][1]) for r in old] == [0.123]
    assert stack.prometheus.query_value('commune_collector_remote_write_samples_total{outcome="rejected"}') == 0.0
    assert stack.prometheus.query_value('commune_collector_remote_write_samples_total{outcome="sent"}') > 0


def test_the_target_date_is_exposed_with_its_kind(stack):
    """criteria.yaml's go-live milestone (2025-07-01) at midnight in Vietnam: 2025-06-30 17:00 UTC.

    A milestone is no deadline: commune_deadline_timestamp_seconds stays absent, so no panel counts
    the days since go-live as overdue.
    """
    assert stack.prometheus.query_value('max(commune_target_timestamp_seconds{kind="milestone"})') == 1751302800.0
