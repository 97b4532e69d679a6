"""The collector's HTTP API in process (FastAPI TestClient, real SQLite store, real lifespan).

Ingest happy paths, idempotency, clock handling, the sites API, health, the
OpenAPI document and /metrics. Hostile input is in test_security.py, against
a real server process.
"""

from __future__ import annotations

import gzip
import math
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from commune_collector.aggregator import fold_journal
from commune_collector.auth import new_token
from commune_collector.runtime.app import create_app
from commune_collector.runtime.state import CollectorState
from commune_collector.settings import CollectorSettings
from commune_collector.sites import Site
from commune_common.wire import Report, encode_report
from testsupport.access import operator_headers
from testsupport.collector import make_report
from testsupport.peers._base import require_binary, wait_until

SITES = [Site("ha-noi-ba-dinh", "Trung tâm Phục vụ hành chính công Phường Ba Đình", "ha-noi", "Phường Ba Đình",
              ("fiber", "lte"), ("router",), ("ups",)),
         Site("hue-thuan-hoa", "Trung tâm Phục vụ hành chính công Phường Thuận Hóa", "hue", "Phường Thuận Hóa")]
SITE = SITES[0].id


class Api:
    def __init__(self, client: TestClient, state: CollectorState):
        self.client = client
        self.state = state
        self.tokens: dict[str, str] = {}
        client.headers.update(operator_headers(state.store))  # reads need an operator (collector.access)

    def token(self, site: str = SITE) -> str:
        if site not in self.tokens:
            text, record = new_token(site)
            self.state.store.add_token(record)
            self.tokens[site] = text
        return self.tokens[site]

    def post(self, report: Report | bytes, *, token: str | None = None, gzip_body: bool = False,
             headers: dict[str, str] | None = None) -> Any:
        body = report if isinstance(report, bytes) else encode_report(report)
        hdrs = {"Authorization": f"Bearer {token or self.token()}", "Content-Type": "application/json"}
        if gzip_body:
            body = gzip.compress(body)
            hdrs["Content-Encoding"] = "gzip"
        hdrs.update(headers or {})
        return self.client.post("/api/v1/reports", content=body, headers=hdrs)


def _settings(tmp_path: Path, **overrides: Any) -> CollectorSettings:
    base: dict[str, Any] = {"data_dir": str(tmp_path), "auth": {"cache_ttl": "0s"},
                            "aggregator": {"interval": "1h"}}
    base.update(overrides)
    return CollectorSettings.model_validate(base)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    app = create_app(_settings(tmp_path))
    with TestClient(app) as client:
        state = app.state.collector
        state.store.upsert_sites(SITES)
        yield Api(client, state)


def test_a_report_is_acknowledged_once_durable_and_its_values_served(api: Api) -> None:
    report = make_report(SITE, 1, n=3)
    response = api.post(report)
    assert response.status_code == 200, response.text
    ack = response.json()
    assert ack["accepted"] == 1 and ack["duplicate"] is False
    assert abs(ack["clock_offset_s"]) < 5
    detail = api.client.get(f"/api/v1/sites/{SITE}").json()
    assert detail["last_seq"] == 1 and detail["instance"] == "inst-1"
    assert [c["check"] for c in detail["latest"]] == [f"link/fiber/icmp/t{i}" for i in range(3)]
    assert detail["latest"][2]["values"]['icmp_rtt_seconds{stat="avg"}'] == pytest.approx(0.012)
    assert detail["province_name"] == "Hà Nội" and detail["commune"] == "Phường Ba Đình"


def test_gzip_bodies_are_accepted(api: Api) -> None:
    response = api.post(make_report(SITE, 7, n=50), gzip_body=True)
    assert response.status_code == 200, response.text
    assert len(api.state.store.latest(SITE)) == 50


def test_a_resent_report_is_acknowledged_as_duplicate_and_stored_once(api: Api) -> None:
    report = make_report(SITE, 3, n=2)
    assert api.post(report).json()["duplicate"] is False
    again = api.post(report)
    assert again.status_code == 200 and again.json() == {**again.json(), "accepted": 3, "duplicate": True}
    assert api.state.store.stats().journal_reports == 1
    assert api.state.ingest_stats.reports == 1 and api.state.ingest_stats.duplicates == 1


def test_a_slow_site_clock_is_measured_flagged_and_corrected(api: Api) -> None:
    now = time.time()
    report = make_report(SITE, 1, n=1, sent_at=now - 300, ts=now - 310)  # the site's clock is 5 min slow
    ack = api.post(report).json()
    assert ack["clock_offset_s"] == pytest.approx(300, abs=5)
    site = api.client.get(f"/api/v1/sites/{SITE}").json()
    assert site["clock_suspect"] is True and site["clock_offset_s"] == pytest.approx(300, abs=5)
    assert site["latest"][0]["ts"] == pytest.approx(now - 10, abs=5)


def test_a_clock_a_month_off_is_corrected_flagged_never_refused(api: Api) -> None:
    now = time.time()
    response = api.post(make_report(SITE, 1, n=1, sent_at=now - 86400 * 30, ts=now - 86400 * 30 - 7))
    assert response.status_code == 200
    site = api.client.get(f"/api/v1/sites/{SITE}").json()
    assert site["clock_suspect"] is True and site["clock_offset_s"] == pytest.approx(86400 * 30, abs=5)
    assert site["latest"][0]["ts"] == pytest.approx(now - 7, abs=5)  # on the collector's time


def test_old_timestamps_are_accepted_for_backfill(api: Api) -> None:
    week_ago = time.time() - 6 * 86400
    assert api.post(make_report(SITE, 1, n=2, ts=week_ago)).status_code == 200
    fold_journal(api.state.store)
    (s1, s2) = api.state.store.summaries(week_ago - 3600, week_ago + 3600, [SITE])
    assert s1.first_ts == pytest.approx(week_ago, abs=5)


def test_sites_are_listed_in_pages_and_filtered_by_province(api: Api) -> None:
    api.state.store.upsert_sites([Site(f"ha-noi-x{i:02d}", f"Xã {i}", "ha-noi", f"Xã Số {i}") for i in range(30)])
    page = api.client.get("/api/v1/sites", params={"province": "ha-noi", "limit": 10, "offset": 25}).json()
    assert page["total"] == 31 and page["limit"] == 10 and page["offset"] == 25
    assert len(page["items"]) == 6 and all(s["province"] == "ha-noi" for s in page["items"])
    hue = api.client.get("/api/v1/sites", params={"province": "hue"}).json()
    assert [s["commune"] for s in hue["items"]] == ["Phường Thuận Hóa"]
    assert hue["items"][0]["last_report_at"] is None and hue["items"][0]["clock_suspect"] is False


def test_bad_queries_get_problem_documents(api: Api) -> None:
    unknown = api.client.get("/api/v1/sites", params={"province": "atlantis"})
    assert unknown.status_code == 422
    assert unknown.headers["content-type"] == "application/problem+json"
    assert unknown.json()["errors"] == [{"field": "province", "message": "is not one of the 34 province slugs"}]
    too_many = api.client.get("/api/v1/sites", params={"limit": 5000})
    assert too_many.status_code == 422 and too_many.json()["errors"][0]["field"] == "query.limit"
    missing = api.client.get("/api/v1/sites/no-such-site")
    assert missing.status_code == 404 and missing.json()["title"] == "Not Found"


def test_health_readiness_and_docs(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok", "detail": ""}
    assert api.client.get("/readyz").json()["status"] == "ready"
    assert api.client.get("/docs").status_code == 200
    schema = api.client.get("/openapi.json").json()
    assert schema["paths"]["/api/v1/reports"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Report"}
    assert {"Report", "CheckResult"} <= set(schema["components"]["schemas"])
    assert "HTTPBearer" in schema["components"]["securitySchemes"]


def test_a_full_write_queue_is_answered_503_with_retry_after(tmp_path: Path) -> None:
    import threading
    app = create_app(_settings(tmp_path, database={"max_pending_writes": 1}))
    with TestClient(app) as client:
        state: CollectorState = app.state.collector
        state.store.upsert_sites(SITES)
        api = Api(client, state)
        api.token()
        release = threading.Event()
        blocker = state.store._writer.submit(lambda conn: release.wait(30))  # type: ignore[attr-defined]
        wait_until(blocker.running, timeout=10, what="the writer to be busy")
        filler = state.store._writer.submit(lambda conn: None)  # type: ignore[attr-defined]
        try:
            response = api.post(make_report(SITE, 1))
        finally:
            release.set()
        filler.result(10)
        assert response.status_code == 503 and response.headers["retry-after"] == "5"
        assert api.post(make_report(SITE, 1)).status_code == 200  # the agent's retry then succeeds


def test_the_aggregator_folds_and_prunes_in_its_process_and_the_server_counts_it(tmp_path: Path) -> None:
    """The aggregator runs in a child process (the default); its passes, folds and prunes reach the
    server's /metrics through shared memory. Before, they read 0 there whatever the child did."""
    app = create_app(_settings(tmp_path, aggregator={"interval": "100ms"}, retention={"prune_interval": "100ms"}))
    with TestClient(app) as client:
        state: CollectorState = app.state.collector
        assert state.aggregate_in_child
        state.store.upsert_sites(SITES)
        api = Api(client, state)
        old = time.time() - 10 * 86400  # past the 8-day evidence retention: folded, then pruned
        assert api.post(make_report(SITE, 1, n=3, ts=old)).status_code == 200  # spooled, sent now
        assert api.post(make_report(SITE, 2, n=4)).status_code == 200
        folded, pruned = ("commune_collector_aggregator_folded_reports_total", ()), \
            ("commune_collector_retention_pruned_summaries_total", ())
        wait_until(lambda: (m := _metrics(api))[folded] == 2 and m[pruned] == 3, timeout=20,
                   what="both reports folded and the old one's 3 summaries pruned, as the server counts them")
        m = _metrics(api)
        assert state.store.stats().journal_reports == 0
        assert len(state.store.summaries(0, time.time() + 60, [SITE])) == 4  # the old report's 3 are gone
        assert m[("commune_collector_aggregator_passes_total", ())] >= 1
        assert m[("commune_collector_aggregator_errors_total", ())] == 0
        assert m[("commune_collector_aggregator_last_pass_seconds", ())] > 0
        assert m[("commune_collector_retention_last_prune_timestamp_seconds", ())] == pytest.approx(time.time(), abs=60)


def _metrics(api: Api) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = api.client.get("/metrics").text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_count_ingest_rejects_latency_and_per_site_clock(api: Api) -> None:
    now = time.time()
    api.post(make_report(SITE, 1, n=3, sent_at=now - 60))
    api.post(make_report(SITE, 1, n=3, sent_at=now - 60))
    api.post(make_report(SITE, 2, n=3), token="cm_000000000000_" + "x" * 43)
    m = _metrics(api)
    assert m[("commune_collector_ingest_reports_total", ())] == 1
    assert m[("commune_collector_ingest_duplicate_reports_total", ())] == 1
    assert m[("commune_collector_ingest_results_total", ())] == 3
    assert m[("commune_collector_ingest_rejected_requests_total", (("reason", "unauthorized"),))] == 1
    assert m[("commune_collector_ingest_rejected_requests_total", (("reason", "too_large"),))] == 0
    assert m[("commune_collector_site_clock_offset_seconds", (("site", SITE),))] == pytest.approx(60, abs=5)
    assert m[("commune_collector_site_clock_suspect", (("site", SITE),))] == 1
    assert m[("commune_collector_site_last_report_timestamp_seconds", (("site", SITE),))] == pytest.approx(now, abs=5)
    assert m[("commune_collector_journal_backlog_reports", ())] == 1
    assert m[("commune_collector_store_write_jobs_total", ())] >= 2  # the stored report and the duplicate's check
    assert m[("commune_collector_store_write_held_seconds_total", ())] > 0
    assert m[("commune_collector_http_request_duration_seconds_count",
              (("method", "POST"), ("route", "/api/v1/reports")))] == 3
    assert not any(math.isnan(v) for v in m.values())


def test_metrics_pass_promtool(api: Api, tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    api.post(make_report(SITE, 1, n=3))
    text = api.client.get("/metrics").text
    assert "commune_collector_ingest_reports_total" in text
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ack_is_the_wire_type_the_agent_decodes(api: Api) -> None:
    from commune_common.wire import Ack
    response = api.post(make_report(SITE, 11))
    ack = msgspec.json.decode(response.content, type=Ack)
    assert ack.accepted == 11 and ack.duplicate is False
