"""Property-based fuzzing of the live collector from its own OpenAPI document: no 5xx, and the document is true.

schemathesis reads ``/openapi.json`` from a real ``commune-collector serve``
and generates requests for every operation, valid (positive) and invalid
(negative). Reports are sent with a real token, and half of the time with the
token's site, so generated reports get past authorisation into validation and
the store. (Driven through hypothesis directly: schemathesis' pytest plugin
does not load under pytest 9.) Then ``schemathesis run --checks all``, the
command line as an API's user would run it, must find nothing: every status
code, media type (errors are ``application/problem+json``), response schema
and parameter constraint the document states is what the API does, valid
requests are accepted and invalid ones refused.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from commune_collector.sites import Site
from testsupport.collector import VENV_BIN, CollectorPeer

SITES = [Site("ha-noi-ba-dinh", "Trung tâm Phục vụ hành chính công Phường Ba Đình", "ha-noi", "Phường Ba Đình"),
         Site("hue-thuan-hoa", "Trung tâm Phục vụ hành chính công Phường Thuận Hóa", "hue", "Phường Thuận Hóa")]
EXAMPLES = 100  # per operation and mode: about a minute in all
CLI_EXAMPLES = 50  # per operation and phase of `schemathesis run`: about 30 s


@pytest.fixture(scope="module")
def collector() -> Iterator[CollectorPeer]:
    # the default body limit: a report the schema refuses (5001 results) must get its 422, not a 413 first
    with CollectorPeer(sites=SITES) as peer:
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


# the agents' endpoints take a site token; every other operation an operator's (collector.access)
SITE_TOKEN_PATHS = r"^/api/v1/(reports|whoami|agent-config)$"


# Two stated exceptions: declaring a maintenance window is checked against the inventory (the communes
# it names) and the clock (an end after the start, a start at most an hour ago), and starting a rollout
# against the agent profile's own model (the candidate is YAML text that must be a valid profile that
# changes some site), which no JSON Schema can state; a well-formed request may be refused 422 for
# those, naming the field, and random ones mostly are: schemathesis then warns "mostly rejected" for
# these operations, and for them alone.
SCHEMATHESIS_TOML = """
[[operations]]
include-name = "POST /api/v1/maintenance"
checks.positive_data_acceptance.expected-statuses = ["201", "401", "403", "422"]

[[operations]]
include-name = "POST /api/v1/rollouts"
checks.positive_data_acceptance.expected-statuses = ["201", "401", "403", "409", "422"]
"""
EXPECTED_WARNINGS = {"POST /api/v1/maintenance", "POST /api/v1/rollouts"}
# a rollout's and a maintenance window's own operations get the id of one that exists (a random id is
# only ever a 404, and schemathesis warns that it never reached the operation)
ID_TOML = """
[[operations]]
include-name = "{operation}"
parameters = {{ "path.{name}" = "{value}" }}
"""
ROLLOUT_OPERATIONS = ("GET /api/v1/rollouts/{rollout_id}", "POST /api/v1/rollouts/{rollout_id}/promote",
                      "POST /api/v1/rollouts/{rollout_id}/rollback")
WINDOW_OPERATIONS = ("GET /api/v1/maintenance/{window_id}", "POST /api/v1/maintenance/{window_id}/cancel")


def _declare_a_window(collector: CollectorPeer) -> str:
    """A maintenance window on the first site, an hour from now for two hours."""
    from datetime import datetime, timedelta

    import httpx

    def at(hours: float) -> str:
        return (datetime.now(UTC) + timedelta(hours=hours)).isoformat(timespec="seconds")

    response = httpx.post(f"{collector.url}/api/v1/maintenance", headers=collector.headers, timeout=60,
                          json={"covers": {"kind": "sites", "sites": [SITES[0].id]}, "starts_at": at(1),
                                "ends_at": at(3), "reason": "EVN cắt điện theo lịch"})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _start_a_rollout(collector: CollectorPeer) -> str:
    """A rollout of the built-in profile with a shorter timeout, to every site that has a config."""
    import httpx
    import yaml

    from commune_collector.agentconfig import builtin_profile_text

    candidate = yaml.safe_load(builtin_profile_text())
    candidate["defaults"]["timeout"] = "9s"
    response = httpx.post(f"{collector.url}/api/v1/rollouts", headers=collector.headers, timeout=60,
                          json={"profile": yaml.safe_dump(candidate, allow_unicode=True), "percent": 100})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.mark.parametrize("who", ["site", "operator"])
def test_schemathesis_run_checks_all_passes(collector: CollectorPeer, tmp_path: Path, who: str) -> None:
    """The CLI with every check: status codes, content types, response schemas, positive and negative data.

    Each operation is run with the credential it is for: the agents' ones with the site's token, the
    rest with an operator's (the document itself is for operators: it is read from a file).
    """
    import httpx

    document = tmp_path / "openapi.json"
    document.write_text(httpx.get(f"{collector.url}/openapi.json", headers=collector.headers, timeout=30).text)
    token = collector.token if who == "site" else collector.operator_token  # type: ignore[attr-defined]
    scope = ["--include-path-regex" if who == "site" else "--exclude-path-regex", SITE_TOKEN_PATHS]
    config = tmp_path / "schemathesis.toml"
    rollout = _start_a_rollout(collector) if who == "operator" else "ro-00000000"
    window = _declare_a_window(collector) if who == "operator" else "mw-00000000"
    config.write_text(SCHEMATHESIS_TOML
                      + "".join(ID_TOML.format(operation=op, name="rollout_id", value=rollout)
                                for op in ROLLOUT_OPERATIONS)
                      + "".join(ID_TOML.format(operation=op, name="window_id", value=window)
                                for op in WINDOW_OPERATIONS))
    argv = [str(VENV_BIN / "schemathesis"), "--config-file", str(config), "run", str(document), "--url", collector.url, "--checks", "all",
            "-H", f"Authorization: Bearer {token}", *scope,
            "--max-examples", str(CLI_EXAMPLES), "--workers", "1", "--seed", "1", "--no-color",
            "--request-timeout", "30", "--report", "junit", "--report-dir", str(tmp_path)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    summary = result.stdout[-6000:]
    assert result.returncode == 0, summary
    assert "Selected: 0" not in result.stdout, summary
    assert "No issues found" in result.stdout or _only_the_expected_warning(result.stdout), summary
    assert collector.running


def _only_the_expected_warning(stdout: str) -> bool:
    """No failure, and the only warning is 'mostly rejected' for the two operations above (or some of them)."""
    if "Warnings:" not in stdout or " failed" in stdout.split("Test cases:")[-1].split("Reports:")[0]:
        return False
    section = stdout.split("= WARNINGS =")[-1].split("= SUMMARY =")[0]
    listed = re.findall(r"^\s+- (.+)$", section, flags=re.MULTILINE)
    warnings = re.findall(r"⚠️ (.+)", stdout.split("Warnings:")[-1].split("Test cases:")[0])
    return (bool(listed) and set(listed) <= EXPECTED_WARNINGS and len(warnings) == 1
            and warnings[0].startswith(f"Schema validation mismatch: {len(listed)} operation"))


def test_the_document_states_problem_json_and_the_values_that_exist(collector: CollectorPeer) -> None:
    import httpx

    from commune_collector.provinces import provinces

    doc = httpx.get(f"{collector.url}/openapi.json", headers=collector.headers, timeout=10).json()
    errors = {(path, method, code): response.get("content", {})
              for path, operations in doc["paths"].items() for method, operation in operations.items()
              for code, response in operation["responses"].items() if int(code) >= 400}
    assert errors and all(list(content) == ["application/problem+json"] for content in errors.values()), errors
    assert ("/api/v1/reports", "post", "503") in errors and ("/api/v1/sites", "get", "503") in errors
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    params = {(path, p["name"]): p["schema"] for path, operations in doc["paths"].items()
              for operation in operations.values() for p in operation.get("parameters", [])}
    province = params[("/api/v1/sites", "province")]["anyOf"][0]
    assert province["enum"] == sorted(provinces()) and "pattern" not in province
    assert params[("/api/v1/provinces/{slug}", "slug")]["enum"] == sorted(provinces())
    assert "power" in params[("/api/v1/verdicts", "item")]["anyOf"][0]["enum"]
