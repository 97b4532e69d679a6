"""Fleet management end to end: real ``commune-agent`` processes against a real ``commune-collector serve``.

One enrollment token enrolls every site (``commune-agent enroll``, the site token stored 0600); the agents
run centrally managed (``collector.managed: true``) and pull their checks from the collector. Every check
is a TCP connect to the collector's own loopback port (tests/fleet_support.loopback_profile), never an
address from a generated config. Probes run every second with no jitter, so each check's rounds sit on a
1 s grid: a lost round is a gap, a duplicate a repeated timestamp, and a check whose phase was disturbed by
a config change shows as a step off the grid.

Scenario (SQLite with 5 and with 20 agents; PostgreSQL with 3): a typo in the site gets the nearest names; a profile
change reaches every agent within two poll intervals with nothing lost or duplicated; a change the agents'
model refuses is refused by all of them, which keep running the last good config, and the error is visible
at the center (API and metric); a replaced box re-enrolls only once the operator allowed it.
"""

from __future__ import annotations

import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from commune_collector.inventory import sites_to_csv
from tests.fleet_support import sites, write_profile
from testsupport.collector import CollectorProcess, program
from testsupport.peers._base import ManagedProcess, free_tcp_port, wait_until
from testsupport.peers.postgres import PostgresPeer

pytestmark = pytest.mark.slow

POLL = 3.0  # collector.config_poll_interval of every agent, seconds (jittered by +-20 %)
PUSH = 1.0  # probe interval and push interval
UNCHANGED = "link/fiber/tcp/collector"  # in every version of the profile
ADDED = "link/fiber/tcp/collector-again"  # added by the profile change


class Box:
    """One site's mini PC: a state dir, an enrollment, a ``commune-agent run``."""

    def __init__(self, root: Path, site: str, collector_url: str):
        self.root, self.site, self.collector_url = root, site, collector_url
        root.mkdir(parents=True, exist_ok=True)
        self.state = root / "state"
        self.config = root / "agent.yaml"
        self.port = free_tcp_port()
        self.process: ManagedProcess | None = None

    def enroll(self, token_file: Path, site: str | None = None) -> Any:
        import subprocess
        return subprocess.run([program("commune-agent"), "enroll", "--collector", self.collector_url,
                               "--token-file", str(token_file), "--site", site or self.site,
                               "--state-dir", str(self.state), "--config", str(self.config)],
                              capture_output=True, text=True, timeout=60, check=False)

    def tune(self) -> None:
        """The config `enroll` wrote, with this test's listen port and short intervals."""
        data = yaml.safe_load(self.config.read_text(encoding="utf-8"))
        assert data["collector"]["managed"] is True and data["site"]["id"] == self.site
        data["agent"].update({"listen": f"127.0.0.1:{self.port}", "jitter": 0})
        data["collector"].update({"push_interval": f"{PUSH:g}s", "config_poll_interval": f"{POLL:g}s",
                                  "timeout": "2s", "backoff_max": "2s"})
        self.config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """From the test's main thread: a child dies with the thread that started it (PR_SET_PDEATHSIG)."""
        self.process = ManagedProcess([program("commune-agent"), "run", "--config", str(self.config)],
                                      self.root / "agent.log")
        self.process.start()

    def wait_ready(self) -> None:
        wait_until(lambda: self.metrics(), timeout=60, what=f"the agent of {self.site} to serve /metrics",
                   abort=self.died)

    def died(self) -> str | None:
        if self.process is not None and self.process.exit_code() is not None:
            return f"agent of {self.site} exited: {self.process.log_path.read_text()[-2000:]}"
        return None

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=3).text
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples}

    def rounds(self) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for (name, labels), value in self.metrics().items():
            if name == "commune_agent_probe_rounds_total":
                out[dict(labels)["check"]] += value
        return dict(out)

    def value(self, name: str, **labels: str) -> float | None:
        return self.metrics().get((name, tuple(sorted(labels.items()))))

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


class Center:
    """The collector process and what it holds."""

    def __init__(self, root: Path, dsn: str | None, fleet: str = "", profile: Path | None = None):
        """``profile``: another Center's profile file (replicas on one database serve one profile)."""
        self.profile = profile or root / "agent-profile.yaml"
        database = f"database: {{dsn: '{dsn}'}}\n" if dsn else ""
        self.dsn = dsn
        self.process = CollectorProcess(root, f"aggregator: {{interval: 1h, process: false}}\n"
                                              f"auth: {{cache_ttl: 0s}}\n{database}"
                                              f"fleet: {{profile: {self.profile}, live_within: 10m{fleet}}}\n")
        if profile is None:
            write_profile(self.profile, self.process.port)
        self.url = self.process.url

    def open_province(self, root: Path, n: int) -> tuple[Path, list[Box]]:
        """Import n sites, start the collector, make one enrollment token for them all and a box per site."""
        inventory = root / "sites.csv"
        inventory.write_text(sites_to_csv(sites(n)), encoding="utf-8")
        self.process.cli("sites", "import", str(inventory))
        self.process.start()
        token_file = root / "enroll-token"
        token_file.write_text(self.process.cli("enroll-token", "create", "--province", "ha-noi", "--max-uses", str(n)))
        token_file.chmod(0o600)
        return token_file, [Box(root / f"box-{i}", s.id, self.url) for i, s in enumerate(sites(n))]

    def agent(self, site: str) -> dict[str, Any]:
        """The site's agent as the fleet view shows it to a national operator."""
        headers = {"Authorization": f"Bearer {self.process.operator_token}"}
        response = httpx.get(f"{self.url}/api/v1/sites/{site}/agent", headers=headers, timeout=5)
        response.raise_for_status()
        return response.json()

    def metric_sites(self, name: str) -> dict[str, float]:
        """Each site's sample of a per-site family on the collector's /metrics."""
        headers = {"Authorization": f"Bearer {self.process.operator_token}"}
        response = httpx.get(f"{self.url}/metrics", headers=headers, timeout=5)
        response.raise_for_status()
        return {s.labels["site"]: s.value for family in text_string_to_metric_families(response.text)
                for s in family.samples
                if s.name == name}

    def stamps(self) -> dict[tuple[str, str], list[float]]:
        """(site, check) -> the agent timestamps of every round the journal holds."""
        from commune_collector.store.journal import unpack
        if self.dsn:
            import psycopg
            with psycopg.connect(self.dsn) as conn:
                rows = conn.execute("SELECT body FROM journal").fetchall()
        else:
            db = sqlite3.connect(f"file:{self.process.data / 'collector.db'}?mode=ro", uri=True, timeout=10)
            try:
                rows = db.execute("SELECT body FROM journal").fetchall()
            finally:
                db.close()
        out: dict[tuple[str, str], list[float]] = defaultdict(list)
        for (body,) in rows:
            report = unpack(bytes(body))
            for r in report.results:
                out[(report.site, r.check)].append(r.ts)
        return out


def _all(boxes: list[Box], center: Center, test: Any, what: str, timeout: float) -> None:
    def done() -> bool:
        return all(test(center.agent(b.site)) for b in boxes)
    wait_until(done, timeout=timeout, interval=0.25, what=what, abort=lambda: next(
        (reason for b in boxes if (reason := b.died())), None))


def _assert_on_grid(stamps: list[float], what: str) -> None:
    """One process's rounds of one check: every step one interval (nothing lost, repeated or re-phased)."""
    stamps = sorted(stamps)
    assert stamps, f"{what}: no round stored"
    repeated = [ts for ts, n in Counter(stamps).items() if n > 1]
    assert not repeated, f"{what}: rounds stored twice at {repeated[:3]}"
    bad = [(round(a, 2), round(b - a, 2)) for a, b in zip(stamps, stamps[1:], strict=False)
           if not 0.5 * PUSH <= b - a <= 1.5 * PUSH]
    assert not bad, f"{what}: rounds missing or off the grid after (ts, step): {bad[:5]}"


def _settle(boxes: list[Box], center: Center) -> dict[tuple[str, str], list[float]]:
    """Wait until every agent's spool is empty and the collector holds every round each had run."""
    produced: dict[tuple[str, str], float] = {}
    for box in boxes:
        wait_until(lambda b=box: b.value("commune_agent_spool_reports") == 0, timeout=60, interval=0.2,
                   what=f"the spool of {box.site} to drain", abort=box.died)
        produced.update({(box.site, check): n for check, n in box.rounds().items()})

    def caught_up() -> dict[tuple[str, str], list[float]] | None:
        held = center.stamps()
        return held if all(len(held.get(k, [])) >= n for k, n in produced.items()) else None
    return wait_until(caught_up, timeout=60, interval=0.5, what="the collector to hold every round")


# the 20 agents on either store ("the same against PostgreSQL"); a 5-agent SQLite run added nothing
# the 20 do not show and cost CI a minute and a half
@pytest.fixture(params=[("postgres", 20), ("sqlite", 20)], ids=["postgres-20", "sqlite-20"])
def center(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Center, int]]:
    database, agents = request.param
    with running_center(database, tmp_path) as c:
        yield c, agents


@contextmanager
def running_center(database: str, root: Path, fleet: str = "") -> Iterator[Center]:
    """A Center on a throwaway PostgreSQL (``postgres``) or on its own SQLite file; stopped after."""
    with ExitStack() as stack:
        dsn = stack.enter_context(PostgresPeer()).dsn if database == "postgres" else None
        c = Center(root, dsn, fleet)
        try:
            yield c
        finally:
            c.process.stop()


def test_a_province_enrolls_takes_its_config_from_the_center_and_refuses_a_bad_one(
        center: tuple[Center, int], tmp_path: Path) -> None:
    c, n = center
    token_file, boxes = c.open_province(tmp_path, n)
    try:
        # a typo gets the nearest names, in plain words; nothing is enrolled, no use is spent
        typo = boxes[0].enroll(token_file, site="hn-site-O0")  # a letter O for a zero
        assert typo.returncode == 1 and "did you mean" in typo.stderr and "hn-site-00" in typo.stderr, typo.stderr
        with ThreadPoolExecutor(4) as pool:  # installers at several sites at once
            enrolled = list(pool.map(lambda b: b.enroll(token_file), boxes))
        for box, done in zip(boxes, enrolled, strict=True):
            assert done.returncode == 0, done.stderr
            token = box.state / "token"
            assert token.stat().st_mode & 0o777 == 0o600
            assert token.read_text().strip() not in done.stdout + done.stderr  # never printed
            box.tune()
        for box in boxes:
            box.launch()
        for box in boxes:
            box.wait_ready()
        v1 = {b.site: c.agent(b.site)["desired_config_version"] for b in boxes}  # each site's own config
        _all(boxes, c, lambda a: a.get("config_version") == v1[a["site"]], "every agent to apply the first config",
             60)

        # a profile change reaches every agent within two poll intervals (plus a report's trip)
        write_profile(c.profile, c.process.port, extra_target=True)
        v2 = {b.site: c.agent(b.site)["desired_config_version"] for b in boxes}
        assert all(v2[s] != v1[s] for s in v1)
        _all(boxes, c, lambda a: a.get("config_version") == v2[a["site"]], "every agent to apply the changed config",
             2 * POLL * 1.2 + 3 * PUSH + 5)
        for box in boxes:
            wait_until(lambda b=box: b.rounds().get(ADDED, 0) >= 2, timeout=30, what="the added check to run")

        # a change the agents' model refuses: refused everywhere, the last good config keeps running
        write_profile(c.profile, c.process.port, extra_target=True, timeout="5s")
        _all(boxes, c, lambda a: a.get("config_version") == v2[a["site"]] and "longer than the interval" in (
            a.get("config_error") or ""), "every agent to refuse the bad config and say so", 60)
        assert c.metric_sites("commune_collector_fleet_config_apply_error") == {b.site: 1.0 for b in boxes}
        assert all("config_apply_error" in [w["kind"] for w in c.agent(b.site)["warnings"]] for b in boxes)
        before = {b.site: b.rounds()[ADDED] for b in boxes}
        for box in boxes:
            wait_until(lambda b=box: b.rounds()[ADDED] >= before[b.site] + 2, timeout=30,
                       what="the last good config to keep running")
        write_profile(c.profile, c.process.port, extra_target=True)  # the operator fixes the profile
        _all(boxes, c, lambda a: a.get("config_version") == v2[a["site"]] and not a.get("config_error"),
             "the error to clear once a good config is served", 60)

        held = _settle(boxes, c)
        for box in boxes:
            _assert_on_grid(held[(box.site, UNCHANGED)], f"{box.site} {UNCHANGED} (across every change)")
            _assert_on_grid(held[(box.site, ADDED)], f"{box.site} {ADDED}")
            assert (box.site, "host") not in held or len(held[(box.site, "host")]) < 10  # only before v1

        # a replaced box: refused while the old one is live, enrolled once the operator allowed it
        site = boxes[0].site
        spare_token = tmp_path / "spare-token"
        spare_token.write_text(c.process.cli("enroll-token", "create", "--sites", site, "--max-uses", "2"))
        spare = Box(tmp_path / "spare", site, c.url)
        refused = spare.enroll(spare_token)
        assert refused.returncode == 1 and f"allow-reenroll {site}" in refused.stderr, refused.stderr
        c.process.cli("enroll-token", "allow-reenroll", site)
        replaced = spare.enroll(spare_token)
        assert replaced.returncode == 0 and "re-enrolled" in replaced.stderr, replaced.stderr
        wait_until(lambda: (boxes[0].value("commune_agent_push_failures_total", reason="http_401") or 0) > 0,
                   timeout=30, what="the old box's token to be refused")
        spare.tune()
        spare.start()
        boxes.append(spare)
        instances = {e["instance"] for e in c.agent(site)["enrollments"]}
        assert len(instances) == 2
        _all([spare], c, lambda a: a.get("config_version") == v2[site] and a["instance"] not in
             {e["instance"] for e in a["enrollments"] if not e["reenrolled"]},
             "the new box to push with the config", 60)
    finally:
        for box in boxes:
            box.stop()
