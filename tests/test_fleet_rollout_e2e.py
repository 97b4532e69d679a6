"""A staged rollout end to end: real ``commune-agent run`` processes, centrally managed, one collector,
20 agents on SQLite and 20 on PostgreSQL.

The machinery is tests/test_fleet_e2e.py's (Box, Center). Scenario: a candidate that adds a TCP check to a
loopback port bound by the test but never listening (every round refused) goes to 25 % of the sites by
``commune-collector rollout start``; the canaries apply it, their checks fail, the collector halts the
rollout by itself and serves them the old version again, which they apply; the other sites never ran it.
The operator rolls it back through the API. A good candidate then goes to 25 % (API), is widened to 50 %
(CLI: the next sites by hash are served it too, no other) and promoted (CLI), and reaches every agent. The
journal then holds every round of the check no version changed, once each, on its 1 s grid across all of it.

Both stores run the issue's 20 agents: its test is "the same against PostgreSQL", and the 25 % of 20
holds the halt rule's three canaries (``min_sites``) with the 50 % adding more, so widening is seen.

Replicas: two ``commune-collector serve`` on one PostgreSQL database serve the candidate to a canary
within ``fleet.rollout.check_every`` of a ``rollout start`` run as its own process (and every site after
``rollout promote``): each follows the store on its own, nothing tells it.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from commune_collector.fleet.rollout import is_canary
from commune_collector.inventory import sites_to_csv
from tests.fleet_support import loopback_profile, sites
from tests.test_fleet_e2e import (
    POLL,
    UNCHANGED,
    Center,
    _all,
    _assert_on_grid,
    _settle,
    running_center,
)
from testsupport.peers._base import wait_until
from testsupport.peers.postgres import PostgresPeer

pytestmark = pytest.mark.slow

BROKEN = "link/fiber/tcp/nobody"
ADDED = "link/fiber/tcp/collector-again"


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port held by the test and never listening: a connect to it is refused, every time."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def _api(c: Center, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {c.process.operator_token}"}
    response = httpx.request(method, f"{c.url}/api/v1{path}", json=body, headers=headers, timeout=30)
    assert response.status_code < 300, response.text
    return response.json()


def _status(c: Center) -> dict[str, Any]:
    return json.loads(c.process.cli("rollout", "status", "--json"))


def _halted_metric(c: Center) -> float:
    headers = {"Authorization": f"Bearer {c.process.operator_token}"}
    text = httpx.get(f"{c.url}/metrics", headers=headers, timeout=5).text
    return max(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "commune_collector_rollout_halted")


@pytest.fixture(params=[("postgres", 20), ("sqlite", 20)], ids=["postgres-20", "sqlite-20"])
def center(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Center, int]]:
    database, agents = request.param
    with running_center(database, tmp_path, ", rollout: {check_every: 1s, min_results: 20}") as c:
        yield c, agents


def _served_new(c: Center, v1: dict[str, str]) -> set[str]:
    """The sites served another version than their first."""
    return {site for site in v1 if c.agent(site)["desired_config_version"] != v1[site]}


def test_a_staged_rollout_halts_when_its_canaries_fail_and_a_good_one_is_promoted(
        center: tuple[Center, int], tmp_path: Path, closed_port: int) -> None:
    c, n = center
    token_file, boxes = c.open_province(tmp_path, n)
    canaries = {s.id for s in sites(n) if is_canary(s.id, s.province, 25, ())}
    half = {s.id for s in sites(n) if is_canary(s.id, s.province, 50, ())}
    assert 3 <= len(canaries) < len(half) < n  # enough canaries to judge their silence; widening adds some
    try:
        with ThreadPoolExecutor(4) as pool:
            assert all(done.returncode == 0 for done in pool.map(lambda b: b.enroll(token_file), boxes))
        for box in boxes:
            box.tune()
            box.launch()
        for box in boxes:
            box.wait_ready()
        v1 = {b.site: c.agent(b.site)["desired_config_version"] for b in boxes}
        _all(boxes, c, lambda a: a.get("config_version") == v1[a["site"]], "every agent on the first config", 60)

        # a change that breaks a check, to 25 %: the canaries run it, fail, and the rollout halts by itself
        broken = tmp_path / "candidate-broken.yaml"
        broken.write_text(loopback_profile(c.process.port, closed_port=closed_port), encoding="utf-8")
        rollout = c.process.cli("rollout", "start", "--profile", str(broken), "--percent", "25",
                                "--note", "thêm kiểm tra").strip()
        assert _status(c)["adoption"]["canaries"] == len(canaries)
        wait_until(lambda: _status(c)["state"] == "halted", timeout=4 * POLL + 30, interval=0.5,
                   what="the rollout to halt by itself")
        halted = _status(c)
        assert "checks on the new version fail" in halted["halt_reason"]
        assert halted["new"]["fail_rate"] >= 0.25 and halted["old"]["fail_rate"] == 0.0
        assert halted["old"]["results"] > 0 and halted["new"]["results"] >= 20
        assert [(e["action"], e["actor"]) for e in halted["history"]] == [
            ("started", halted["started_by"]), ("halted", "collector")]
        assert _halted_metric(c) == 1.0
        # every agent on the old version again; only the canaries ever ran the broken check
        _all(boxes, c, lambda a: a.get("config_version") == v1[a["site"]], "the canaries back on the old version",
             2 * POLL * 1.2 + 10)
        ran = {b.site for b in boxes if b.rounds().get(BROKEN, 0) > 0}
        assert ran and ran <= canaries

        rolled = _api(c, "POST", f"/rollouts/{rollout}/rollback", {"reason": "cổng sai (wrong port)"})
        assert rolled["state"] == "rolled_back" and rolled["history"][-1]["detail"] == "cổng sai (wrong port)"
        wait_until(lambda: _halted_metric(c) == 0.0, timeout=10, what="the halt to clear")

        # a good change: 25 % (API), widened to 50 % and promoted (CLI); it reaches every agent
        good = loopback_profile(c.process.port, extra_target=True)
        started = _api(c, "POST", "/rollouts", {"profile": good, "name": "candidate-good.yaml", "percent": 25})
        assert started["state"] == "running" and started["adoption"]["touched"] == n
        assert _served_new(c, v1) == canaries  # an API write is followed at once on its replica
        c.process.cli("rollout", "promote", "--percent", "50")
        wait_until(lambda: _served_new(c, v1) == half, timeout=15, interval=0.5,
                   what="the widened share to be served the candidate")
        c.process.cli("rollout", "promote")
        def served() -> dict[str, str] | None:  # the collector follows the CLI's write within check_every
            now = {b.site: c.agent(b.site)["desired_config_version"] for b in boxes}
            return now if all(now[s] != v1[s] for s in v1) else None
        v2 = wait_until(served, timeout=15, interval=0.5, what="the promoted candidate to be served to every site")
        _all(boxes, c, lambda a: a.get("config_version") == v2[a["site"]], "every agent on the promoted config",
             2 * POLL * 1.2 + 10)
        done = _api(c, "GET", f"/rollouts/{started['id']}")
        assert done["state"] == "promoted" and [e["action"] for e in done["history"]] == [
            "started", "widened", "promoted"]
        assert done["adoption"]["canaries_on_new"] + done["adoption"]["others_on_new"] == n
        for box in boxes:
            wait_until(lambda b=box: b.rounds().get(ADDED, 0) >= 1, timeout=30, what="the added check to run")
        # the fleet view has each agent's spool as its last report said: a backlog of its own report, no drops
        view = {r["site"]: r for r in _api(c, "GET", "/fleet")["sites"]}
        assert all(view[b.site]["spool_reports"] is not None and view[b.site]["spool_dropped_results"] == 0
                   for b in boxes), [view[b.site] for b in boxes][:2]
        # and the center holds every round of the unchanged check once, on its grid, across every change
        held = _settle(boxes, c)
        for box in boxes:
            _assert_on_grid(held[(box.site, UNCHANGED)], f"{box.site} {UNCHANGED} (across the rollouts)")
    finally:
        for box in boxes:
            box.stop()


EVERY = 2.0  # fleet.rollout.check_every of both replicas, seconds
# a replica follows the store at its next pass: check_every, plus that pass's own reads and one request's trip
# (slack for a loaded 2-core machine; a replica that only learned of the rollout on an API write would miss it)
FOLLOWED_WITHIN = EVERY + 2.0


def _served(replica: Center, site_token: str) -> str:
    """The config version the replica serves the site's agent (GET /api/v1/agent-config, as the agent asks)."""
    response = httpx.get(f"{replica.url}/api/v1/agent-config", timeout=5,
                         headers={"Authorization": f"Bearer {site_token}"})
    response.raise_for_status()
    return str(response.json()["version"])


def test_a_rollout_started_from_the_cli_is_served_by_every_replica_within_check_every(tmp_path: Path) -> None:
    with PostgresPeer() as pg:
        fleet = f", rollout: {{check_every: {EVERY:g}s}}"
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        a = Center(tmp_path / "a", pg.dsn, fleet)
        b = Center(tmp_path / "b", pg.dsn, fleet, profile=a.profile)
        all_sites = sites(5)
        canary, other = (next(s.id for s in all_sites if is_canary(s.id, s.province, 25, ()) is want)
                         for want in (True, False))
        inventory = tmp_path / "sites.csv"
        inventory.write_text(sites_to_csv(all_sites), encoding="utf-8")
        a.process.cli("sites", "import", str(inventory))
        tokens = {s: a.process.cli("token", "issue", s).strip() for s in (canary, other)}
        try:
            a.process.start()
            b.process.start()
            replicas = (a, b)
            v1 = {s: _served(a, t) for s, t in tokens.items()}
            assert all(_served(b, t) == v1[s] for s, t in tokens.items())  # one profile, one version everywhere

            def versions() -> list[dict[str, str]]:
                return [{s: _served(r, t) for s, t in tokens.items()} for r in replicas]

            def everywhere(changed: set[str]) -> list[dict[str, str]] | None:
                now = versions()
                return now if all({s for s in v1 if seen[s] != v1[s]} == changed for seen in now) else None

            candidate = tmp_path / "candidate.yaml"
            candidate.write_text(loopback_profile(a.process.port, extra_target=True), encoding="utf-8")
            a.process.cli("rollout", "start", "--profile", str(candidate), "--percent", "25")  # its own process
            started = wait_until(lambda: everywhere({canary}), timeout=FOLLOWED_WITHIN, interval=0.1,
                                 what="both replicas to serve the candidate to the canary")
            assert started[0] == started[1]  # the same candidate version from either replica

            a.process.cli("rollout", "promote")
            wait_until(lambda: everywhere({canary, other}), timeout=FOLLOWED_WITHIN, interval=0.1,
                       what="both replicas to serve the promoted candidate to every site")
        finally:
            a.process.stop()
            b.process.stop()
