"""Every integer a client sends fits both stores: at the bound it is stored, past it a 422 names the field.

``seq`` at the schema's old maximum (2^63-1) passed validation and then
overflowed the store on seq+1 (a 500). The wire types now bound it to 2^53-1
(``commune_common.wire.MAX_SEQ``); a real collector process on SQLite and on
PostgreSQL stores a report at the bound and the one below it (the range
arithmetic seq+1 included) and refuses anything larger with a 422 naming the
field. The API's integer query parameters are bounded the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from commune_collector.sites import Site
from commune_common.wire import MAX_SEQ, encode_report
from testsupport.collector import CollectorPeer, make_report
from testsupport.peers.postgres import PostgresPeer

SITE = Site("ha-noi-ba-dinh", "Trung tâm Phục vụ hành chính công Phường Ba Đình", "ha-noi", "Phường Ba Đình")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def collector(request: pytest.FixtureRequest) -> Iterator[CollectorPeer]:
    if request.param == "sqlite":
        with CollectorPeer(sites=[SITE]) as peer:
            peer.token = peer.issue_token(SITE.id)  # type: ignore[attr-defined]
            yield peer
        return
    with PostgresPeer() as pg, CollectorPeer(sites=[SITE], settings={"database": {"dsn": pg.dsn}}) as peer:
        peer.token = peer.issue_token(SITE.id)  # type: ignore[attr-defined]
        yield peer


def _post(collector: CollectorPeer, body: bytes) -> httpx.Response:
    return httpx.post(f"{collector.url}/api/v1/reports", content=body, timeout=30,
                      headers={"Authorization": f"Bearer {collector.token}",  # type: ignore[attr-defined]
                               "Content-Type": "application/json"})


def _with(field: str, value: int, seq: int = 1) -> bytes:
    doc = json.loads(encode_report(make_report(SITE.id, seq)))
    doc[field] = value
    return json.dumps(doc).encode()


def test_seq_at_the_bound_is_stored_and_acknowledged(collector: CollectorPeer) -> None:
    for seq in (MAX_SEQ, MAX_SEQ - 1, MAX_SEQ):  # the second joins the first's range (seq+1 = MAX_SEQ)
        response = _post(collector, encode_report(make_report(SITE.id, seq)))
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == seq
    assert response.json()["duplicate"] is True
    site = httpx.get(f"{collector.url}/api/v1/sites/{SITE.id}", timeout=10, headers=collector.headers).json()
    assert site["last_seq"] in (MAX_SEQ, MAX_SEQ - 1)


@pytest.mark.parametrize(("field", "value"), [("seq", MAX_SEQ + 1), ("seq", 2**63 - 1), ("seq", 2**63),
                                              ("seq", 2**64 + 5), ("seq", -1), ("wire_version", 2**63),
                                              ("wire_version", 2**100)])
def test_an_integer_past_the_bound_is_a_422_naming_the_field(collector: CollectorPeer, field: str,
                                                             value: int) -> None:
    response = _post(collector, _with(field, value))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == [field]


@pytest.mark.parametrize(("path", "param"), [("/api/v1/sites", "limit"), ("/api/v1/sites", "offset"),
                                             ("/api/v1/verdicts", "offset")])
def test_integer_query_parameters_are_bounded(collector: CollectorPeer, path: str, param: str) -> None:
    response = httpx.get(f"{collector.url}{path}", params={param: str(2**63)}, timeout=10, headers=collector.headers)
    assert response.status_code == 422, response.text
    assert param in response.json()["errors"][0]["field"]
