"""Operators' access against a real ``commune-collector serve``: every role and scope, every read family.

One collector with communes in two provinces (Hà Nội and Huế), judged once.
Credentials are made with the CLI (``commune-collector operator create``), as
an administrator would. For each role (national, auditor, province Hà Nội) and
each family of read endpoints (API, pages, exports): without a credential 401;
within scope 200; another province's commune, detail, page, history or export
404 for the province operator; lists hold its province only. Site tokens and
scrapers' tokens read nothing but what they are for; revoked and expired
operator tokens are refused; health stays open; the public view shows counts
and nothing else.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from commune_collector.provinces import provinces
from commune_collector.sites import Site
from testsupport.collector import CollectorPeer
from testsupport.peers._base import wait_until

HN = [Site("ha-noi-ba-dinh", "Trung tâm Phục vụ hành chính công Phường Ba Đình", "ha-noi", "Phường Ba Đình"),
      Site("ha-noi-hoan-kiem", "Trung tâm Phục vụ hành chính công Phường Hoàn Kiếm", "ha-noi", "Phường Hoàn Kiếm")]
HUE = [Site("hue-thuan-hoa", "Trung tâm Phục vụ hành chính công Phường Thuận Hóa", "hue", "Phường Thuận Hóa")]
OWN_SITE, OTHER_SITE = HN[0].id, HUE[0].id
ROLES = ["national", "auditor", "province"]


@dataclass(frozen=True)
class Read:
    """One read endpoint: its path, and whether it addresses the other province (Huế)."""

    path: str
    other_province: bool = False


# every family lists each kind of read it serves, within Hà Nội and addressed to Huế
FAMILIES: dict[str, list[Read]] = {
    "api": [Read("/api/v1/sites"), Read(f"/api/v1/sites/{OWN_SITE}"), Read(f"/api/v1/sites/{OTHER_SITE}", True),
            Read("/api/v1/sites?province=hue", True), Read("/api/v1/verdicts"),
            Read(f"/api/v1/verdicts/{OWN_SITE}"), Read(f"/api/v1/verdicts/{OTHER_SITE}", True),
            Read("/api/v1/verdicts?province=hue", True), Read("/api/v1/provinces"),
            Read("/api/v1/provinces/ha-noi"), Read("/api/v1/provinces/hue", True), Read("/api/v1/history"),
            Read("/api/v1/history?province=ha-noi"), Read("/api/v1/history?province=hue", True),
            Read("/api/v1/access/me"), Read("/openapi.json"), Read("/docs")],
    "pages": [Read("/"), Read("/p/ha-noi"), Read("/p/hue", True), Read(f"/s/{OWN_SITE}"),
              Read(f"/s/{OTHER_SITE}", True), Read("/help/alerts")],
    "exports": [Read("/export/national.csv"), Read("/export/national.xlsx"), Read("/export/p/ha-noi.csv"),
                Read("/export/p/ha-noi.xlsx?lang=en"), Read("/export/p/hue.csv", True),
                Read("/export/p/hue.xlsx", True)],
}


@pytest.fixture(scope="module")
def collector() -> Iterator[CollectorPeer]:
    settings = {"judge": {"interval": "1s", "process": False}, "aggregator": {"interval": "1s"},
                "auth": {"cache_ttl": "0s"}}
    with CollectorPeer(sites=[*HN, *HUE], settings=settings) as peer:
        wait_until(lambda: httpx.get(f"{peer.url}/api/v1/provinces", headers=peer.headers, timeout=5).status_code
                   == 200, timeout=60, what="the judge's first pass")
        yield peer


def create(collector: CollectorPeer, name: str, role: str, *extra: str) -> str:
    """An operator credential made the way an administrator makes one (printed once on stdout)."""
    province = ("--province", "ha-noi") if role == "province" else ()
    return collector.cli("operator", "create", name, "--role", role, *province, *extra).stdout.strip()


@pytest.fixture(scope="module")
def tokens(collector: CollectorPeer) -> dict[str, str]:
    made = {role: create(collector, f"{role}-operator", role) for role in ROLES}
    made["metrics"] = create(collector, "prometheus", "metrics")
    made["site"] = collector.issue_token(OWN_SITE)
    return made


def get(collector: CollectorPeer, path: str, token: str | None = None, **headers: str) -> httpx.Response:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.get(collector.url + path, headers=headers, timeout=30)


def expected_status(role: str, read: Read) -> int:
    return 404 if role == "province" and read.other_province else 200


# -- the matrix: role x family ---------------------------------------------------------------


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("role", ROLES)
def test_each_role_reads_its_scope_and_nothing_else(collector: CollectorPeer, tokens: dict[str, str], role: str,
                                                    family: str) -> None:
    for read in FAMILIES[family]:
        anonymous = get(collector, read.path)
        assert anonymous.status_code == 401, f"{read.path} without a credential: {anonymous.status_code}"
        response = get(collector, read.path, tokens[role])
        assert response.status_code == expected_status(role, read), (
            f"{role} GET {read.path}: {response.status_code} {response.text[:300]}")
        if response.status_code == 404 and family != "pages":
            # out of scope reads exactly as absent: the same words as a commune or province that does not exist
            assert "hue" in response.json()["detail"] and "scope" not in response.json()["detail"]
        if response.status_code == 200 and read.path.endswith(".csv"):
            assert response.headers["content-disposition"].startswith("attachment")
        if response.status_code == 200 and ".xlsx" in read.path:
            from openpyxl import load_workbook
            assert load_workbook(io.BytesIO(response.content)).sheetnames


@pytest.mark.parametrize("role", ROLES)
def test_lists_hold_only_the_province_in_scope(collector: CollectorPeer, tokens: dict[str, str], role: str) -> None:
    expected = {s.id for s in HN} if role == "province" else {s.id for s in [*HN, *HUE]}
    sites = get(collector, "/api/v1/sites", tokens[role]).json()
    assert {s["id"] for s in sites["items"]} == expected and sites["total"] == len(expected)
    verdicts = get(collector, "/api/v1/verdicts", tokens[role]).json()
    assert {v["site"] for v in verdicts["items"]} == expected and verdicts["total"] == len(expected)
    export = get(collector, "/export/p/ha-noi.csv", tokens[role]).content.decode("utf-8-sig")
    assert all(s.id in export for s in HN) and OTHER_SITE not in export
    page = get(collector, "/p/ha-noi", tokens[role]).text
    assert all(s.commune in page for s in HN) and HUE[0].commune not in page
    # the national counts are everyone's: every province's row, no commune of another province
    national = get(collector, "/api/v1/provinces", tokens[role]).json()
    assert {p["slug"]: p["total"] for p in national["provinces"] if p["total"]} == {"ha-noi": 2, "hue": 1}
    assert "communes" not in str(national) and OTHER_SITE not in str(national)
    me = get(collector, "/api/v1/access/me", tokens[role]).json()
    assert me == {"name": f"{role}-operator", "role": role, "province": "ha-noi" if role == "province" else None,
                  "via": "token"}


# -- credentials that must not read ---------------------------------------------------------------

EVERY_READ = sorted({r.path for reads in FAMILIES.values() for r in reads} | {"/metrics"})


@pytest.mark.parametrize("path", EVERY_READ)
def test_a_site_token_reads_nothing(collector: CollectorPeer, tokens: dict[str, str], path: str) -> None:
    response = get(collector, path, tokens["site"])
    assert response.status_code == 401, f"a site token on {path}: {response.status_code}"
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_metrics_for_national_operators_and_scrapers_only(collector: CollectorPeer, tokens: dict[str, str]) -> None:
    assert get(collector, "/metrics").status_code == 401
    for role in ("national", "metrics"):
        response = get(collector, "/metrics", tokens[role])
        assert response.status_code == 200 and "commune_collector_ingest_reports_total" in response.text
    for role in ("province", "auditor"):  # /metrics names every province's sites
        denied = get(collector, "/metrics", tokens[role])
        assert denied.status_code == 403 and denied.headers["content-type"] == "application/problem+json"
    for path in ("/api/v1/sites", "/", "/export/national.csv", "/docs"):  # a scraper reads /metrics only
        assert get(collector, path, tokens["metrics"]).status_code == 403, path
    refused = get(collector, "/metrics", tokens["national"]).text
    assert 'commune_collector_access_refused_requests_total{status="403"}' in refused
    assert 'commune_collector_access_refused_requests_total{status="401"}' in refused


def test_health_ingest_and_static_files_stay_open(collector: CollectorPeer) -> None:
    assert get(collector, "/healthz").status_code == 200
    assert get(collector, "/readyz").status_code == 200
    assert get(collector, "/static/style.css").status_code == 200
    assert get(collector, "/public").status_code == 401  # the public view is off by default: behind the gate


def test_revoked_and_expired_operator_tokens_are_refused(collector: CollectorPeer) -> None:
    # long enough to outlast the CLI's own start on a loaded machine (2 s did not, in a bare root)
    token = create(collector, "short-lived", "national", "--expires", "8s")
    assert get(collector, "/api/v1/sites", token).status_code == 200
    wait_until(lambda: get(collector, "/api/v1/sites", token).status_code == 401, timeout=30,
               what="the token to expire")
    assert "expired" in get(collector, "/api/v1/sites", token).json()["detail"]
    revoked = create(collector, "leaver", "province")
    assert get(collector, "/api/v1/sites", revoked).status_code == 200
    assert "revoked 1" in collector.cli("operator", "revoke", "leaver").stdout
    refused = get(collector, "/api/v1/sites", revoked)
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
    forged = revoked[:-4] + "AAAA"
    assert get(collector, "/api/v1/sites", forged).status_code == 401


def test_a_refused_person_gets_a_page_in_vietnamese_and_tokens_stay_out_of_logs(
        collector: CollectorPeer, tokens: dict[str, str]) -> None:
    page = get(collector, "/p/ha-noi")
    assert page.status_code == 401 and page.headers["content-type"].startswith("text/html")
    assert "Cần đăng nhập" in page.text and "Sign-in required" in page.text
    listing = collector.cli("operator", "list").stdout
    assert "national-operator" in listing and "province:ha-noi" in listing
    assert not any(t.split("_", 2)[2] in listing + collector.log_text() for t in tokens.values() if t.count("_") >= 2)


def test_the_api_documents_its_credential(collector: CollectorPeer, tokens: dict[str, str]) -> None:
    schema = get(collector, "/openapi.json", tokens["auditor"]).json()
    assert "operatorToken" in schema["components"]["securitySchemes"]
    for path in ("/api/v1/sites", "/api/v1/verdicts/{site}", "/api/v1/provinces/{slug}", "/api/v1/history"):
        operation = schema["paths"][path]["get"]
        assert operation["security"] == [{"operatorToken": []}] and {"401", "403"} <= set(operation["responses"])


# -- the public view ---------------------------------------------------------------------------


def test_the_public_view_shows_counts_and_nothing_else() -> None:
    settings = {"judge": {"interval": "1s", "process": False}, "access": {"public_view": True}}
    with CollectorPeer(sites=[*HN, *HUE], settings=settings) as peer:
        wait_until(lambda: get(peer, "/public").status_code == 200, timeout=60, what="the public view")
        for path in ("/public", "/public/p/ha-noi", "/public/summary.json"):
            response = get(peer, path)
            assert response.status_code == 200, path
            text = response.text
            assert not any(s.id in text or s.commune in text for s in [*HN, *HUE]), f"{path} names a commune"
        names = provinces()
        public = get(peer, "/public").text
        assert names["ha-noi"].name in public and names["hue"].name in public and 'href="/public/p/hue"' in public
        assert 'href="/p/' not in public and 'href="/s/' not in public  # no way into the operators' pages
        summary = get(peer, "/public/summary.json").json()
        assert {p["slug"]: p["total"] for p in summary["provinces"] if p["total"]} == {"ha-noi": 2, "hue": 1}
        for path in ("/", "/p/ha-noi", f"/s/{OWN_SITE}", "/api/v1/sites", "/export/national.csv"):
            assert get(peer, path).status_code == 401, path  # the rest stays behind the gate
        assert 'href="/public"' in get(peer, "/p/ha-noi").text  # a refused visitor is shown the public figures


# -- Prometheus scrapes /metrics with its token -----------------------------------------------


def test_a_real_prometheus_scrapes_with_its_token_and_not_without(collector: CollectorPeer,
                                                                 tokens: dict[str, str], tmp_path) -> None:
    from testsupport.peers.prometheus import PrometheusPeer

    target = collector.url.split("//")[1]
    (tmp_path / "collector.token").write_text(tokens["metrics"] + "\n")
    config = ("global: {scrape_interval: 1s, scrape_timeout: 1s}\nscrape_configs:\n"
              f"  - job_name: with-token\n    authorization: {{credentials_file: {tmp_path / 'collector.token'}}}\n"
              f"    static_configs: [{{targets: ['{target}']}}]\n"
              f"  - job_name: anonymous\n    static_configs: [{{targets: ['{target}']}}]\n")
    with PrometheusPeer(config) as prometheus:
        prometheus.wait_for_query('up{job="with-token"} == 1', timeout=60)
        prometheus.wait_for_query('commune_collector_ingest_reports_total{job="with-token"}', timeout=30)
        prometheus.wait_for_query('up{job="anonymous"} == 0', timeout=30)


def test_a_browser_signs_in_with_a_token_and_keeps_it_in_a_strict_cookie(collector: CollectorPeer,
                                                                          tokens: dict[str, str]) -> None:
    with httpx.Client(base_url=collector.url, timeout=30) as browser:
        assert 'action="/login"' in browser.get("/login").text
        assert 'href="/login"' in browser.get("/p/ha-noi").text  # a refused page says where to sign in
        bad = browser.post("/login", data={"token": tokens["site"]})
        assert bad.status_code == 401 and "commune_operator" not in bad.headers.get("set-cookie", "")
        assert browser.post("/login", data={"token": tokens["metrics"]}).status_code == 403
        signed = browser.post("/login", data={"token": tokens["province"]})
        assert signed.status_code == 303 and signed.headers["location"] == "/"
        cookie = signed.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=" in cookie
        assert browser.get("/p/ha-noi").status_code == 200 and browser.get("/p/hue").status_code == 404
        assert browser.get("/api/v1/access/me").json()["role"] == "province"
        assert browser.get("/logout").status_code == 303
        assert browser.get("/p/ha-noi").status_code == 401
