"""Maintenance windows through the API and the CLI, on a real store (SQLite here; PostgreSQL in
test_collector_postgres.py): who may declare what, what is refused and why, what history keeps.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from commune_collector.cli import main as cli
from commune_collector.runtime.app import create_app
from commune_collector.settings import CollectorSettings
from commune_collector.sites import Site
from testsupport.access import operator_headers, operator_token

ICT = timezone(timedelta(hours=7))
SITES = [Site(f"ha-noi-{i:02d}", f"Trung tâm {i}", "ha-noi", f"Xã {i}") for i in range(4)]
SITES += [Site("hue-thuan-hoa", "Trung tâm Thuận Hóa", "hue", "Phường Thuận Hóa", upstream="agg-hue-1"),
          Site("hue-phong-dien", "Trung tâm Phong Điền", "hue", "Xã Phong Điền", upstream="agg-hue-1")]


def iso(delta_h: float) -> str:
    return (datetime.now(ICT) + timedelta(hours=delta_h)).isoformat(timespec="seconds")


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[TestClient, Any]]:
    settings = CollectorSettings.model_validate({"data_dir": str(tmp_path), "auth": {"cache_ttl": "0s"},
                                                 "aggregator": {"interval": "1h"}})
    with TestClient(create_app(settings)) as client:
        store = client.app.state.collector.store
        store.upsert_sites(SITES)
        yield client, store


def body(**overrides: Any) -> dict[str, Any]:
    return {"covers": {"kind": "sites", "sites": ["ha-noi-01"]}, "starts_at": iso(1), "ends_at": iso(3),
            "reason": "EVN cắt điện theo lịch", **overrides}


def sites(*ids: str) -> dict[str, Any]:
    return {"kind": "sites", "sites": list(ids)}


def province(slug: str) -> dict[str, Any]:
    return {"kind": "province", "province": slug}


def test_a_national_operator_declares_lists_and_cancels(api) -> None:
    client, store = api
    national = operator_headers(store)
    created = client.post("/api/v1/maintenance", json=body(), headers=national)
    assert created.status_code == 201, created.text
    window = created.json()
    assert window["id"].startswith("mw-") and created.headers["location"] == f"/api/v1/maintenance/{window['id']}"
    assert window["sites"] == ["ha-noi-01"] and window["provinces"] == ["ha-noi"]
    assert window["created_by"] == "tests" and window["active"] is False
    listed = client.get("/api/v1/maintenance", headers=national).json()["items"]
    assert [w["id"] for w in listed] == [window["id"]]
    cancelled = client.post(f"/api/v1/maintenance/{window['id']}/cancel", json={"note": "xong sớm"},
                            headers=national)
    assert cancelled.status_code == 200 and cancelled.json()["cancelled_by"] == "tests"
    assert cancelled.json()["cancel_note"] == "xong sớm"
    assert client.get("/api/v1/maintenance", headers=national).json()["items"] == []
    past = client.get("/api/v1/maintenance?show=past", headers=national).json()["items"]
    assert [w["id"] for w in past] == [window["id"]], "history keeps a cancelled window"
    again = client.post(f"/api/v1/maintenance/{window['id']}/cancel", json={}, headers=national)
    assert again.status_code == 409


def test_a_province_operator_manages_only_its_province(api) -> None:
    client, store = api
    hanoi = operator_headers(store, "province", "ha-noi")
    assert client.post("/api/v1/maintenance", json=body(covers=province("ha-noi")),
                       headers=hanoi).status_code == 201
    refused = client.post("/api/v1/maintenance", json=body(covers=sites("ha-noi-01", "hue-thuan-hoa")), headers=hanoi)
    assert refused.status_code == 403 and "hue" in refused.json()["detail"]
    theirs = client.post("/api/v1/maintenance", json=body(covers=sites("hue-thuan-hoa")),
                         headers=operator_headers(store)).json()
    assert client.get(f"/api/v1/maintenance/{theirs['id']}", headers=hanoi).status_code == 404
    assert client.post(f"/api/v1/maintenance/{theirs['id']}/cancel", json={}, headers=hanoi).status_code == 404
    assert [w["scope"] for w in client.get("/api/v1/maintenance", headers=hanoi).json()["items"]] == ["province"]
    auditor = operator_headers(store, "auditor")
    assert client.post("/api/v1/maintenance", json=body(), headers=auditor).status_code == 403
    assert len(client.get("/api/v1/maintenance", headers=auditor).json()["items"]) == 2


def test_an_upstream_group_window_covers_the_communes_behind_it(api) -> None:
    client, store = api
    response = client.post("/api/v1/maintenance", json=body(covers={"kind": "group", "group": "agg-hue-1"}),
                           headers=operator_headers(store, "province", "hue"))
    assert response.status_code == 201, response.text
    assert response.json()["sites"] == ["hue-phong-dien", "hue-thuan-hoa"]
    assert response.json()["provinces"] == ["hue"]
    assert client.get("/api/v1/sites/hue-thuan-hoa", headers=operator_headers(store)).json()["upstream"] == \
        "agg-hue-1"


@pytest.mark.parametrize(("overrides", "field", "words"), [
    ({"covers": sites("ha-noi-1")}, "targets", "did you mean"),
    ({"covers": {"kind": "group", "group": "agg-hue-2"}}, "targets", "did you mean agg-hue-1"),
    ({"starts_at": iso(-3), "ends_at": iso(1)}, "starts_at", "60 minutes ago"),
    ({"ends_at": iso(0.5)}, "ends_at", "after the start"),
    ({"ends_at": iso(24 * 40)}, "ends_at", "31 days"),
    ({"repeat": {"every": "day", "until": iso(0.5)}}, "until", "after the first start"),
    ({"repeat": {"every": "day", "until": iso(100)}, "ends_at": iso(30)}, "ends_at", "shorter than a day"),
    ({"repeat": {"every": "week", "until": iso(24 * 400)}}, "until", "a year ahead"),
])
def test_a_bad_declaration_is_refused_naming_its_field(api, overrides, field, words) -> None:
    client, store = api
    response = client.post("/api/v1/maintenance", json=body(**overrides), headers=operator_headers(store))
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["errors"][0]["field"] == field and words in problem["detail"]
    assert response.headers["content-type"] == "application/problem+json"
    assert store.list_windows() == [], "nothing stored half-way"


@pytest.mark.parametrize("bad", [
    {"starts_at": "2026-12-06T08:00:00"},  # no zone
    {"covers": {"kind": "sites", "sites": ["ha-noi-01"], "province": "ha-noi"}},
    {"covers": sites("../etc")},
    {"covers": province("ha-nol")},
    {"repeat": {"every": "month", "until": iso(100)}},
    {"repeat": {"every": "day"}},  # a recurring window needs its last date
    {"reason": "   "},
])
def test_a_malformed_body_is_a_422(api, bad) -> None:
    client, store = api
    response = client.post("/api/v1/maintenance", json=body(**bad), headers=operator_headers(store))
    assert response.status_code == 422


def test_a_form_post_is_not_read_as_a_declaration(api) -> None:
    """A cross-site form can send text/plain JSON with the browser's cookie; it must not be accepted."""
    client, store = api
    import json
    token = operator_token(store)
    response = client.post("/api/v1/maintenance", content=json.dumps(body()),
                           headers={"Content-Type": "text/plain"}, cookies={"commune_operator": token})
    assert response.status_code == 422
    assert store.list_windows() == []
    window = client.post("/api/v1/maintenance", json=body(), headers=operator_headers(store)).json()
    form = client.post(f"/api/v1/maintenance/{window['id']}/cancel", content="",
                       headers={"Content-Type": "application/x-www-form-urlencoded"}, cookies={"commune_operator": token})
    assert form.status_code == 422 and store.get_window(window["id"]).cancelled_at is None


def test_the_cli_declares_in_local_time_and_keeps_history(tmp_path: Path, capsys) -> None:
    config = tmp_path / "collector.yaml"
    config.write_text(f"data_dir: {tmp_path}\n")
    inventory = tmp_path / "sites.csv"
    inventory.write_text("id,name,province,commune\n" + "".join(
        f"{s.id},{s.name},{s.province},{s.commune}\n" for s in SITES))
    assert cli(["sites", "import", str(inventory), "--config", str(config)]) == 0
    sites_file = tmp_path / "cut.txt"
    sites_file.write_text("# EVN lịch cắt điện\nha-noi-01\nha-noi-02\n")
    start = (datetime.now(ICT) + timedelta(hours=2)).replace(second=0, microsecond=0)
    end = start + timedelta(hours=3)
    capsys.readouterr()
    assert cli(["maintenance", "add", "--sites-file", str(sites_file), "--from", f"{start:%Y-%m-%d %H:%M}",
                "--to", f"{end:%Y-%m-%d %H:%M}", "--reason", "EVN cắt điện", "--by", "nguyen.van.a",
                "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"{start:%d/%m/%Y %H:%M} +07" in out and "2 communes" in out and "nguyen.van.a" in out
    window_id = out.split(":")[0]
    assert cli(["maintenance", "list", "--config", str(config)]) == 0
    assert window_id in capsys.readouterr().out
    assert cli(["maintenance", "cancel", window_id, "--by", "tran.thi.b", "--note", "hoãn",
                "--config", str(config)]) == 0
    capsys.readouterr()
    assert cli(["maintenance", "show", window_id, "--config", str(config)]) == 0
    shown = capsys.readouterr().out
    assert "cancelled" in shown and "tran.thi.b: hoãn" in shown and "ha-noi-01, ha-noi-02" in shown
    assert cli(["maintenance", "add", "--site", "ha-noi-9", "--from", f"{start:%Y-%m-%d %H:%M}", "--to",
                f"{end:%Y-%m-%d %H:%M}", "--reason", "x", "--config", str(config)]) == 2
    assert "is not in the inventory" in capsys.readouterr().err


def test_the_cli_with_a_province_token_is_scoped(tmp_path: Path, capsys) -> None:
    config = tmp_path / "collector.yaml"
    config.write_text(f"data_dir: {tmp_path}\n")
    import argparse

    from commune_collector.cli.common import open_store_from
    store = open_store_from(argparse.Namespace(config=str(config)))
    store.upsert_sites(SITES)
    token_file = tmp_path / "token"
    token_file.write_text(operator_token(store, "province", "hue", name="hue.operator"))
    store.close()
    args = ["--from", iso(1)[:16].replace("T", " "), "--to", iso(2)[:16].replace("T", " "), "--reason", "x",
            "--token-file", str(token_file), "--config", str(config)]
    assert cli(["maintenance", "add", "--province", "ha-noi", *args]) == 2
    assert "may not declare maintenance in ha-noi" in capsys.readouterr().err
    assert cli(["maintenance", "add", "--province", "hue", *args]) == 0
    assert "declared by hue.operator" in capsys.readouterr().out
