"""The judge in its own process: what crosses the pipe, and the process's life beside the server.

The server's copy of each pass must render exactly what the judge decided,
though a message leaves out what the server already holds; a judge process
that dies is restarted while the server keeps serving the last verdicts; and
a killed server takes its judge down with it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest

from commune_collector.aggregator import fold_journal
from commune_collector.intake import ClockReading, to_item
from commune_collector.judge import SiteRecord
from commune_collector.runtime.judge_process import (
    JUDGE_PROCESS_NAME,
    STANDBY_REASON,
    PassReceiver,
    PassSender,
    Standby,
    decode,
)
from commune_collector.store.sqlite import SQLiteStore
from commune_common.wire import Report
from testsupport.collector import CollectorProcess
from testsupport.judge import T0, H, ScriptedSite, World
from testsupport.peers._base import wait_until

SITES = [ScriptedSite("hn-1"), ScriptedSite("hn-2", primary_loss=lambda ts: 0.2), ScriptedSite("hue-1", province="hue", on_battery=lambda ts: True)]


class _NoPipe:
    def send_bytes(self, data: bytes) -> None:
        raise AssertionError("message() only")


def test_a_message_carries_only_what_the_server_does_not_hold() -> None:
    world = World(list(SITES))
    sender, receiver = PassSender(_NoPipe()), PassReceiver()  # type: ignore[arg-type]
    first_snapshot = world.advance(T0 + 25 * H)
    first = decode(sender.encode(world.judge, first_snapshot, []))
    assert first.config is not None and first.sites is not None
    assert first.checks_from == 0 and first.checks == first_snapshot.check_ids
    rebuilt = receiver.snapshot(first)
    for site in first_snapshot.sites.ids:
        assert rebuilt.verdict(site) == first_snapshot.verdict(site)

    world.sites.append(ScriptedSite("hn-3"))  # a new site: a new inventory, new checks
    world.evidence.sites.append(SiteRecord("hn-3", "Xã hn-3", "ha-noi", "Xã hn-3"))
    second_snapshot = world.advance(T0 + 26 * H)
    second = decode(sender.encode(world.judge, second_snapshot, world.changes))
    assert second.config is None, "the criteria did not change: not sent again"
    assert second.sites is not None, "the inventory changed"
    assert second.checks_from == len(first.checks) and second.checks == second_snapshot.check_ids[len(first.checks):]
    assert second.checks, "hn-3's checks are new"
    rebuilt2 = receiver.snapshot(second)
    assert rebuilt2.check_ids == second_snapshot.check_ids
    for site in second_snapshot.sites.ids:
        assert rebuilt2.verdict(site) == second_snapshot.verdict(site), site
    assert rebuilt2.verdict("hn-2")["state"] == "not_completed"
    assert rebuilt2.rollup.national == second_snapshot.rollup.national

    third = decode(sender.encode(world.judge, world.advance(T0 + 27 * H), []))
    assert (third.config, third.sites, third.checks) == (None, None, []), "nothing new: arrays only"
    assert receiver.snapshot(third).verdict("hn-3") == world.judge.snapshot.verdict("hn-3")


def test_a_new_judge_process_starts_the_check_list_again_without_touching_older_snapshots() -> None:
    world = World([ScriptedSite("hn-1")])
    receiver = PassReceiver()
    snapshot = world.advance(T0 + H)
    old = receiver.snapshot(PassSender(_NoPipe()).message(world.judge, snapshot, []))  # type: ignore[arg-type]
    kept = list(old.check_ids)
    restarted = World([ScriptedSite("hn-1", primary_loss=lambda ts: 0.5), ScriptedSite("hn-9")])  # another child, other row order
    snapshot2 = restarted.advance(T0 + H)
    new = receiver.snapshot(PassSender(_NoPipe()).message(restarted.judge, snapshot2, []))  # type: ignore[arg-type]
    assert new.check_ids == snapshot2.check_ids
    assert old.check_ids == kept, "a snapshot a request still reads keeps its own check ids"
    assert new.verdict("hn-9") == snapshot2.verdict("hn-9")


def test_a_pass_message_without_criteria_first_is_refused() -> None:
    world = World([ScriptedSite("hn-1")])
    sender = PassSender(_NoPipe())  # type: ignore[arg-type]
    snapshot = world.advance(T0 + H)
    sender.encode(world.judge, snapshot, [])  # went to a server that is gone
    with pytest.raises(ValueError, match="before its criteria"):
        PassReceiver().snapshot(decode(sender.encode(world.judge, snapshot, [])))


def test_the_proxy_hands_each_pass_to_the_listeners_as_the_judge_would(tmp_path: Path) -> None:
    """Alerting registers on the server's JudgeProxy: each pass from the child reaches it with its
    changes and a site -> verdict mapping, and a failing listener does not stop the others."""
    from commune_collector.runtime.judge_process import JudgeProxy
    from commune_collector.settings import CollectorSettings
    from commune_collector.store.sqlite import SQLiteStore

    world = World([ScriptedSite("hn-1"), ScriptedSite("hue-1", province="hue", primary_down=lambda ts: ts >= T0 + 26 * H)])
    world.advance(T0 + 25 * H)
    store = SQLiteStore(tmp_path / "collector.db")
    store.migrate()
    proxy = JudgeProxy(CollectorSettings(data_dir=tmp_path), store)
    seen: list[tuple[list, dict]] = []

    def broken(changes: list, views: Any) -> None:
        raise RuntimeError("a broken listener")

    proxy.add_listener(broken)
    proxy.add_listener(lambda changes, views: seen.append((changes, {s: views[s].state for s in views})))
    asyncio.run(proxy._take(Standby(STANDBY_REASON)))  # another collector judged first
    assert proxy.standby == STANDBY_REASON and proxy.snapshot is None
    sender = PassSender(_NoPipe())  # type: ignore[arg-type]
    expected = []
    for at in (T0 + 26 * H, T0 + 27 * H):
        world.changes.clear()
        snapshot = world.advance(at)
        expected.append([(c.site, c.kind) for c in world.changes])
        asyncio.run(proxy._take(decode(sender.encode(world.judge, snapshot, list(world.changes)))))
    try:
        assert proxy.passes == 2 and len(seen) == 2 and proxy.standby is None, "it took over"
        assert seen[-1][1] == {"hn-1": world.verdict("hn-1")["state"], "hue-1": world.verdict("hue-1")["state"]}
        assert [[(c.site, c.kind) for c in changes] for changes, _ in seen] == expected
        assert any(expected), "the link going down made events"
        assert proxy.snapshot is not None and proxy.snapshot.verdict("hue-1") == world.judge.snapshot.verdict("hue-1")
    finally:
        proxy.close()
        store.close()


# -- live: a real server and its judge process -------------------------------------------------------


def _judge_children(server_pid: int) -> list[psutil.Process]:
    try:
        children = psutil.Process(server_pid).children()
    except psutil.NoSuchProcess:
        return []
    return [c for c in children if _name(c) == JUDGE_PROCESS_NAME]


def _name(process: psutil.Process) -> str:
    try:
        return process.name()
    except psutil.Error:
        return ""


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _passes(collector: CollectorProcess) -> float:
    for line in collector.get("/metrics").splitlines():
        if line.startswith("commune_judge_passes_total "):
            return float(line.split()[1])
    return 0.0


def _verdict_status(collector: CollectorProcess, site: str) -> int:
    try:
        request = urllib.request.Request(f"{collector.url}/api/v1/verdicts/{site}",
                                         headers={"Authorization": f"Bearer {collector.operator_token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            json.loads(response.read())
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _judged(tmp_path: Path, judge: str = "interval: 1s", sites: int = 1, evidence: bool = False
            ) -> tuple[CollectorProcess, int, psutil.Process]:
    """A collector judging ``sites`` sites every second, after its first pass: (collector, server pid, judge)."""
    collector = CollectorProcess(tmp_path, f"judge: {{{judge}}}\naggregator: {{interval: 1s}}\n")
    inventory = tmp_path / "sites.csv"
    inventory.write_text("id,name,province,commune\n" + "".join(
        f"hn-{n},Trung tâm hn-{n},ha-noi,Phường Ba Đình\n" for n in range(1, sites + 1)), encoding="utf-8")
    collector.cli("sites", "import", str(inventory))
    if evidence:  # an hour of rounds from every site, folded, before the collector starts: its first pass is cold
        store = SQLiteStore(collector.data / "collector.db")
        for n in range(1, sites + 1):
            script = ScriptedSite(f"hn-{n}").script()
            report = Report(site=f"hn-{n}", instance="i", seq=1, sent_at=time.time(), agent_version="test",
                            results=script.rounds(time.time() - H, time.time()))
            store.ingest(to_item(report, time.time(), ClockReading(0.0, 0.0, False)))
        fold_journal(store)
        store.close()
    collector.start()
    assert collector.process is not None and collector.process.pid is not None
    server = collector.process.pid
    wait_until(lambda: _verdict_status(collector, "hn-1") == 200, timeout=60, what="the first judge pass",
               abort=collector.died)
    (judge,) = wait_until(lambda: _judge_children(server), timeout=10, what="the judge process")
    return collector, server, judge


@pytest.mark.slow
def test_the_server_restarts_a_dead_judge_process_and_serves_meanwhile(tmp_path: Path) -> None:
    collector, server, judge = _judged(tmp_path)
    try:
        assert collector.process is not None
        before = _passes(collector)
        assert before >= 1

        os.kill(judge.pid, signal.SIGKILL)
        wait_until(lambda: _gone(judge.pid), timeout=10, what="the judge process to die")
        assert _verdict_status(collector, "hn-1") == 200, "the last verdicts are still served"
        restarted = wait_until(lambda: [c for c in _judge_children(server) if c.pid != judge.pid], timeout=30,
                               what="a new judge process", abort=collector.died)
        wait_until(lambda: _passes(collector) > before, timeout=30, what="passes from the new judge process",
                   abort=collector.died)
        assert "judge process" in collector.process.log_path.read_text()

        collector.stop(signal.SIGKILL)
        wait_until(lambda: all(_gone(c.pid) for c in restarted), timeout=30,
                   what="the judge process to die with the server")
    finally:
        collector.stop()


@pytest.mark.slow
def test_a_stopped_server_stops_its_judge_process_which_saves_its_checkpoint(tmp_path: Path) -> None:
    collector, _, judge = _judged(tmp_path)
    checkpoint = collector.data / "judge-evidence.npz"
    checkpoint.unlink(missing_ok=True)
    collector.stop()
    assert _gone(judge.pid)
    assert checkpoint.exists(), "the judge process saved its checkpoint on the way out"



@pytest.mark.slow
def test_the_judge_process_shares_its_cold_pass_with_a_helper_process(tmp_path: Path) -> None:
    """The judge's own process starts the helper (a grandchild of the server) and absorbs its part."""
    collector, _, _ = _judged(tmp_path, "interval: 1s, cold_helper_min_sites: 2", sites=4, evidence=True)
    try:
        assert collector.process is not None
        log = collector.process.log_path.read_text()
        assert "a helper process shares the reading of 4 sites" in log, log[-2000:]
        assert "the helper process failed" not in log
        assert all(_verdict_status(collector, f"hn-{n}") == 200 for n in range(1, 5))
        assert not list(collector.data.glob("judge-part-*")), "the part file was left behind"
    finally:
        collector.stop()
