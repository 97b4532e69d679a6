"""Skewed agent clocks: evidence placed on the collector's time, whatever the skew and however late
the collector's handler runs.

Reports are built from the wire types and posted through the real API; the app's
own aggregator and judge (shipped criteria) decide. Agents 2 h and 1 day ahead
and behind must get exactly the verdicts of an agent whose clock is right.
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from commune_collector.aggregator import fold_journal
from commune_collector.auth import new_token
from commune_collector.judge.criteria import DEFAULT_CRITERIA
from commune_collector.runtime.app import create_app
from commune_collector.settings import CollectorSettings
from commune_collector.sites import Site
from commune_common.wire import CheckResult, Report, encode_report
from testsupport.access import operator_headers
from testsupport.collector import CollectorPeer, make_report
from testsupport.judge import H, between
from testsupport.judge import ScriptedSite as Scripted
from testsupport.peers._base import wait_until

SKEWS = {"clock-ok": 0.0, "ahead-2h": 2 * H, "behind-2h": -2 * H, "ahead-1d": 24 * H, "behind-1d": -24 * H}
ON_BATTERY_FOR = 1800.0  # the last half hour: the power item must fail now, on every clock


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[TestClient]:
    settings = CollectorSettings.model_validate({
        "data_dir": str(tmp_path / "data"), "auth": {"cache_ttl": "0s"}, "aggregator": {"interval": "1h"},
        "judge": {"criteria_file": str(DEFAULT_CRITERIA), "interval": "1h", "process": False}})
    app = create_app(settings)
    with TestClient(app) as client:
        client.headers.update(operator_headers(app.state.collector.store))  # reads need an operator
        yield client


def push(client: TestClient, site: str, rounds: list[CheckResult], skew: float) -> dict:
    """Send the rounds as the agent would: its own clock on every timestamp, an hour per report."""
    state = client.app.state.collector
    token, record = new_token(site)
    state.store.upsert_sites([Site(site, f"Trung tâm {site}", "ha-noi", "Phường Ba Đình")])
    state.store.add_token(record)
    skewed = [CheckResult(check=r.check, probe=r.probe, ts=r.ts + skew, ok=r.ok, duration_s=r.duration_s,
                          reason=r.reason, labels=r.labels, values=r.values) for r in rounds]
    skewed.sort(key=lambda r: r.ts)
    ack: dict = {}
    for seq, start in enumerate(range(0, len(skewed), 300), start=1):
        report = Report(site=site, instance="i", seq=seq, sent_at=time.time() + skew, agent_version="t",
                        results=skewed[start:start + 300])
        response = client.post("/api/v1/reports", content=encode_report(report),
                               headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        assert response.status_code == 200, response.text
        ack = response.json()
    return ack


def comparable(verdict: dict) -> dict:
    """A verdict without the site's own names, values and evidence times (those are compared apart: the
    offset is measured to the request's transit time, a few milliseconds here)."""
    return {"state": verdict["state"], "items": verdict["items"], "connectivity": verdict["connectivity"],
            "outage_cause": verdict["outage_cause"], "on_battery": verdict["on_battery"],
            "criteria": {c["id"]: (c["met"], c["value"] is None, round(c["coverage"], 2))
                         for c in verdict["criteria"]}}


def timed(verdict: dict) -> dict[str, tuple[float | None, float | None]]:
    return {c["id"]: (c["value"], c["evidence_ts"]) for c in verdict["criteria"]}


def test_skewed_clocks_get_the_verdicts_of_a_correct_clock(collector: TestClient) -> None:
    now = time.time()
    acks = {}
    for site, skew in SKEWS.items():
        script = Scripted(site, on_battery=between(now - ON_BATTERY_FOR, math.inf)).script()
        acks[site] = push(collector, site, script.rounds(now - 25 * H, now), skew)
    state = collector.app.state.collector
    fold_journal(state.store)
    state.judge.run_pass()
    verdicts = {site: collector.get(f"/api/v1/verdicts/{site}").json() for site in SKEWS}

    truth = comparable(verdicts["clock-ok"])
    assert truth["criteria"]["mains-power"][0] is False and truth["on_battery"] is True  # the power cut is seen now
    for site, skew in SKEWS.items():
        assert comparable(verdicts[site]) == truth, site
        for cid, got in timed(verdicts[site]).items():
            if cid == "agent-reporting":
                continue  # the age of the site's last report: the sites were sent one after the other
            for value, expected in zip(got, timed(verdicts["clock-ok"])[cid], strict=True):
                assert (value is None) == (expected is None), (site, cid)
                assert value is None or value == pytest.approx(expected, abs=1.0), (site, cid)
        assert acks[site]["clock_offset_s"] == pytest.approx(-skew, abs=5.0)
        shown = collector.get(f"/api/v1/sites/{site}").json()
        assert shown["clock_offset_s"] == pytest.approx(-skew, abs=5.0)  # the correction, shown with the site
        assert shown["clock_suspect"] is (skew != 0)
        page = collector.get(f"/s/{site}").text  # the status page says so too, in Vietnamese first
        said = {0.0: "Đúng giờ", 2 * H: "Nhanh 2h:", -2 * H: "Chậm 2h:", 24 * H: "Nhanh 1d:", -24 * H: "Chậm 1d:"}
        assert said[skew] in page, site
        if skew:
            assert "đã được hiệu chỉnh theo giờ máy chủ" in page


def _server_rx_queue(port: int) -> int:
    """Bytes waiting, unread, in the collector's accepted connections on ``port`` (/proc/net/tcp)."""
    waiting = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, queues = fields[1], fields[3], fields[4]
        if int(local.split(":")[1], 16) == port and state == "01":  # ESTABLISHED, server side
            waiting += int(queues.split(":")[1], 16)
    return waiting


def test_a_stalled_collector_places_the_report_when_it_arrived() -> None:
    """The collector process is stopped (SIGSTOP) while a report arrives, and resumed 2.5 s later.

    Any stall looks like this to the handler (a busy event loop, a long garbage collection, a slow
    dependency): it runs late. The offset must still be measured against the bytes' arrival, so a
    site whose clock is right keeps its rounds where they were.
    """
    site = Site("hn-ba-dinh", "Trung tâm Phường Ba Đình", "ha-noi", "Phường Ba Đình")
    stall = 2.5
    with CollectorPeer(sites=[site], settings={"aggregator": {"interval": "1h"}, "judge": {"enabled": False}}
                       ) as collector:
        token = collector.issue_token(site.id)
        with httpx.Client(base_url=collector.url, timeout=30) as client:
            assert client.get("/readyz").status_code == 200  # the connection is open before the stall
            (server,) = collector.pids
            sent = time.time()
            report = make_report(site.id, 1, n=1, ts=sent - 10, sent_at=sent)
            os.kill(server, signal.SIGSTOP)
            try:
                with ThreadPoolExecutor(1) as pool:
                    answer = pool.submit(client.post, "/api/v1/reports", content=encode_report(report),
                                         headers={"Authorization": f"Bearer {token}",
                                                  "Content-Type": "application/json"})
                    wait_until(lambda: _server_rx_queue(collector.port) > 0, timeout=10,
                               what="the report's bytes to wait in the stopped collector's socket")
                    time.sleep(stall)  # the stall itself, not a wait for anything
                    os.kill(server, signal.SIGCONT)
                    response = answer.result(timeout=30)
            finally:
                os.kill(server, signal.SIGCONT)
            assert response.status_code == 200, response.text
            assert abs(response.json()["clock_offset_s"]) < 0.5  # not the 2.5 s the handler ran late
            (latest,) = client.get(f"/api/v1/sites/{site.id}", headers=collector.headers).json()["latest"]
            assert latest["ts"] == pytest.approx(report.results[0].ts, abs=0.5)  # placed where it was taken
