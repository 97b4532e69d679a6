"""A token does not outlive its site: removing a site revokes its tokens, and ingest refuses unknown sites.

Against a real ``commune-collector serve``: a province's smaller inventory
imported with ``sites import --remove-missing`` (a commune merged away) and
``sites remove`` revoke the removed sites' tokens, and their agents' reports
are refused with a 403 problem naming the site, while the other sites go on
reporting. A live token whose site is missing from the inventory by any other
way (deleted under the collector) is refused too: ingest checks the site, not
only the token.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import httpx
import pytest

from commune_collector.inventory import sites_to_csv
from commune_collector.sites import Site
from commune_common.wire import encode_report
from testsupport.collector import CollectorPeer, make_report

BA_DINH = Site("hn-ba-dinh", "Trung tâm Phục vụ hành chính công Phường Ba Đình", "ha-noi", "Phường Ba Đình")
HOAN_KIEM = Site("hn-hoan-kiem", "Trung tâm Phục vụ hành chính công Phường Hoàn Kiếm", "ha-noi", "Phường Hoàn Kiếm")
TAY_HO = Site("hn-tay-ho", "Trung tâm Phục vụ hành chính công Phường Tây Hồ", "ha-noi", "Phường Tây Hồ")
THUAN_HOA = Site("hue-thuan-hoa", "Trung tâm Phục vụ hành chính công Phường Thuận Hóa", "hue", "Phường Thuận Hóa")
SITES = [BA_DINH, HOAN_KIEM, TAY_HO, THUAN_HOA]


@pytest.fixture
def collector() -> Iterator[CollectorPeer]:
    with CollectorPeer(sites=SITES, settings={"auth": {"cache_ttl": "0s"}}) as peer:
        peer.tokens = {s.id: peer.issue_token(s.id) for s in SITES}  # type: ignore[attr-defined]
        yield peer


def _push(collector: CollectorPeer, site: str, seq: int) -> httpx.Response:
    return httpx.post(f"{collector.url}/api/v1/reports", content=encode_report(make_report(site, seq)), timeout=30,
                      headers={"Authorization": f"Bearer {collector.tokens[site]}",  # type: ignore[attr-defined]
                               "Content-Type": "application/json"})


def _assert_refused(response: httpx.Response, site: str) -> None:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert site in problem["detail"] and "inventory" in problem["detail"]
    assert problem["errors"][0]["field"] == "site" and site in problem["errors"][0]["message"]


def test_a_smaller_inventory_removes_the_missing_communes_and_revokes_their_tokens(collector: CollectorPeer) -> None:
    for site in SITES:
        assert _push(collector, site.id, 1).status_code == 200
    smaller = collector.dir / "ha-noi.csv"
    smaller.write_text(sites_to_csv([BA_DINH]), encoding="utf-8")  # Hoàn Kiếm and Tây Hồ merged away
    dry = collector.cli("sites", "import", str(smaller), "--remove-missing", "--dry-run")
    assert "removed" not in dry.stdout
    assert _push(collector, HOAN_KIEM.id, 2).status_code == 200

    result = collector.cli("sites", "import", str(smaller), "--remove-missing")
    assert "removed 2 sites" in result.stdout and "2 token(s) revoked" in result.stdout, result.stdout
    for gone in (HOAN_KIEM, TAY_HO):
        _assert_refused(_push(collector, gone.id, 3), gone.id)
        assert httpx.get(f"{collector.url}/api/v1/sites/{gone.id}", timeout=10, headers=collector.headers).status_code == 404
    tokens = collector.cli("token", "list").stdout
    assert [" revoked " in line for line in tokens.splitlines() if HOAN_KIEM.id in line] == [True]
    # the file's province only: Huế, not in the file, keeps its site; Ba Đình goes on reporting
    assert _push(collector, THUAN_HOA.id, 2).status_code == 200
    assert _push(collector, BA_DINH.id, 2).status_code == 200
    assert httpx.get(f"{collector.url}/api/v1/sites/{HOAN_KIEM.id}", timeout=10, headers=collector.headers).status_code == 404
    # without --remove-missing an import never removes anything
    collector.cli("sites", "import", str(smaller))
    assert httpx.get(f"{collector.url}/api/v1/sites/{THUAN_HOA.id}", timeout=10, headers=collector.headers).status_code == 200


def test_sites_remove_revokes_and_refuses(collector: CollectorPeer) -> None:
    assert _push(collector, THUAN_HOA.id, 1).status_code == 200
    result = collector.cli("sites", "remove", THUAN_HOA.id)
    assert "removed 1 site(s); 1 token(s) revoked" in result.stdout, result.stdout
    _assert_refused(_push(collector, THUAN_HOA.id, 2), THUAN_HOA.id)
    unknown = collector.cli("sites", "remove", "no-such-site", check=False)
    assert unknown.returncode == 1 and "no-such-site" in unknown.stderr
    # a removed site can come back with a new inventory and a new token
    back = collector.dir / "hue.csv"
    back.write_text(sites_to_csv([THUAN_HOA]), encoding="utf-8")
    collector.cli("sites", "import", str(back))
    assert _push(collector, THUAN_HOA.id, 3).status_code == 401  # its old token stays revoked
    collector.tokens[THUAN_HOA.id] = collector.issue_token(THUAN_HOA.id)  # type: ignore[attr-defined]
    assert _push(collector, THUAN_HOA.id, 3).status_code == 200


def test_a_live_token_of_a_site_missing_from_the_inventory_is_refused(collector: CollectorPeer) -> None:
    """Whatever took the site out (here: deleted under the collector), ingest checks the inventory."""
    assert _push(collector, TAY_HO.id, 1).status_code == 200
    with sqlite3.connect(collector.data_dir / "collector.db") as db:
        db.execute("DELETE FROM sites WHERE id = ?", (TAY_HO.id,))
        assert db.execute("SELECT revoked_at FROM tokens WHERE site = ?", (TAY_HO.id,)).fetchall() == [(None,)]
    _assert_refused(_push(collector, TAY_HO.id, 2), TAY_HO.id)
    metrics = httpx.get(f"{collector.url}/metrics", timeout=10, headers=collector.headers).text
    assert 'commune_collector_ingest_rejected_requests_total{reason="forbidden"} 1.0' in metrics
