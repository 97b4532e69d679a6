"""Agent process to collector process on loopback: outages, a cut link, kill -9; every result stored once.

Real ``commune-collector serve`` (SQLite in a temp dir) and real
``commune-agent run`` as subprocesses, a token issued with the collector's
CLI. Probes run every second with no jitter, so each check's rounds sit on a
1 s grid: a lost round is a gap in the grid, a duplicate is a repeated
timestamp, and "stored exactly once" is checked against that grid and against
the agent's own round counter.

What the collector stores is read from its SQLite file: raw reports from the
journal (the aggregator runs hourly in these tests, so the journal keeps them)
plus the hourly summaries a graceful stop folds the journal into.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from commune_common.wire import CheckResult
from testsupport.collector import CollectorProcess, http_get, in_netns, program
from testsupport.linkemu import ImpairedLink, LinkError, impaired_link, require_root_netns
from testsupport.peers._base import ManagedProcess, free_tcp_port, wait_until

pytestmark = pytest.mark.slow

SITE = "site-e2e"
INTERVAL = 1.0  # probe interval and push interval, seconds
CHECKS = 2  # the agent's config below: one tcp check and the host check


# -- processes --------------------------------------------------------------------------


class Collector(CollectorProcess):
    """The collector of these tests: its aggregator runs hourly and in-process, so reports stay raw
    in the journal (a SIGKILL leaves no folder behind to fold them)."""

    def __init__(self, root: Path, host: str = "127.0.0.1", netns: str | None = None):
        super().__init__(root, "aggregator: {interval: 1h, process: false}\n", host, netns)

    def stored(self) -> Stored:
        return read_collector(self.data / "collector.db")


class Agent:
    """A real ``commune-agent run`` pushing to the collector, optionally inside a namespace."""

    def __init__(self, root: Path, collector_url: str, probe_target: str, token_file: Path,
                 netns: str | None = None):
        self.root, self.netns = root, netns
        self.port = free_tcp_port()
        self.state = root / "agent-state"
        host, port = probe_target.rsplit(":", 1)
        self.config = root / "agent.yaml"
        self.config.write_text(f"""
site: {{id: {SITE}, province: ha-noi, commune: Phường Ba Đình}}
agent: {{listen: "127.0.0.1:{self.port}", state_dir: {self.state}, jitter: 0}}
defaults: {{interval: {INTERVAL:g}s, timeout: 500ms}}
links:
  - name: fiber
    targets:
      - {{probe: tcp, name: collector, host: {host}, port: {port}}}
host: {{enabled: true}}
collector:
  url: {collector_url}
  token_file: {token_file}
  push_interval: {INTERVAL:g}s
  timeout: 2s
  backoff_max: 2s
""", encoding="utf-8")
        self.process: ManagedProcess | None = None
        self.starts = 0
        self.started_at = 0.0

    def start(self) -> None:
        self.starts += 1
        self.started_at = time.time()
        self.process = ManagedProcess(in_netns(self.netns, [program("commune-agent"), "run", "--config",
                                                             str(self.config)]),
                                      self.root / f"agent-{self.starts}.log")
        self.process.start()
        wait_until(lambda: self.value("commune_agent_spool_reports") is not None, timeout=60,
                   what="the agent's /metrics with its pusher running", abort=self._died)

    def _died(self) -> str | None:
        if self.process is not None and self.process.exit_code() is not None:
            return f"agent exited: {self.process.log_path.read_text()[-2000:]}"
        return None

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = http_get(f"http://127.0.0.1:{self.port}/metrics", self.netns)
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    def value(self, name: str, **labels: str) -> float | None:
        """One sample's value; None when the agent does not expose it (yet)."""
        return self.metrics().get((name, tuple(sorted(labels.items()))))

    def rounds(self) -> dict[str, float]:
        """Rounds this agent process has run, by check (its scheduler's own count)."""
        out: dict[str, float] = defaultdict(float)
        for (name, labels), value in self.metrics().items():
            if name == "commune_agent_probe_rounds_total":
                out[dict(labels)["check"]] += value
        return dict(out)

    def wait(self, condition: Callable[[Agent], bool], what: str, timeout: float = 60) -> None:
        wait_until(lambda: condition(self), timeout=timeout, interval=0.2, what=what, abort=self._died)

    def kill(self) -> float:
        assert self.process is not None and self.process.pid is not None
        os.kill(self.process.pid, signal.SIGKILL)
        wait_until(lambda: self.process.exit_code() is not None, timeout=10, what="the agent to die")
        return time.time()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def spooled(self) -> list[CheckResult]:
        """Results in the agent's spool (read while the agent is dead)."""
        db = sqlite3.connect(self.state / "spool.db")
        try:
            rows = db.execute("SELECT body FROM batches WHERE rejected IS NULL ORDER BY id").fetchall()
        finally:
            db.close()
        decoder = msgspec.json.Decoder(list[CheckResult])
        return [r for (body,) in rows for r in decoder.decode(zlib.decompress(body))]


# -- what the collector holds -------------------------------------------------------------


@dataclass
class Stored:
    raw: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # journal: agent ts
    folded: dict[str, list[tuple[int, float, float]]] = field(default_factory=lambda: defaultdict(list))
    instances: set[str] = field(default_factory=set)

    def count(self, check: str) -> int:
        return len(self.raw.get(check, [])) + sum(n for n, _, _ in self.folded.get(check, []))

    def checks(self) -> set[str]:
        return set(self.raw) | set(self.folded)

    def span(self, check: str) -> tuple[float, float]:
        firsts = [*self.raw.get(check, []), *(f for _, f, _ in self.folded.get(check, []))]
        lasts = [*self.raw.get(check, []), *(la for _, _, la in self.folded.get(check, []))]
        return min(firsts), max(lasts)


def read_collector(db_path: Path) -> Stored:
    """Every result the collector holds for the site, raw where the journal still has it."""
    from commune_collector.store.journal import unpack

    stored = Stored()
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        for (body,) in db.execute("SELECT body FROM journal WHERE site = ?", (SITE,)):
            report = unpack(body)
            stored.instances.add(report.instance)
            for r in report.results:
                stored.raw[r.check].append(r.ts)
        for check, ok, fail, first, last in db.execute(
                "SELECT check_id, rounds_ok, rounds_fail, first_ts, last_ts FROM summaries WHERE site = ?", (SITE,)):
            stored.folded[check].append((ok + fail, first, last))
    finally:
        db.close()
    return stored


def assert_no_duplicates(stored: Stored) -> None:
    for check, stamps in stored.raw.items():
        repeated = [ts for ts, n in Counter(stamps).items() if n > 1]
        assert not repeated, f"{check}: rounds stored more than once at {repeated[:5]}"


def assert_gap_free(stamps: list[float], what: str) -> None:
    """Rounds of one agent process on the 1 s grid: no gap (lost) and no repeat (duplicate)."""
    stamps = sorted(stamps)
    steps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    bad = [(round(a, 2), round(s, 2)) for a, s in zip(stamps, steps, strict=False)
           if not 0.5 * INTERVAL <= s <= 1.5 * INTERVAL]
    assert not bad, f"{what}: rounds missing or repeated after (ts, step): {bad[:5]}"


def assert_exactly_once_one_process(stored: Stored, produced: dict[str, float]) -> None:
    """One agent process: per check, stored rounds == the grid between first and last, >= rounds run."""
    assert_no_duplicates(stored)
    assert set(produced) <= stored.checks(), f"checks never stored: {set(produced) - stored.checks()}"
    for check in produced:
        first, last = stored.span(check)
        expected = round((last - first) / INTERVAL) + 1
        assert stored.count(check) == expected, (
            f"{check}: {stored.count(check)} rounds stored over a span holding {expected} (lost or duplicated)")
        assert stored.count(check) >= produced[check], (
            f"{check}: the agent ran {produced[check]:.0f} rounds, the collector holds {stored.count(check)}")
        if stored.raw.get(check) and not stored.folded.get(check):
            assert_gap_free(stored.raw[check], check)


def settle(agent: Agent, collector: Collector, since: float | None = None) -> tuple[Stored, dict[str, float]]:
    """Wait until the spool is empty and the collector holds every round the agent had run by then.

    ``since``: count only raw rounds from then on (the current agent process's).
    """
    agent.wait(lambda a: len(a.rounds()) == CHECKS and min(a.rounds().values()) >= 3, "a few rounds of every check")
    agent.wait(lambda a: a.value("commune_agent_spool_reports") == 0
               and a.value("commune_agent_push_backoff_seconds") == 0, "the agent's spool to drain")
    produced = agent.rounds()

    def held(stored: Stored, check: str) -> int:
        if since is None:
            return stored.count(check)
        return sum(1 for ts in stored.raw.get(check, []) if ts >= since)

    def caught_up() -> Stored | None:
        stored = collector.stored()
        return stored if all(held(stored, c) >= n for c, n in produced.items()) else None
    return wait_until(caught_up, timeout=30, interval=0.2, what="the collector to hold every round"), produced


def outage_spooled(agent: Agent, batches: int) -> None:
    agent.wait(lambda a: (a.value("commune_agent_spool_reports") or 0) >= batches,
               f"the agent to spool {batches} batches while the collector is unreachable")


def set_loss(link: ImpairedLink, loss: float) -> None:
    """Change the emulated link's loss; if the emulator is gone, say why (its log)."""
    try:
        link.set(loss=loss)
    except (OSError, LinkError) as exc:
        state = link.process.poll() if link.process else None
        pytest.fail(f"link emulator unusable ({exc}); exit status {state}; log:\n{link.log_path.read_text()[-2000:]}"
                    if link.log_path.exists() else f"link emulator unusable ({exc}); exit status {state}")


# -- the scenarios ----------------------------------------------------------------------------


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path


def test_collector_stopped_and_restarted(workdir: Path) -> None:
    collector = Collector(workdir)
    token = workdir / "token"
    collector.enrol(SITE, token)
    collector.start()
    agent = Agent(workdir, collector.url, f"127.0.0.1:{collector.port}", token)
    agent.start()
    try:
        agent.wait(lambda a: (a.value("commune_agent_push_reports_acked_total") or 0) >= 3, "first acks")
        collector.stop()  # graceful: its last aggregator pass folds the journal into summaries
        outage_spooled(agent, 6)
        assert (agent.value("commune_agent_push_failures_total", reason="connect") or 0) >= 1
        collector.start()
        stored, produced = settle(agent, collector)
        assert stored.folded and stored.raw  # both halves of the read path were exercised
        assert_exactly_once_one_process(stored, produced)
        assert len(stored.instances) == 1
        assert agent.value("commune_agent_spool_dropped_results_total", reason="size") is None  # nothing dropped
    finally:
        agent.stop()
        collector.stop()


def test_link_cut_in_a_network_namespace(workdir: Path) -> None:
    require_root_netns()
    with impaired_link(delay_ms=2.0, seed=7, ipv6=False) as link:
        collector = Collector(workdir, host=link.far_ip, netns=link.ns_far)
        token = workdir / "token"
        collector.enrol(SITE, token)
        collector.start()
        agent = Agent(workdir, collector.url, f"{link.far_ip}:{collector.port}", token, netns=link.ns_near)
        agent.start()
        try:
            agent.wait(lambda a: (a.value("commune_agent_push_reports_acked_total") or 0) >= 3, "first acks")
            set_loss(link, 1.0)  # the link is cut: nothing crosses, in either direction
            outage_spooled(agent, 6)
            failures = sum(v for (n, _), v in agent.metrics().items() if n == "commune_agent_push_failures_total")
            assert failures >= 1
            set_loss(link, 0.0)
            stored, produced = settle(agent, collector)
            assert not stored.folded  # the collector never stopped: everything is raw
            assert_exactly_once_one_process(stored, produced)
        finally:
            agent.stop()
            collector.stop()


def test_agent_killed_while_spooling(workdir: Path) -> None:
    collector = Collector(workdir)
    token = workdir / "token"
    collector.enrol(SITE, token)
    collector.start()
    agent = Agent(workdir, collector.url, f"127.0.0.1:{collector.port}", token)
    agent.start()
    try:
        agent.wait(lambda a: (a.value("commune_agent_push_reports_acked_total") or 0) >= 3, "first acks")
        collector.stop(signal.SIGKILL)  # a crash: the journal keeps every report raw
        outage_spooled(agent, 5)
        killed_at = agent.kill()
        spooled = agent.spooled()
        assert len(spooled) >= 10
        first_run_started = agent.started_at

        collector.start()
        agent.start()
        stored, produced = settle(agent, collector, since=agent.started_at)
    finally:
        agent.stop()
        collector.stop()

    assert not stored.folded and len(stored.instances) == 1  # the restarted agent kept its instance
    assert_no_duplicates(stored)
    held = {(c, ts) for c, stamps in stored.raw.items() for ts in stamps}
    missing = {(r.check, r.ts) for r in spooled} - held
    assert not missing, f"spooled before kill -9 but never stored: {sorted(missing)[:5]}"
    for check in produced:
        stamps = sorted(stored.raw[check])
        first_run = [ts for ts in stamps if first_run_started <= ts < killed_at]
        second_run = [ts for ts in stamps if ts >= agent.started_at]
        assert len(first_run) + len(second_run) == len(stamps)
        assert_gap_free(first_run, f"{check} before the kill")
        assert_gap_free(second_run, f"{check} after the restart")
        assert len(second_run) >= produced[check]
        # only the batch not yet spooled may be lost: at most one push interval (plus the round in flight)
        lost_window = killed_at - first_run[-1]
        assert lost_window <= 2 * INTERVAL + 1.0, f"{check}: {lost_window:.1f}s of rounds lost before the kill"
