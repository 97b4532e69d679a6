"""Hostile and broken requests against a real collector process: the right 4xx, nothing stored.

Every case posts to a live ``commune-collector serve`` over loopback and then
checks, through the API and /metrics, that nothing was stored and the server
still answers. Tokens must never appear in the collector's log.
"""

from __future__ import annotations

import gzip
import json
import ssl
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from commune_collector.sites import Site
from commune_common.wire import MAX_RESULTS_PER_REPORT, Report, encode_report
from testsupport.collector import CollectorPeer, make_report, self_signed_cert

VICTIM = Site("ha-noi-ba-dinh", "Trung tâm Phục vụ hành chính công Phường Ba Đình", "ha-noi", "Phường Ba Đình")
OTHER = Site("hue-thuan-hoa", "Trung tâm Phục vụ hành chính công Phường Thuận Hóa", "hue", "Phường Thuận Hóa")
RAW_LIMIT = 256 * 1024
DECOMPRESSED_LIMIT = 1024 * 1024


@pytest.fixture(scope="module")
def collector() -> Iterator[CollectorPeer]:
    peer = CollectorPeer(sites=[VICTIM, OTHER], settings={
        "auth": {"cache_ttl": "0s"},
        "ingest": {"max_body_bytes": "256KiB", "max_decompressed_bytes": "1MiB"}})
    with peer:
        peer.tokens = {VICTIM.id: peer.issue_token(VICTIM.id), OTHER.id: peer.issue_token(OTHER.id)}  # type: ignore[attr-defined]
        yield peer


@pytest.fixture
def http(collector: CollectorPeer) -> Iterator[httpx.Client]:
    def read_as_operator(request: httpx.Request) -> None:  # reads need an operator; posts carry their own token
        if request.method == "GET":
            request.headers["Authorization"] = collector.headers["Authorization"]

    with httpx.Client(base_url=collector.url, timeout=30, event_hooks={"request": [read_as_operator]}) as client:
        yield client


def _reports_total(http: httpx.Client) -> float:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith("commune_collector_ingest_reports_total "):
            return float(line.split()[1])
    raise AssertionError("no commune_collector_ingest_reports_total in /metrics")


@pytest.fixture
def nothing_stored(http: httpx.Client) -> Iterator[None]:
    """Asserts, after the test, that the victim site got no data and no report was counted."""
    before = _reports_total(http)
    yield
    assert http.get("/healthz").status_code == 200, "the collector must survive"
    assert _reports_total(http) == before
    site = http.get(f"/api/v1/sites/{VICTIM.id}").json()
    assert site["latest"] == [] and site["last_report_at"] is None


def post(http: httpx.Client, body: bytes | Any, *, token: str | None, headers: dict[str, str] | None = None,
         ) -> httpx.Response:
    hdrs = {"Content-Type": "application/json"}
    if token is not None:
        hdrs["Authorization"] = f"Bearer {token}"
    hdrs.update(headers or {})
    return http.post("/api/v1/reports", content=body, headers=hdrs)


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    doc = response.json()
    assert doc["status"] == status and doc["title"]
    return doc


def token_of(collector: CollectorPeer, site: str = VICTIM.id) -> str:
    return collector.tokens[site]  # type: ignore[attr-defined]


def body_of(**changes: Any) -> bytes:
    data = json.loads(encode_report(make_report(VICTIM.id, 1, n=2)))
    for path, value in changes.items():
        target = data
        keys = path.split("__")
        for key in keys[:-1]:
            target = target[int(key)] if key.isdigit() else target[key]
        target[keys[-1]] = value
    return json.dumps(data).encode()


# -- who may report ---------------------------------------------------------------------------


@pytest.mark.usefixtures("nothing_stored")
def test_no_token_is_401_with_a_bearer_challenge(http: httpx.Client) -> None:
    response = post(http, encode_report(make_report(VICTIM.id, 1)), token=None)
    problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.usefixtures("nothing_stored")
@pytest.mark.parametrize("token", ["abc", "cm_zzzzzzzzzzzz_" + "a" * 43, "cm_0123456789ab_" + "a" * 43, "Bearer"])
def test_malformed_or_unknown_tokens_are_401(http: httpx.Client, token: str) -> None:
    problem(post(http, encode_report(make_report(VICTIM.id, 1)), token=token), 401)


@pytest.mark.usefixtures("nothing_stored")
def test_a_real_token_id_with_a_wrong_secret_is_401(http: httpx.Client, collector: CollectorPeer) -> None:
    good = token_of(collector)
    forged = good[:-5] + ("AAAAA" if not good.endswith("AAAAA") else "BBBBB")
    assert "unknown token" in problem(post(http, encode_report(make_report(VICTIM.id, 1)), token=forged), 401)["detail"]


@pytest.mark.usefixtures("nothing_stored")
def test_basic_auth_is_not_a_token(http: httpx.Client) -> None:
    problem(post(http, encode_report(make_report(VICTIM.id, 1)), token=None,
                 headers={"Authorization": "Basic dXNlcjpwYXNz"}), 401)


@pytest.mark.usefixtures("nothing_stored")
def test_a_token_for_another_site_is_403(http: httpx.Client, collector: CollectorPeer) -> None:
    doc = problem(post(http, encode_report(make_report(VICTIM.id, 1)), token=token_of(collector, OTHER.id)), 403)
    assert doc["errors"] == [{"field": "site", "message": "does not match the token's site"}]


@pytest.mark.usefixtures("nothing_stored")
def test_a_revoked_token_is_401(http: httpx.Client, collector: CollectorPeer) -> None:
    token = collector.issue_token(VICTIM.id)
    token_id = token.split("_")[1]
    collector.cli("token", "revoke", token_id)
    assert "revoked" in problem(post(http, encode_report(make_report(VICTIM.id, 1)), token=token), 401)["detail"]


# -- size -------------------------------------------------------------------------------------


@pytest.mark.usefixtures("nothing_stored")
def test_an_oversized_body_is_413(http: httpx.Client, collector: CollectorPeer) -> None:
    big = b"{" + b" " * (RAW_LIMIT + 10) + b"}"
    problem(post(http, big, token=token_of(collector)), 413)


@pytest.mark.usefixtures("nothing_stored")
def test_an_oversized_chunked_body_without_length_is_413(http: httpx.Client, collector: CollectorPeer) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b" " * 16384
    problem(post(http, chunks(), token=token_of(collector)), 413)


@pytest.mark.usefixtures("nothing_stored")
def test_a_gzip_bomb_stops_at_the_decompressed_limit(http: httpx.Client, collector: CollectorPeer) -> None:
    bomb = gzip.compress(b" " * (64 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < RAW_LIMIT
    doc = problem(post(http, bomb, token=token_of(collector), headers={"Content-Encoding": "gzip"}), 413)
    assert "decompressed" in doc["detail"]


@pytest.mark.usefixtures("nothing_stored")
def test_too_many_results_is_422(http: httpx.Client, collector: CollectorPeer) -> None:
    report = make_report(VICTIM.id, 1, n=MAX_RESULTS_PER_REPORT + 1)
    compact = Report(report.site, report.instance, report.seq, report.sent_at, report.agent_version,
                     [r.__class__(r.check, r.probe, r.ts, r.ok, r.duration_s) for r in report.results])
    body = gzip.compress(encode_report(compact))
    doc = problem(post(http, body, token=token_of(collector), headers={"Content-Encoding": "gzip"}), 422)
    assert doc["errors"][0]["field"] == "results"


# -- bytes that are not a report ---------------------------------------------------------------------


@pytest.mark.usefixtures("nothing_stored")
@pytest.mark.parametrize("body,headers", [
    (b"not gzip at all", {"Content-Encoding": "gzip"}),
    (gzip.compress(b'{"site": "x"}')[:-6], {"Content-Encoding": "gzip"}),
    (b'{"site": "ha-noi-ba-dinh", ', {}),
    (b'{"site": "ha-noi-\xff\xfe-dinh"}', {}),
    (b"\xef\xbb\xbf\x00\x00", {}),
    (b'{"site": "\\ud800"}', {}),
], ids=["bad-gzip", "truncated-gzip", "truncated-json", "invalid-utf8", "binary", "lone-surrogate"])
def test_bytes_that_are_not_json_are_400(http: httpx.Client, collector: CollectorPeer, body: bytes,
                                         headers: dict[str, str]) -> None:
    problem(post(http, body, token=token_of(collector), headers=headers), 400)


@pytest.mark.usefixtures("nothing_stored")
@pytest.mark.parametrize("body", [
    b"[" * 200_000 + b"]" * 200_000,
    b'{"site": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",
    b'{"results": [{"labels": ' + b'{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"}]}",
], ids=["top-level", "in-a-field", "in-a-nested-field"])
def test_deeply_nested_json_is_refused_without_harm(http: httpx.Client, collector: CollectorPeer,
                                                    body: bytes) -> None:
    assert len(body) > RAW_LIMIT  # gzip gets it past the raw limit to the decoder itself
    response = post(http, gzip.compress(body), token=token_of(collector), headers={"Content-Encoding": "gzip"})
    assert response.status_code in (400, 422), response.text


@pytest.mark.usefixtures("nothing_stored")
@pytest.mark.parametrize("changes,field", [
    ({"seq": "one"}, "seq"),
    ({"results__0__ok": "yes"}, "results[0].ok"),
    ({"results__0__values__icmp_loss_ratio": "0.5"}, "results[0].values[...]"),  # msgspec names the map, not the key
    ({"surprise": 1}, "surprise"),
], ids=["type", "nested-type", "value-type", "unknown-field"])
def test_schema_violations_are_422_naming_the_field(http: httpx.Client, collector: CollectorPeer,
                                                     changes: dict[str, Any], field: str) -> None:
    doc = problem(post(http, body_of(**changes), token=token_of(collector)), 422)
    assert doc["errors"][0]["field"] == field


@pytest.mark.usefixtures("nothing_stored")
def test_a_missing_field_is_422_naming_it(http: httpx.Client, collector: CollectorPeer) -> None:
    data = json.loads(body_of())
    del data["results"][1]["ok"]
    doc = problem(post(http, json.dumps(data).encode(), token=token_of(collector)), 422)
    assert doc["errors"][0]["field"] == "results[1].ok"


R0 = ("results", 0)


@pytest.mark.usefixtures("nothing_stored")
@pytest.mark.parametrize("path,raw,field", [
    ((*R0, "values", "icmp_loss_ratio"), "1e999", "results[0].values[...]"),
    ((*R0, "ts"), "-1e999", "results[0].ts"),
    ((*R0, "ts"), "1e12", "results[0].ts"),
    ((*R0, "reason"), '"\\u0000"', "results[0].reason"),
    ((*R0, "check"), '""', "results[0].check"),
    ((*R0, "probe"), '"ICMP; DROP"', "results[0].probe"),
    (("wire_version",), "99", "wire_version"),
    (("instance",), '"' + "x" * 100 + '"', "instance"),
    (("seq",), "-1", "seq"),
    ((*R0, "reason"), '"' + "x" * 2000 + '"', "results[0].reason"),
    ((*R0, "labels"), '{"bad label": "x"}', "results[0].labels.bad label"),
    ((*R0, "labels"), '{"link": "' + "y" * 300 + '"}', "results[0].labels.link"),
    ((*R0, "values"), '{"rtt{oops": 1.0}', "results[0].values.rtt{oops"),
], ids=["inf", "neg-inf", "far-future", "nul", "empty-check", "probe-name", "wire-version",
        "long-instance", "negative-seq", "long-reason", "label-name", "long-label", "value-key"])
def test_values_the_store_must_not_take_are_422(http: httpx.Client, collector: CollectorPeer,
                                                path: tuple[Any, ...], raw: str, field: str) -> None:
    data = json.loads(body_of())
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = "__RAW__"  # replaced textually: json.dumps cannot write 1e999 or a lone surrogate
    text = json.dumps(data).replace('"__RAW__"', raw, 1).encode()
    doc = problem(post(http, text, token=token_of(collector)), 422)
    assert field in [e["field"] for e in doc["errors"]], doc


@pytest.mark.usefixtures("nothing_stored")
def test_another_media_type_is_415(http: httpx.Client, collector: CollectorPeer) -> None:
    problem(post(http, encode_report(make_report(VICTIM.id, 1)), token=token_of(collector),
                 headers={"Content-Type": "text/plain"}), 415)
    problem(post(http, encode_report(make_report(VICTIM.id, 1)), token=token_of(collector),
                 headers={"Content-Encoding": "br"}), 415)


# -- and the good path still works, without leaking secrets ------------------------------------------


def test_a_valid_report_from_the_right_site_is_stored(http: httpx.Client, collector: CollectorPeer) -> None:
    response = post(http, encode_report(make_report(OTHER.id, 1, n=2)), token=token_of(collector, OTHER.id))
    assert response.status_code == 200, response.text
    assert len(http.get(f"/api/v1/sites/{OTHER.id}").json()["latest"]) == 2


def test_tokens_never_appear_in_logs_or_metrics(http: httpx.Client, collector: CollectorPeer) -> None:
    post(http, encode_report(make_report(OTHER.id, 2)), token=token_of(collector, OTHER.id))
    post(http, encode_report(make_report(VICTIM.id, 2)), token=token_of(collector, OTHER.id))
    secrets = [t.split("_", 2)[2] for t in collector.tokens.values()]  # type: ignore[attr-defined]
    text = collector.log_text() + http.get("/metrics").text
    assert text  # there is a log to search
    assert not [s for s in secrets if s in text]
    listed = collector.cli("token", "list").stdout
    assert not [s for s in secrets if s in listed]


def test_https_when_a_certificate_is_configured(tmp_path: Any) -> None:
    cert, key = self_signed_cert(tmp_path)
    with CollectorPeer(sites=[VICTIM], settings={"tls": {"cert_file": str(cert), "key_file": str(key)}}) as peer:
        token = peer.issue_token(VICTIM.id)
        with httpx.Client(base_url=peer.url, verify=ssl.create_default_context(cafile=str(cert)), timeout=30) as client:
            response = post(client, encode_report(make_report(VICTIM.id, 1)), token=token)
            assert response.status_code == 200, response.text
        with pytest.raises(httpx.HTTPError):  # plain HTTP to the TLS port gets no answer
            httpx.get(f"http://{peer.host}:{peer.port}/healthz", timeout=5)
        with pytest.raises(httpx.ConnectError):  # and a client that does not trust the cert refuses it
            httpx.get(f"{peer.url}/healthz", timeout=5)
    assert time.time()  # the peer stopped cleanly
