"""A collector restart is not a network outage, and raises no "site silent" for its own downtime.

A real ``commune-collector serve`` (judge in its child process, alerts to a real
Alertmanager) is stopped over a store whose sites last reported 10 minutes
ago, and started again. Silence is measured from the later of the last report
and the judge's start, and a site whose last report predates the start gets
the agents' retry horizon (``restart_grace``) to come back: the agents were
backing off while the collector was down. A site that does come back is never
called silent or cut off; one that does not is alerted once the grace is over.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from commune_collector.judge.criteria import DEFAULT_CRITERIA
from commune_collector.sites import Site
from commune_common.wire import Report, encode_report
from testsupport.collector import CollectorPeer
from testsupport.peers._base import wait_until
from testsupport.synth import SiteScript, icmp_check, ups_check

BACK = Site("hn-ba-dinh", "Trung tâm Phường Ba Đình", "ha-noi", "Phường Ba Đình")
GONE = Site("hn-hoan-kiem", "Trung tâm Phường Hoàn Kiếm", "ha-noi", "Phường Hoàn Kiếm")
SILENT_AFTER, GRACE, DOWNTIME = 5.0, 25.0, 600.0  # seconds; generous: the machine may be busy
pytestmark = pytest.mark.slow


def push(collector: CollectorPeer, token: str, site: str, seq: int, start: float, end: float) -> None:
    script = SiteScript(site, [
        icmp_check("link/fiber/icmp/provincial-dc", {"link": "fiber", "role": "primary", "target": "provincial-dc"},
                   interval=60),
        icmp_check("link/lte/icmp/provincial-dc", {"link": "lte", "role": "backup", "target": "provincial-dc"},
                   interval=60),
        ups_check("power/ups", {"ups": "ups", "source": "nut", "target": "ups"}, interval=60)])
    report = Report(site=site, instance="restart-test", seq=seq, sent_at=time.time(), agent_version="test",
                    results=script.rounds(start, end))
    response = httpx.post(f"{collector.url}/api/v1/reports", content=encode_report(report), timeout=30,
                          headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert response.status_code == 200, response.text


def verdict(collector: CollectorPeer, site: str) -> dict:
    return httpx.get(f"{collector.url}/api/v1/verdicts/{site}", timeout=10, headers=collector.headers).json()


def fired(collector: CollectorPeer) -> float:
    text = httpx.get(f"{collector.url}/metrics", timeout=10, headers=collector.headers).text
    return next(s.value for f in text_string_to_metric_families(text) for s in f.samples
                if s.name == "commune_alert_transitions_total" and s.labels == {"transition": "fired"})


def silent_alerts(alertmanager_url: str) -> set[str]:
    alerts = httpx.get(f"{alertmanager_url}/api/v2/alerts", params={"filter": 'alertname="CommuneSiteSilent"'},
                       timeout=5).json()
    return {a["labels"]["site"] for a in alerts}


def judged_after(collector: CollectorPeer, site: str, at: float) -> dict:
    return wait_until(lambda: (v := verdict(collector, site)).get("evaluated_at", 0) >= at and v, timeout=60,
                      what=f"a judge pass after {at:.0f}")


def test_a_restart_over_old_reports_raises_no_silence_the_downtime_caused(alertmanager, tmp_path: Path) -> None:
    criteria = tmp_path / "criteria.yaml"
    shipped = DEFAULT_CRITERIA.read_text(encoding="utf-8")
    assert "expr: report_age() < 1m" in shipped
    criteria.write_text(shipped.replace("expr: report_age() < 1m", f"expr: report_age() < {SILENT_AFTER:g}s")
                        + f"\nrestart_grace: {GRACE:g}s\n", encoding="utf-8")
    settings = {"aggregator": {"interval": "1s"},
                "judge": {"interval": "1s", "criteria_file": str(criteria)},
                "alerting": {"alertmanager_url": alertmanager.url, "resend_interval": "5s",
                              "hold_down": False}}  # this test is about the restart, not the hold-down
    with CollectorPeer(sites=[BACK, GONE], settings=settings) as collector:
        tokens = {s.id: collector.issue_token(s.id) for s in (BACK, GONE)}
        now = time.time()
        for site in (BACK, GONE):
            push(collector, tokens[site.id], site.id, 1, now - 3600, now - DOWNTIME)
        judged_after(collector, BACK.id, time.time())
        collector._stop_processes()  # the collector goes down; its sites last reported 10 minutes ago
        with sqlite3.connect(collector.data_dir / "collector.db") as db:
            db.execute("UPDATE site_state SET last_report_at = ?", (now - DOWNTIME,))
        collector.restart()
        started = time.time()

        # past the silence threshold after the start: neither site is silent, neither is cut off
        for site in (BACK, GONE):
            seen = judged_after(collector, site.id, started + 2 * SILENT_AFTER)
            assert seen["outage_cause"] is None, (site.id, seen["outage_cause"], seen["connectivity"])
            assert seen["connectivity"] == "unknown"  # nothing fresh to tell: not "down"
            reporting = next(c for c in seen["criteria"] if c["id"] == "agent-reporting")
            assert reporting["met"] is None and "restarted" in reporting["reason"]  # unknown, not failed
        assert fired(collector) == 0

        with Agent(collector, tokens[BACK.id], BACK.id):  # its agent is back, pushing more often than the silence
            check_after_the_grace(collector, alertmanager.url, started)


class Agent(threading.Thread):
    """An agent back in touch: pushes its last rounds every SILENT_AFTER / 4 until stopped."""

    def __init__(self, collector: CollectorPeer, token: str, site: str):
        super().__init__(daemon=True)
        self.collector, self.token, self.site = collector, token, site
        self.stop = threading.Event()

    def run(self) -> None:
        seq, last = 2, time.time() - 120
        while not self.stop.is_set():
            now = time.time()
            push(self.collector, self.token, self.site, seq, last, now)
            seq, last = seq + 1, now
            self.stop.wait(SILENT_AFTER / 4)

    def __enter__(self) -> Agent:
        self.start()
        wait_until(lambda: verdict(self.collector, self.site)["connectivity"] == "primary", timeout=60,
                   what="the returning agent's rounds to be judged")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join(timeout=30)


def check_after_the_grace(collector: CollectorPeer, alertmanager_url: str, started: float) -> None:
    gone = wait_until(lambda: (v := verdict(collector, GONE.id))["outage_cause"] and v, timeout=60,
                      what="the site that did not come back to be silent once the grace is over")
    assert gone["evaluated_at"] >= started + GRACE
    assert gone["outage_cause"] == "network"
    wait_until(lambda: silent_alerts(alertmanager_url) >= {GONE.id}, timeout=60,
               what="CommuneSiteSilent for the site that did not come back")
    assert next(c for c in gone["criteria"] if c["id"] == "agent-reporting")["met"] is False
    back = verdict(collector, BACK.id)
    assert back["outage_cause"] is None and back["connectivity"] == "primary"
    assert next(c for c in back["criteria"] if c["id"] == "agent-reporting")["met"] is True
    assert BACK.id not in silent_alerts(alertmanager_url)
    assert fired(collector) == 1  # the one genuine silence, nothing for the restart itself
