"""Fleet management in process (real SQLite store, real lifespan): enrollment, the served config, duplicates.

The agent side of enrollment and of applying a config is in test_fleet_agent.py; real processes end to end
in test_fleet_e2e.py.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from commune_collector.fleet.db import FleetDb
from commune_collector.fleet.tokens import new_enroll_token
from commune_collector.runtime.app import create_app
from commune_collector.settings import CollectorSettings
from commune_collector.sites import Site
from commune_common.wire import Report, SpoolState, encode_report
from tests.fleet_support import sites, write_profile
from testsupport.access import operator_headers
from testsupport.collector import sample_results

SITES = [*sites(3), Site("hue-thuan-hoa", "Trung tâm Thuận Hóa", "hue", "Phường Thuận Hóa", ("fiber",))]


class Fleet:
    def __init__(self, client: TestClient, state: Any, profile: Path):
        self.client, self.state, self.profile = client, state, profile
        self.db = FleetDb(state.store)

    def token(self, province: str | None = "ha-noi", sites: tuple[str, ...] = (), *, max_uses: int = 10,
              ttl: float = 3600, allow_reenroll: bool = False) -> str:
        now = time.time()
        text, record = new_enroll_token(province, sites, now, now + ttl, max_uses, allow_reenroll)
        self.db.add_enroll_token(record)
        return text

    def enroll(self, token: str, site: str, instance: str = "box-1") -> Any:
        return self.client.post("/api/v1/enroll", json={"token": token, "site": site, "instance": instance})

    def report(self, site_token: str, site: str, seq: int, instance: str = "box-1", **extra: Any) -> Any:
        report = Report(site=site, instance=instance, seq=seq, sent_at=time.time(), agent_version="test",
                        results=sample_results(1, time.time() - 1), **extra)
        return self.client.post("/api/v1/reports", content=encode_report(report),
                                headers={"Authorization": f"Bearer {site_token}", "Content-Type": "application/json"})

    def metric(self, name: str, **labels: str) -> float | None:
        text = self.client.get("/metrics").text
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == name and s.labels == labels:
                    return s.value
        return None


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    profile = write_profile(tmp_path / "profile.yaml", 9)
    settings = CollectorSettings.model_validate({
        "data_dir": str(tmp_path), "auth": {"cache_ttl": "0s"}, "aggregator": {"interval": "1h"},
        "fleet": {"profile": str(profile), "live_within": "10m", "duplicate_window": "5m"}})
    app = create_app(settings)
    with TestClient(app) as client:
        state = app.state.collector
        state.store.upsert_sites(SITES)
        client.headers.update(operator_headers(state.store))  # reads need an operator (collector.access)
        f = Fleet(client, state, profile)
        yield f
        f.db.close()


def test_enrollment_gives_the_site_a_token_once_and_records_who_enrolled_it(fleet: Fleet) -> None:
    token = fleet.token(max_uses=2)
    answer = fleet.enroll(token, "hn-site-01", "box-a")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["site"] == "hn-site-01" and body["province"] == "ha-noi" and body["reenrolled"] is False
    site_token = body["token"]
    assert site_token.startswith("cm_") and fleet.report(site_token, "hn-site-01", 1, "box-a").status_code == 200
    (enrolled,) = fleet.db.enrollments("hn-site-01")
    assert enrolled.instance == "box-a" and enrolled.enroll_token == token.split("_")[1]
    assert enrolled.site_token == site_token.split("_")[1]
    assert site_token not in (fleet.state.settings.data_dir / "collector.db").read_bytes().decode("latin-1")
    assert fleet.metric("commune_collector_fleet_enrollments_total", outcome="enrolled") == 1


def test_a_typo_in_the_site_gets_the_nearest_names_in_a_problem(fleet: Fleet) -> None:
    answer = fleet.enroll(fleet.token(), "hn-site-1")
    assert answer.status_code == 422 and answer.headers["content-type"] == "application/problem+json"
    detail = answer.json()["detail"]
    assert "did you mean" in detail and "hn-site-01" in detail and "hue-thuan-hoa" not in detail
    assert answer.json()["errors"][0]["field"] == "site"


@pytest.mark.parametrize("case", ["out_of_scope", "expired", "used_up", "revoked", "unknown", "site_token"])
def test_an_enrollment_token_that_cannot_be_used_is_refused_with_why(fleet: Fleet, case: str) -> None:
    token = fleet.token(ttl=-1) if case == "expired" else fleet.token(max_uses=1)
    site = "hue-thuan-hoa" if case == "out_of_scope" else "hn-site-00"
    if case == "used_up":
        assert fleet.enroll(token, "hn-site-02").status_code == 200
    if case == "revoked":
        assert fleet.db.revoke_enroll_token(token.split("_")[1], time.time()) == 1
    if case == "unknown":
        token = token[:-4] + "AAAA"
    if case == "site_token":
        token = fleet.enroll(fleet.token(), "hn-site-02").json()["token"]
    answer = fleet.enroll(token, site)
    expected = {"out_of_scope": (403, "province ha-noi"), "expired": (401, "expired"), "used_up": (401, "used up"),
                "revoked": (401, "revoked"), "unknown": (401, "unknown"), "site_token": (401, "not an enrollment")}
    status, words = expected[case]
    assert answer.status_code == status and words in answer.json()["detail"], answer.text
    assert not fleet.db.enrollments(site)


def test_a_second_box_is_refused_while_the_site_has_a_live_agent_unless_allowed(fleet: Fleet) -> None:
    token = fleet.token()
    first = fleet.enroll(token, "hn-site-00", "box-old").json()["token"]
    assert fleet.report(first, "hn-site-00", 1, "box-old").status_code == 200
    refused = fleet.enroll(token, "hn-site-00", "box-new")
    assert refused.status_code == 409 and "allow-reenroll hn-site-00" in refused.json()["detail"]
    assert fleet.enroll(token, "hn-site-00", "box-old").status_code == 200  # the same box again: allowed
    fleet.db.allow_reenroll("hn-site-00", time.time())
    again = fleet.enroll(token, "hn-site-00", "box-new")
    assert again.status_code == 200 and again.json()["reenrolled"] is True
    assert fleet.report(first, "hn-site-00", 2, "box-old").status_code == 401
    assert fleet.report(again.json()["token"], "hn-site-00", 1, "box-new").status_code == 200
    assert fleet.enroll(token, "hn-site-00", "box-third").status_code == 409  # the allowance was used once
    assert [e.reenrolled for e in fleet.db.enrollments("hn-site-00")] == [False, False, True]


def test_the_served_config_is_the_generated_one_versioned_with_an_etag(fleet: Fleet) -> None:
    site_token = fleet.enroll(fleet.token(), "hn-site-01").json()["token"]
    auth = {"Authorization": f"Bearer {site_token}"}
    first = fleet.client.get("/api/v1/agent-config", headers=auth)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["site"] == "hn-site-01" and first.headers["etag"] == f'"{body["version"]}"' and body["issues"] == []
    assert body["config"]["site"]["id"] == "hn-site-01"
    assert body["config"]["links"][0]["targets"][0]["host"] == "127.0.0.1"
    unchanged = fleet.client.get("/api/v1/agent-config", headers={**auth, "If-None-Match": first.headers["etag"]})
    assert unchanged.status_code == 304 and not unchanged.content
    write_profile(fleet.profile, 9, extra_target=True)
    changed = fleet.client.get("/api/v1/agent-config", headers={**auth, "If-None-Match": first.headers["etag"]})
    assert changed.status_code == 200 and changed.json()["version"] != body["version"]
    assert len(changed.json()["config"]["links"][0]["targets"]) == 2
    assert fleet.client.get("/api/v1/agent-config").status_code == 401


def test_a_config_the_model_refuses_is_served_with_its_issues(fleet: Fleet) -> None:
    site_token = fleet.enroll(fleet.token(), "hn-site-01").json()["token"]
    write_profile(fleet.profile, 9, interval="1s", timeout="5s")
    body = fleet.client.get("/api/v1/agent-config", headers={"Authorization": f"Bearer {site_token}"}).json()
    assert body["issues"] and "longer than the interval" in body["issues"][0]


def test_reports_carry_the_applied_version_and_apply_error_shown_on_the_site(fleet: Fleet) -> None:
    site_token = fleet.enroll(fleet.token(), "hn-site-01").json()["token"]
    assert fleet.report(site_token, "hn-site-01", 1, config_version="abc123").status_code == 200
    agent = fleet.client.get("/api/v1/sites/hn-site-01/agent").json()
    assert agent["config_version"] == "abc123" and agent["config_error"] is None and agent["warnings"] == []
    assert agent["enrollments"][0]["instance"] == "box-1"
    assert fleet.report(site_token, "hn-site-01", 2, config_version="abc123",
                        config_error="config def456: refused").status_code == 200
    agent = fleet.client.get("/api/v1/sites/hn-site-01/agent").json()
    assert agent["config_error"] == "config def456: refused"
    assert [w["kind"] for w in agent["warnings"]] == ["config_apply_error"]
    assert fleet.metric("commune_collector_fleet_config_apply_error", site="hn-site-01") == 1
    states = fleet.db.agent_states()  # persisted: a restarted collector still shows it
    assert states["hn-site-01"].config_error == "config def456: refused"


def test_two_agents_pushing_as_one_site_raise_a_warning_and_the_metric(fleet: Fleet) -> None:
    site_token = fleet.enroll(fleet.token(), "hn-site-01").json()["token"]
    assert fleet.metric("commune_collector_fleet_duplicate_agents", site="hn-site-01") is None
    assert fleet.report(site_token, "hn-site-01", 1, "box-1").status_code == 200
    assert fleet.report(site_token, "hn-site-01", 1, "box-2").status_code == 200
    agent = fleet.client.get("/api/v1/sites/hn-site-01/agent").json()
    assert agent["instances_pushing"] == ["box-1", "box-2"]
    assert [w["kind"] for w in agent["warnings"]] == ["duplicate_agent"]
    assert fleet.metric("commune_collector_fleet_duplicate_agents", site="hn-site-01") == 2
    assert fleet.db.agent_states()["hn-site-01"].other_instance == "box-1"


def test_drift_is_timed_from_the_config_served_until_the_agent_applies_it(fleet: Fleet) -> None:
    site_token = fleet.enroll(fleet.token(), "hn-site-01").json()["token"]
    auth = {"Authorization": f"Bearer {site_token}"}
    assert fleet.report(site_token, "hn-site-01", 1, config_version="old-version").status_code == 200
    assert fleet.metric("commune_collector_fleet_config_drift_seconds", site="hn-site-01") is None, \
        "not drifting before the agent was served anything"
    served = fleet.client.get("/api/v1/agent-config", headers=auth).json()["version"]
    drift = fleet.metric("commune_collector_fleet_config_drift_seconds", site="hn-site-01")
    assert drift is not None and drift >= 0.0
    assert fleet.report(site_token, "hn-site-01", 2, config_version=served).status_code == 200
    assert fleet.metric("commune_collector_fleet_config_drift_seconds", site="hn-site-01") is None


def test_enrollment_tokens_show_uses_left_and_expiry_by_id_never_the_secret(fleet: Fleet) -> None:
    token = fleet.token(max_uses=2)
    token_id = token.split("_")[1]
    assert fleet.enroll(token, "hn-site-01").status_code == 200
    assert fleet.metric("commune_collector_enroll_token_uses_remaining", token=token_id, province="ha-noi") == 1
    assert fleet.metric("commune_collector_enroll_token_uses_max", token=token_id, province="ha-noi") == 2
    expiry = fleet.metric("commune_collector_enroll_token_expiry_timestamp_seconds", token=token_id, province="ha-noi")
    assert expiry is not None and expiry > time.time()
    text = fleet.client.get("/metrics").text
    assert token.split("_", 2)[2] not in text, "the secret part never reaches /metrics"
    assert fleet.db.revoke_enroll_token(token_id, time.time()) == 1
    assert fleet.metric("commune_collector_enroll_token_uses_remaining", token=token_id, province="ha-noi") is None


def test_reports_without_fleet_fields_are_the_bytes_an_older_collector_expects() -> None:
    report = Report(site="s", instance="i", seq=1, sent_at=1.0, agent_version="v", results=[])
    assert b"config_" not in encode_report(report) and b"wire_version" not in encode_report(report)
    managed = Report(site="s", instance="i", seq=1, sent_at=1.0, agent_version="v", results=[], config_version="x")
    assert b'"config_version":"x"' in encode_report(managed)
    assert b"spool" not in encode_report(managed)  # only sent to a collector whose Ack.stores lists it


def test_the_fleet_view_shows_drift_errors_and_enrollment_per_site_and_counts_per_province(
        fleet: Fleet, tmp_path: Path) -> None:
    import csv
    import io
    import json

    from testsupport.collector import collector_cli

    token = fleet.token()
    tokens = {s: fleet.enroll(token, s, f"box-{s}").json()["token"] for s in ("hn-site-00", "hn-site-01")}
    desired = {s: fleet.client.get("/api/v1/agent-config", headers={"Authorization": f"Bearer {t}"}).json()["version"]
               for s, t in tokens.items()}
    acked = fleet.report(tokens["hn-site-00"], "hn-site-00", 1, "box-hn-site-00",
                         config_version=desired["hn-site-00"], spool=SpoolState(12, 2100.0, 1, 40))
    assert acked.status_code == 200 and acked.json()["stores"] == ["spool"]  # newer agents send their backlog
    assert fleet.report(tokens["hn-site-01"], "hn-site-01", 1, "box-hn-site-01", config_version="old",
                        config_error="config x: refused").status_code == 200
    view = fleet.client.get("/api/v1/fleet", params={"province": "ha-noi"}).json()
    rows = {r["site"]: r for r in view["sites"]}
    assert set(rows) == {"hn-site-00", "hn-site-01", "hn-site-02"}
    assert rows["hn-site-00"]["on_desired"] and rows["hn-site-00"]["enroll_token"] == token.split("_")[1]
    assert not rows["hn-site-01"]["on_desired"] and rows["hn-site-01"]["config_error"] == "config x: refused"
    assert rows["hn-site-02"]["enrolled_at"] is None and not rows["hn-site-02"]["reporting"]
    assert (rows["hn-site-00"]["spool_reports"], rows["hn-site-00"]["spool_oldest_age_s"],
            rows["hn-site-00"]["spool_dropped_reports"], rows["hn-site-00"]["spool_dropped_results"]) == (12, 2100, 1, 40)
    assert rows["hn-site-01"]["spool_reports"] is None  # its report did not say (an older agent)
    counts = view["provinces"]["ha-noi"]
    assert (counts["with_backlog"], counts["with_drops"]) == (1, 1)

    # the same rows on the status page, for the province's operators
    page = fleet.client.get("/p/ha-noi/fleet").text
    rows_html = dict(re.findall(r'data-site="([^"]+)" data-config="([^"]+)"', page))
    assert rows_html == {"hn-site-00": "ok", "hn-site-01": "error", "hn-site-02": "none"}
    assert page.index('data-site="hn-site-01"') < page.index('data-site="hn-site-00"')  # the worst first
    assert "12 báo cáo, cũ nhất" in page and "đã bỏ 40 kết quả" in page and "Bị từ chối" in page
    assert "<h1>Thiết bị đo của Hà Nội</h1>" in page  # its own title key: the national page keeps "fleet_title"
    assert "12 reports, oldest" in fleet.client.get("/p/ha-noi/fleet", params={"lang": "en"}).text
    hue = operator_headers(fleet.state.store, "province", "hue")
    assert fleet.client.get("/p/ha-noi/fleet", headers=hue).status_code == 404  # another province: absent
    assert fleet.client.get("/p/hue/fleet", headers=hue).status_code == 200
    assert (counts["sites"], counts["enrolled"], counts["reporting"], counts["on_desired_config"],
            counts["config_errors"], counts["agent_versions"]) == (3, 2, 2, 1, 1, {"test": 2})

    config = tmp_path / "collector.yaml"
    config.write_text(json.dumps({"data_dir": str(tmp_path), "fleet": {"profile": str(fleet.profile)}}))
    out = collector_cli(config, "fleet", "--format", "csv").stdout
    by_site = {r["site"]: r for r in csv.DictReader(io.StringIO(out))}
    assert by_site["hn-site-00"]["on_desired"] == "True" and by_site["hue-thuan-hoa"]["enrolled_at"] == ""
    assert json.loads(collector_cli(config, "fleet", "--format", "json").stdout)["provinces"]["hue"]["sites"] == 1
    table = collector_cli(config, "fleet", "--province", "ha-noi")
    assert "drift" in table.stdout and "error: config x: refused" in table.stdout and "UTC+7" in table.stdout
    assert "12 / 35m" in table.stdout and "dropped 40 results" in table.stdout
    assert "3 sites, 2 enrolled, 2 reporting, 1 on the desired config" in table.stderr


def test_a_rollout_through_the_api_national_operators_write_others_watch(fleet: Fleet) -> None:
    from commune_collector.fleet.rollout import is_canary
    from tests.fleet_support import loopback_profile

    store = fleet.state.store
    province = operator_headers(store, "province", "ha-noi")
    auditor = operator_headers(store, "auditor")
    body = {"profile": loopback_profile(9, extra_target=True), "name": "candidate.yaml", "percent": 100,
            "provinces": ["hue"]}
    assert fleet.client.post("/api/v1/rollouts", json=body, headers=province).status_code == 403
    assert fleet.client.post("/api/v1/rollouts", json=body, headers=auditor).status_code == 403
    bad = fleet.client.post("/api/v1/rollouts", json={**body, "profile": "links: [1"})
    assert bad.status_code == 422 and "candidate.yaml:1" in bad.json()["detail"], bad.text
    unknown = fleet.client.post("/api/v1/rollouts", json={**body, "provinces": ["atlantis"]})
    assert unknown.status_code == 422 and "atlantis" in unknown.text

    before = {s.id: fleet.client.get(f"/api/v1/sites/{s.id}/agent").json()["desired_config_version"] for s in SITES}
    started = fleet.client.post("/api/v1/rollouts", json=body)
    assert started.status_code == 201, started.text
    rollout = started.json()
    assert rollout["adoption"] == {"touched": 4, "canaries": 1, "canaries_on_new": 0, "canaries_on_old": 0,
                                   "others_on_old": 0, "others_on_new": 0, "apply_errors": 0}
    assert started.headers["location"] == f"/api/v1/rollouts/{rollout['id']}"
    after = {s.id: fleet.client.get(f"/api/v1/sites/{s.id}/agent").json()["desired_config_version"] for s in SITES}
    assert {s for s in after if after[s] != before[s]} == {"hue-thuan-hoa"}  # served at once on this replica
    assert all(is_canary(s.id, s.province, 100, ("hue",)) == (s.id == "hue-thuan-hoa") for s in SITES)
    assert fleet.client.post("/api/v1/rollouts", json=body).status_code == 409  # one open rollout at a time
    watched = fleet.client.get(f"/api/v1/rollouts/{rollout['id']}", headers=province)
    assert watched.status_code == 200 and watched.json()["state"] == "running"
    assert fleet.client.post(f"/api/v1/rollouts/{rollout['id']}/rollback", json={}, headers=province
                             ).status_code == 403
    rolled = fleet.client.post(f"/api/v1/rollouts/{rollout['id']}/rollback", json={"reason": "not yet"})
    assert rolled.status_code == 200 and rolled.json()["state"] == "rolled_back"
    assert fleet.client.post(f"/api/v1/rollouts/{rollout['id']}/rollback", json={}).status_code == 409
    assert fleet.client.get("/api/v1/rollouts/ro-00000000").status_code == 404
    back = {s.id: fleet.client.get(f"/api/v1/sites/{s.id}/agent").json()["desired_config_version"] for s in SITES}
    assert back == before
    assert fleet.metric("commune_collector_rollout_state", rollout=rollout["id"], state="rolled_back") == 1.0
    assert [r["id"] for r in fleet.client.get("/api/v1/rollouts").json()["items"]] == [rollout["id"]]
