"""The verdict API, /metrics and ``commune-collector report``, over a real collector app and store.

Reports go in through ``POST /api/v1/reports`` with real tokens, the real
aggregator folds them, the app's own judge judges them; the documents the
status page, Alertmanager and the meeting's spreadsheet read are checked
field by field, and so is every 4xx.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from commune_collector.aggregator import fold_journal
from commune_collector.auth import new_token
from commune_collector.judge import Judge, MemoryVerdictStore
from commune_collector.runtime.app import create_app
from commune_collector.runtime.judge_process import STANDBY_REASON
from commune_collector.settings import CollectorSettings
from commune_collector.sites import Site
from commune_common.wire import Report, encode_report
from testsupport.access import operator_headers
from testsupport.judge import H, short_criteria_yaml
from testsupport.judge import ScriptedSite as Scripted

SITES = [Site("hn-ba-dinh", "Trung tâm Phục vụ hành chính công Phường Ba Đình", "ha-noi", "Phường Ba Đình"),
         Site("hn-hoan-kiem", "Trung tâm Phục vụ hành chính công Phường Hoàn Kiếm", "ha-noi", "Phường Hoàn Kiếm"),
         Site("hue-thuan-hoa", "Trung tâm Phục vụ hành chính công Phường Thuận Hóa", "hue", "Phường Thuận Hóa")]
SCRIPTS = [Scripted("hn-ba-dinh", province="ha-noi"),
           Scripted("hn-hoan-kiem", province="ha-noi", primary_loss=lambda ts: 0.12),
           Scripted("hue-thuan-hoa", province="hue")]


def write_settings(tmp_path: Path, **judge: Any) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    criteria = tmp_path / "criteria.yaml"
    criteria.write_text(short_criteria_yaml(stable="0s"), encoding="utf-8")
    settings = {"data_dir": str(tmp_path / "data"), "auth": {"cache_ttl": "0s"},
                "aggregator": {"interval": "1h"},
                "judge": {"criteria_file": str(criteria), "interval": "1h", "process": False, **judge}}
    path = tmp_path / "collector.yaml"
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return path


class Running:
    """A collector app in process with its judge; ``push`` sends a scripted site's last hour."""

    def __init__(self, client: TestClient, app: Any):
        self.client = client
        self.state = app.state.collector
        client.headers.update(operator_headers(self.state.store))  # reads need an operator (collector.access)
        self.seq = 0

    def push(self, script: Scripted, start: float, end: float) -> None:
        text, record = new_token(script.id)
        self.state.store.add_token(record)
        results = script.script().rounds(start, end)
        self.seq += 1
        report = Report(site=script.id, instance="inst", seq=self.seq, sent_at=time.time(), agent_version="t",
                        results=results)
        response = self.client.post("/api/v1/reports", content=encode_report(report),
                                    headers={"Authorization": f"Bearer {text}", "Content-Type": "application/json"})
        assert response.status_code == 200, response.text

    def judge(self) -> None:
        fold_journal(self.state.store)
        self.state.judge.run_pass()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    settings = CollectorSettings.model_validate(yaml.safe_load(write_settings(tmp_path).read_text()))
    app = create_app(settings)
    with TestClient(app) as client:
        app.state.collector.store.upsert_sites(SITES)
        run = Running(client, app)
        now = time.time()
        for script in SCRIPTS[:2]:  # the Huế site's agent never reports
            run.push(script, now - 1.5 * H, now)
        run.judge()
        yield run


def test_verdicts_list_filter_and_one_site(running: Running) -> None:
    client = running.client
    page = client.get("/api/v1/verdicts").json()
    assert page["total"] == 3 and [v["site"] for v in page["items"]] == sorted(s.id for s in SITES)
    states = {v["site"]: v["state"] for v in page["items"]}
    assert states == {"hn-ba-dinh": "completed", "hn-hoan-kiem": "not_completed", "hue-thuan-hoa": "unknown"}
    failing = client.get("/api/v1/verdicts", params={"state": "not_completed"}).json()
    assert [v["site"] for v in failing["items"]] == ["hn-hoan-kiem"]
    assert client.get("/api/v1/verdicts", params={"province": "hue"}).json()["total"] == 1
    by_item = client.get("/api/v1/verdicts", params={"item": "power", "state": "completed"}).json()
    assert [v["site"] for v in by_item["items"]] == ["hn-ba-dinh", "hn-hoan-kiem"]
    paged = client.get("/api/v1/verdicts", params={"limit": 1, "offset": 1}).json()
    assert (paged["total"], [v["site"] for v in paged["items"]]) == (3, ["hn-hoan-kiem"])
    verdict = client.get("/api/v1/verdicts/hn-hoan-kiem").json()
    assert verdict["name"].endswith("Hoàn Kiếm") and verdict["province"] == "ha-noi"
    loss = next(c for c in verdict["criteria"] if c["id"] == "primary-loss")
    assert loss["met"] is False and loss["value"] == pytest.approx(0.12)
    assert loss["reason"] == "loss 12% over 1h, threshold < 1%"
    assert (loss["threshold"], loss["op"], loss["unit"], loss["window_s"]) == (0.01, "<", "ratio", 3600.0)
    assert loss["checks"] == ["link/fiber/icmp/provincial-dc"] and loss["evidence_ts"] > time.time() - 600
    assert verdict["items"] == {"network": "not_completed", "power": "completed"}
    assert verdict["connectivity"] == "primary"


def test_verdict_errors(running: Running) -> None:
    client = running.client
    missing = client.get("/api/v1/verdicts/no-such-site")
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    assert "no-such-site" in missing.json()["detail"]
    bad_item = client.get("/api/v1/verdicts", params={"item": "hotline", "state": "completed"})
    assert bad_item.status_code == 422 and bad_item.json()["errors"][0]["field"] == "item"
    assert client.get("/api/v1/verdicts", params={"state": "done"}).status_code == 422
    assert client.get("/api/v1/verdicts", params={"limit": 0}).status_code == 422
    assert client.get("/api/v1/verdicts/Bad%20Site").status_code == 422
    assert client.get("/api/v1/provinces/atlantis").status_code == 404
    assert client.get("/api/v1/history", params={"province": "atlantis"}).status_code == 404
    assert client.get("/api/v1/history", params={"days": 0}).status_code == 422


def test_provinces_and_national_table(running: Running) -> None:
    doc = running.client.get("/api/v1/provinces").json()
    assert [i["id"] for i in doc["items"]] == ["network", "power"]
    assert doc["items"][1]["title"] == {"en": "Power", "vi": "Nguồn điện"}
    assert len(doc["provinces"]) == 34 and doc["national"]["provinces_total"] == 34
    hanoi = next(p for p in doc["provinces"] if p["slug"] == "ha-noi")
    assert (hanoi["name"], hanoi["total"], hanoi["completed"], hanoi["not_completed"]) == ("Hà Nội", 2, 1, 1)
    power = hanoi["per_item"]["power"]
    assert {k: power[k] for k in ("completed", "total", "share", "done")} == {
        "completed": 2, "total": 2, "share": 1.0, "done": True}
    assert power["status_counts"]["completed"] == 2 and sum(power["status_counts"].values()) == 2
    assert hanoi["status_counts"]["completed"] == 1 and hanoi["status_counts"]["not_completed"] == 1
    assert sum(doc["national"]["status_counts"].values()) == doc["national"]["sites_total"]
    assert hanoi["done_items"] == ["power"]
    assert doc["national"]["per_item"]["power"]["label"] == "1/34"
    assert doc["national"]["per_item"]["network"]["label"] == "0/34"
    detail = running.client.get("/api/v1/provinces/ha-noi").json()
    communes = {c["site"]: c for c in detail["communes"]}
    assert communes["hn-ba-dinh"]["failing"] == []
    assert [(f["id"], f["reason"]) for f in communes["hn-hoan-kiem"]["failing"]] == [
        ("primary-loss", "loss 12% over 1h, threshold < 1%")]
    hue = running.client.get("/api/v1/provinces/hue").json()
    silent = hue["communes"][0]
    assert (silent["status"], silent["state"], silent["failing"]) == ("never_reported", "unknown", []), \
        "a site that never reported is one fact, not a list of every criterion"
    verdict = running.client.get(f"/api/v1/verdicts/{silent['site']}").json()
    assert {c["reason_code"] for c in verdict["criteria"]} <= {"never_reported", "no_check", "no_evidence"}


def test_history_and_metrics(running: Running) -> None:
    history = running.client.get("/api/v1/history").json()
    assert history["deadline"] is None and len(history["series"]) == 1
    point = history["series"][0]
    assert (point["completed"], point["not_completed"], point["unknown"], point["total"]) == (1, 1, 1, 3)
    assert point["provinces_done"] == {"network": 0, "power": 1}
    hanoi = running.client.get("/api/v1/history", params={"province": "ha-noi"}).json()
    assert hanoi["series"][0]["provinces_done"] == {"network": 0, "power": 1}
    text = running.client.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    verdicts = {(s.labels["site"], s.labels["state"]) for s in families["commune_site_verdict"].samples}
    assert ("hn-hoan-kiem", "not_completed") in verdicts and ("hue-thuan-hoa", "unknown") in verdicts
    done = {s.labels["item"]: s.value for s in families["commune_national_provinces_done"].samples}
    assert done == {"network": 0.0, "power": 1.0}
    assert "commune_site_regressions" in families and "commune_judge_pass_duration_seconds" in families


def test_openapi_documents_the_verdict_routes(running: Running) -> None:
    paths = running.client.get("/openapi.json").json()["paths"]
    for path in ("/api/v1/verdicts", "/api/v1/verdicts/{site}", "/api/v1/provinces", "/api/v1/provinces/{slug}",
                 "/api/v1/history"):
        assert "get" in paths[path], path


def test_503_without_a_judge_or_before_its_first_pass(tmp_path: Path) -> None:
    settings = CollectorSettings.model_validate(yaml.safe_load(write_settings(tmp_path, enabled=False).read_text()))
    app = create_app(settings)
    with TestClient(app) as client:
        client.headers.update(operator_headers(app.state.collector.store))
        response = client.get("/api/v1/provinces")
        assert response.status_code == 503 and "runs no judge" in response.json()["detail"]
    settings = CollectorSettings.model_validate(yaml.safe_load(write_settings(tmp_path / "b").read_text()))
    app = create_app(settings)
    with TestClient(app) as client:
        state = app.state.collector
        client.headers.update(operator_headers(state.store))
        state.judge = Judge(state.judge.config, state.judge.source, MemoryVerdictStore())  # has not passed yet
        response = client.get("/api/v1/verdicts")
        assert response.status_code == 503 and response.headers["retry-after"] == "30"
        assert "first pass" in response.json()["detail"]
        state.judge.standby = STANDBY_REASON  # what a JudgeProxy says while another replica judges
        response = client.get("/api/v1/verdicts/hn-ba-dinh")
        assert response.status_code == 503 and response.json()["detail"] == STANDBY_REASON


def test_a_broken_criteria_file_stops_the_collector_config(tmp_path: Path) -> None:
    bad = tmp_path / "criteria.yaml"
    bad.write_text(short_criteria_yaml().replace("availability(1h) >= 99%", "availability(1h) >= 99ms"))
    path = tmp_path / "collector.yaml"
    path.write_text(yaml.safe_dump({"judge": {"criteria_file": str(bad)}}))
    result = subprocess.run([sys.executable, "-m", "commune_collector.cli", "check-config", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "judge.criteria_file" in result.stderr and "unit mismatch" in result.stderr


# -- commune-collector report -----------------------------------------------------------------


@pytest.fixture
def stored(running: Running, tmp_path: Path) -> Path:
    """The running fixture's data, for the CLI (its app has written everything by now)."""
    return tmp_path / "collector.yaml"


def report(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "commune_collector.cli", "report", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=120)


def test_report_national_table_csv_json(stored: Path) -> None:
    table = report(stored, "--lang", "en")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith("As of ") and lines[0].endswith("(Vietnam time, UTC+7)")
    assert lines[2].split()[:4] == ["Readiness", "item", "Provinces", "done"]
    assert [line.split()[-10:-5] for line in lines[4:7]] == [["0", "34", "1", "3", "33.3%"],
                                                              ["1", "34", "2", "3", "66.6%"],
                                                              ["0", "34", "1", "3", "33.3%"]]
    vi_table = report(stored).stdout.splitlines()
    assert vi_table[0].startswith("Số liệu lúc ") and "Hạng mục" in vi_table[2], "Vietnamese by default"
    rows = list(csv.reader(io.StringIO(report(stored, "--format", "csv").stdout)))
    assert rows[0][:6] == ["Hạng mục", "Số tỉnh hoàn thành", "Tổng số tỉnh", "Số xã hoàn thành", "Tổng số xã",
                           "Tỉ lệ hoàn thành"] and rows[0][-1] == "as_of"
    assert rows[2][:6] == ["Nguồn điện", "1", "34", "2", "3", "0.666667"]
    assert rows[2][-1].endswith("+07:00"), "times in CSV carry their offset"
    doc = json.loads(report(stored, "--format", "json").stdout)
    assert doc["national"]["per_item"]["power"]["label"] == "1/34"


def test_report_one_province_with_reasons(stored: Path) -> None:
    rows = list(csv.reader(io.StringIO(report(stored, "--province", "ha-noi", "--format", "csv",
                                              "--lang", "en").stdout)))
    assert rows[0][:3] == ["Site", "Commune", "Status"] and rows[0][3] == "Since (Vietnam time, UTC+7)"
    by_site = {r[0]: r for r in rows[1:]}
    assert by_site["hn-hoan-kiem"][1:3] == ["Phường Hoàn Kiếm", "Not completed"]
    assert by_site["hn-hoan-kiem"][5] == "loss 12% over 1h, threshold < 1%"
    assert by_site["hn-hoan-kiem"][3].endswith("+07:00")
    assert by_site["hn-ba-dinh"][5] == ""
    vi = list(csv.reader(io.StringIO(report(stored, "--province", "ha-noi", "--format", "csv").stdout)))
    assert {r[0]: r for r in vi[1:]}["hn-hoan-kiem"][2] == "Chưa hoàn thành"
    missing = report(stored, "--province", "atlantis")
    assert missing.returncode == 1 and "no province 'atlantis'" in missing.stderr


def test_report_xlsx_cells_are_numbers_and_dates(stored: Path, tmp_path: Path) -> None:
    from datetime import datetime

    from openpyxl import load_workbook

    assert report(stored, "--format", "xlsx").returncode == 2, "xlsx needs --output"
    out = tmp_path / "readiness.xlsx"
    result = report(stored, "--format", "xlsx", "--output", str(out), "--sheet-per-province")
    assert result.returncode == 0, result.stderr
    book = load_workbook(out)
    assert book.sheetnames == ["Toàn quốc", "Các tỉnh", "Hà Nội", "Huế"], "names in Vietnamese, a sheet a province"
    national = book["Toàn quốc"]
    assert str(national["A1"].value).startswith("Số liệu lúc ") and "UTC+7" in national["A1"].value
    assert [c.value for c in national[2]][:3] == ["Hạng mục", "Số tỉnh hoàn thành", "Tổng số tỉnh"]
    first = [c for c in national[3]]
    assert first[0].value == "Mạng" and (first[1].value, first[2].value, first[3].value) == (0, 34, 1)
    assert all(isinstance(c.value, int) for c in first[1:5]), "counts are numbers, not text"
    assert isinstance(first[5].value, float) and first[5].number_format == "0.0%"
    assert first[5].value == pytest.approx(1 / 3)
    assert national.column_dimensions["A"].width >= len("Tất cả tiêu chí (tổng)")
    provinces = book["Các tỉnh"]
    hanoi = next(row for row in provinces.iter_rows(min_row=3) if row[0].value == "Hà Nội")
    assert (hanoi[1].value, hanoi[2].value) == (2, 1) and hanoi[1].number_format == "#,##0"
    communes = book["Hà Nội"]
    since = [row[3] for row in communes.iter_rows(min_row=3)]
    assert all(isinstance(c.value, datetime) and c.number_format == "dd/mm/yyyy hh:mm" for c in since)
    assert communes["D2"].value == "Từ lúc (giờ Việt Nam, UTC+7)"
    english = report(stored, "--format", "xlsx", "--output", str(tmp_path / "en.xlsx"), "--lang", "en")
    assert english.returncode == 0 and load_workbook(tmp_path / "en.xlsx").sheetnames == ["National", "Provinces"]


def test_report_from_a_running_collector(tmp_path: Path) -> None:
    """`report --url` asks a real `commune-collector serve` process for its verdicts."""
    import httpx

    from testsupport.collector import CollectorPeer
    from testsupport.peers._base import wait_until

    criteria = tmp_path / "criteria.yaml"
    criteria.write_text(short_criteria_yaml(stable="0s"), encoding="utf-8")
    settings = {"aggregator": {"interval": "1s"}, "judge": {"criteria_file": str(criteria), "interval": "1s"}}
    with CollectorPeer(sites=SITES[:1], settings=settings) as collector:
        token = collector.issue_token("hn-ba-dinh")
        now = time.time()
        report_body = Report(site="hn-ba-dinh", instance="inst", seq=1, sent_at=now, agent_version="t",
                             results=SCRIPTS[0].script().rounds(now - 1.5 * H, now))
        response = httpx.post(f"{collector.url}/api/v1/reports", content=encode_report(report_body), timeout=30,
                              headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        assert response.status_code == 200, response.text
        wait_until(lambda: httpx.get(f"{collector.url}/api/v1/verdicts/hn-ba-dinh", timeout=5,
                                     headers=collector.headers).json().get("state")
                   == "completed", timeout=60, what="the site to be judged completed")
        result = subprocess.run([sys.executable, "-m", "commune_collector.cli", "report", "--url", collector.url,
                                 "--province", "ha-noi", "--format", "json"], capture_output=True, text=True,
                                timeout=60, env={**os.environ, "COMMUNE_OPERATOR_TOKEN": collector.operator_token})
        assert result.returncode == 0, result.stderr
        doc = json.loads(result.stdout)
        assert [(c["site"], c["state"]) for c in doc["communes"]] == [("hn-ba-dinh", "completed")]
        operator = {**os.environ, "COMMUNE_OPERATOR_TOKEN": collector.operator_token}
        missing = subprocess.run([sys.executable, "-m", "commune_collector.cli", "report", "--url", collector.url,
                                  "--province", "atlantis"], capture_output=True, text=True, timeout=60, env=operator)
        assert missing.returncode == 1 and "404" in missing.stderr
        anonymous = {k: v for k, v in os.environ.items() if k != "COMMUNE_OPERATOR_TOKEN"}
        refused = subprocess.run([sys.executable, "-m", "commune_collector.cli", "report", "--url", collector.url],
                                 capture_output=True, text=True, timeout=60, env=anonymous)
        assert refused.returncode == 1 and "401" in refused.stderr
