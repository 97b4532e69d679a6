"""The running agent's log says what it does: start lines, first ack, summaries, drops once per change.

Unit tests drive the narrator over a stand-in for the pusher's counters (it
reads nothing else); one end-to-end test runs `commune-agent run` against a
real collector process and reads its log.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from commune_agent.checks import build_checks
from commune_agent.config import load_agent_config
from commune_agent.narrator import PushNarrator, start_lines
from commune_agent.push.metrics import PushStats
from commune_agent.spool import DropCounts, SpoolStats
from testsupport.collector import CollectorProcess
from testsupport.peers._base import free_tcp_port, wait_until

ROOT = Path(__file__).resolve().parents[1]
AGENT = str(Path(sys.executable).with_name("commune-agent"))


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def fake_pusher() -> SimpleNamespace:
    return SimpleNamespace(stats=PushStats(), spool=SimpleNamespace(stats=SpoolStats(), drops=DropCounts()))


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    out = [r.getMessage() for r in caplog.records]
    caplog.clear()
    return out


def test_start_lines_name_the_checks_and_say_push_is_off_without_a_collector():
    cfg = load_agent_config(ROOT / "config" / "agent.example.yaml")
    lines = start_lines(cfg, build_checks(cfg), "off-config")
    assert lines[0].startswith("site ha-noi-ba-dinh (Phường Ba Đình, ha-noi): 5 checks scheduled")
    assert "icmp 2" in lines[0] and "every 30s to 1m" in lines[0]
    assert "push is OFF" in lines[1] and "no collector: section" in lines[1]
    assert "--no-push" in start_lines(cfg, build_checks(cfg), "off-flag")[1]


def test_first_ack_is_said_once(caplog: pytest.LogCaptureFixture):
    pusher, clock = fake_pusher(), Clock()
    narrator = PushNarrator(pusher, clock=clock)
    caplog.set_level(logging.INFO, "commune_agent")
    narrator.observe()
    assert messages(caplog) == []
    pusher.stats.acked, pusher.stats.results_acked, pusher.stats.clock_offset = 1, 50, 0.25
    narrator.observe()
    assert messages(caplog) == ["first report acknowledged by the collector (50 results, clock offset +0.2s): "
                                "the center hears this site"]
    pusher.stats.acked = 2
    narrator.observe()
    assert messages(caplog) == []


def test_drops_are_said_once_per_change_with_counts(caplog: pytest.LogCaptureFixture):
    pusher, clock = fake_pusher(), Clock()
    narrator = PushNarrator(pusher, clock=clock)
    caplog.set_level(logging.INFO, "commune_agent")
    for _ in range(50):  # fifty batches dropped between two looks: one line
        pusher.spool.drops.add("size", 1, 50)
    narrator.observe()
    narrator.observe()
    assert messages(caplog) == ["spool dropped results that will never reach the collector: size: 50 batches, "
                                "2500 results (since start 50 batches, 2500 results)"]
    pusher.spool.drops.add("age", 2, 100)
    narrator.observe()
    assert messages(caplog) == ["spool dropped results that will never reach the collector: age: 2 batches, "
                                "100 results (since start 2 batches, 100 results)"]


def test_summary_once_per_period(caplog: pytest.LogCaptureFixture):
    pusher, clock = fake_pusher(), Clock()
    narrator = PushNarrator(pusher, clock=clock, summary_every=600)
    caplog.set_level(logging.INFO, "commune_agent")
    pusher.stats.sent, pusher.stats.acked, pusher.stats.results_acked = 21, 20, 1000
    pusher.stats.backoff = 8.0
    pusher.spool.stats = SpoolStats(reports=3, results=150, oldest_created=clock.now - 90)
    clock.now += 599
    narrator.observe()
    assert [m for m in messages(caplog) if m.startswith("push,")] == []
    clock.now += 1
    narrator.observe()
    summary = [m for m in messages(caplog) if m.startswith("push,")]
    assert summary == ["push, last 10m: 20 of 21 reports acknowledged (1000 results); backlog 3 batches, "
                       "150 results, oldest unsent 11.5m old, retrying in 8s"]


def test_run_logs_push_on_and_the_first_ack_against_a_real_collector(tmp_path: Path):
    collector = CollectorProcess(tmp_path, "")
    token = collector.enrol("ha-noi-ba-dinh", tmp_path / "token")
    collector.start()
    config = tmp_path / "agent.yaml"
    config.write_text(f"""site: {{id: ha-noi-ba-dinh, province: ha-noi, commune: Phường Ba Đình}}
agent: {{listen: "127.0.0.1:{free_tcp_port()}", state_dir: {tmp_path / 'state'}}}
host: {{interval: 2s, timeout: 1s}}
collector: {{url: "{collector.url}", token_file: {token}, push_interval: 1s}}
""", encoding="utf-8")
    log_path = tmp_path / "agent.log"
    with log_path.open("w") as log_file:
        agent = subprocess.Popen([AGENT, "run", "--config", str(config)], stdout=log_file, stderr=log_file)
    try:
        wait_until(lambda: "first report acknowledged" in log_path.read_text(), timeout=60,
                   what="the agent to log its first acknowledged report",
                   abort=lambda: agent.poll() is not None and f"the agent exited: {log_path.read_text()}")
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(30)
        collector.stop()
    text = log_path.read_text()
    assert "1 check scheduled (host 1) every 2s" in text
    assert f"push is on: reports go to {collector.url} every 1s" in text
    assert text.count("first report acknowledged") == 1
