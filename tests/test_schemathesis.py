"""Property-based fuzzing of the live collector from its own OpenAPI document: no 5xx, ever.

schemathesis reads ``/openapi.json`` from a real ``commune-collector serve``
and generates requests for every operation, valid (positive) and invalid
(negative). Reports are sent with a real token, and half of the time with the
token's site, so generated reports get past authorisation into validation and
the store. (Driven through hypothesis directly: schemathesis' pytest plugin
does not load under pytest 9.)
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from commune_collector.store.base import Site
from tests.collector_support import CollectorPeer

SITES = [Site("ha-noi-ba-dinh", "Trung tâm Phục vụ hành chính công Phường Ba Đình", "ha-noi", "Phường Ba Đình"),
         Site("hue-thuan-hoa", "Trung tâm Phục vụ hành chính công Phường Thuận Hóa", "hue", "Phường Thuận Hóa")]
EXAMPLES = 100  # per operation and mode: about a minute in all


@pytest.fixture(scope="module")
def collector() -> Iterator[CollectorPeer]:
    with CollectorPeer(sites=SITES, settings={"ingest": {"max_body_bytes": "256KiB"}}) as peer:
        peer.token = peer.issue_token(SITES[0].id)  # type: ignore[attr-defined]
        yield peer


def _operations(collector: CollectorPeer) -> list[schemathesis.APIOperation]:
    schema = schemathesis.openapi.from_url(f"{collector.url}/openapi.json", headers=collector.headers)
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=lambda m: m.value)
def test_no_operation_answers_5xx(collector: CollectorPeer, mode: schemathesis.GenerationMode) -> None:
    operations = _operations(collector)
    assert {op.path for op in operations} >= {"/api/v1/reports", "/api/v1/sites", "/api/v1/sites/{site_id}"}
    statuses: dict[str, set[int]] = {}
    for operation in operations:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            if case.operation.path == "/api/v1/reports" and isinstance(case.body, dict) and len(str(case.body)) % 2:
                case.body["site"] = SITES[0].id
            # reports with the site's token; every read with an operator's (site tokens never read)
            token = collector.token if case.operation.path == "/api/v1/reports" else collector.operator_token  # type: ignore[attr-defined]
            response = case.call(headers={"Authorization": f"Bearer {token}"}, timeout=30)
            statuses.setdefault(case.operation.label, set()).add(response.status_code)
            assert response.status_code < 500, (f"{case.method} {case.path} answered {response.status_code}: "
                                                f"{response.text[:500]}\n{case.as_curl_command()}")
        try:
            check()
        except Unsatisfiable:  # an operation without parameters has no invalid form (GET /healthz)
            assert mode is schemathesis.GenerationMode.NEGATIVE
    assert collector.running
    fuzzed = {label for label, seen in statuses.items() if seen}
    assert {"POST /api/v1/reports", "GET /api/v1/sites", "GET /api/v1/sites/{site_id}"} <= fuzzed, statuses
    if mode is schemathesis.GenerationMode.POSITIVE:  # generated reports reached the store, not just the guards
        assert 200 in statuses["POST /api/v1/reports"], statuses
