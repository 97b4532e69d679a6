"""The scheduler: fixed phases with jitter, no overlap, bounded concurrency, no hostage to a hung target.

The unit tests run the real Scheduler on an event loop with a virtual clock:
the selector, instead of sleeping until the next timer, advances the clock
to it. Minutes of schedule run in milliseconds and every instant is exact,
so nothing here waits on wall time or sleeps in place of synchronisation.
The last test stops a real ``commune-agent run`` process with SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import selectors
import signal
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from commune_agent.checks import Check
from commune_agent.probes.base import ProbeContext, ProbeResult, ProbeSpec, TargetConfig
from commune_agent.scheduler import Scheduler
from testsupport.peers._base import free_tcp_port, http_get, wait_until

# ---------------------------------------------------------------- virtual time


class _VirtualSelector(selectors.DefaultSelector):  # type: ignore[misc, valid-type]
    """Polls real file descriptors without blocking; a wait for a timer moves the clock instead."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list:  # type: ignore[override]
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            raise RuntimeError("virtual clock: nothing is scheduled, the loop would wait forever")
        self.now += timeout
        return []


class VirtualClockLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._virtual = _VirtualSelector()
        super().__init__(self._virtual)

    def time(self) -> float:
        return self._virtual.now


# ---------------------------------------------------------------- a probe that records what it did


class SleepConfig(TargetConfig):
    probe: Literal["sleep"] = "sleep"
    seconds: float = 0.0  # how long a round takes; inf: hangs until cancelled


@dataclass
class Journal:
    """Virtual start and end time of every round, and how many rounds run at each moment."""

    starts: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    ends: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    cancelled: list[str] = field(default_factory=list)
    running: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    max_running: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    in_flight: int = 0
    max_in_flight: int = 0

    async def run(self, cfg: SleepConfig, ctx: ProbeContext) -> ProbeResult:
        loop, name = asyncio.get_running_loop(), cfg.display_name()
        self.starts[name].append(loop.time())
        self.running[name] += 1
        self.in_flight += 1
        self.max_running[name] = max(self.max_running[name], self.running[name])
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if cfg.seconds == float("inf"):
                await asyncio.Event().wait()
            await asyncio.sleep(cfg.seconds)
        except asyncio.CancelledError:
            self.cancelled.append(name)
            raise
        finally:
            self.running[name] -= 1
            self.in_flight -= 1
        self.ends[name].append(loop.time())
        return ProbeResult(ok=True)


def make_check(journal: Journal, name: str, interval: float, timeout: float, seconds: float = 0.0) -> Check:
    spec = ProbeSpec(kind="sleep", config=SleepConfig, run=journal.run)
    return Check(id=name, spec=spec, config=SleepConfig(name=name, seconds=seconds), interval=interval,
                 timeout=timeout)


def run_for(seconds: float, checks: list[Check], *, seed: int = 1, **options: float) -> tuple[Scheduler, list]:
    """Run the real scheduler for ``seconds`` of virtual time; return it and every (check, result)."""
    results: list[tuple[Check, ProbeResult]] = []
    loop = VirtualClockLoop()

    async def main() -> Scheduler:
        stop = asyncio.Event()
        scheduler = Scheduler(checks, lambda c, r: results.append((c, r)), rng=random.Random(seed), **options)
        loop.call_at(seconds, stop.set)
        await scheduler.run(stop)
        return scheduler

    try:
        return loop.run_until_complete(main()), results
    finally:
        loop.close()


# ---------------------------------------------------------------- unit tests in virtual time


def test_a_hung_target_never_delays_the_others() -> None:
    journal = Journal()
    hung = make_check(journal, "hung", interval=10.0, timeout=5.0, seconds=float("inf"))
    fast = make_check(journal, "fast", interval=1.0, timeout=0.5, seconds=0.01)
    scheduler, results = run_for(120.0, [hung, fast], jitter=0.1, concurrency=4)
    hung_results = [r for c, r in results if c.id == "hung"]
    assert hung_results and all(r.reason == "timed out after 5s" and not r.ok for r in hung_results)
    assert len(hung_results) >= 11  # it kept its own schedule too: a round every 10s, each cut at 5s
    starts = journal.starts["fast"]
    assert len(starts) >= 118
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    # fixed phase + jitter of 10% either side: consecutive starts are 0.8s to 1.2s apart, hung or not
    assert 0.8 - 1e-9 <= min(gaps) and max(gaps) <= 1.2 + 1e-9
    assert scheduler.stats.lag_max < 1e-6  # no round started later than its slot


def test_a_target_never_overlaps_itself_and_counts_skipped_slots() -> None:
    journal = Journal()
    slow = make_check(journal, "slow", interval=1.0, timeout=3.0, seconds=2.5)  # overruns 2-3 slots
    scheduler, _ = run_for(60.0, [slow], jitter=0.0)
    assert journal.max_running["slow"] == 1
    starts, ends = journal.starts["slow"], journal.ends["slow"]
    assert all(start >= end for start, end in zip(starts[1:], ends, strict=False))  # next starts after last ends
    assert len(starts) >= 19  # one round every 3 slots, not fewer
    assert scheduler.stats.skipped["slow"] >= 2 * (len(starts) - 1)


def test_concurrency_is_bounded_and_used() -> None:
    journal = Journal()
    checks = [make_check(journal, f"c{i}", interval=5.0, timeout=4.0, seconds=1.0) for i in range(30)]
    scheduler, results = run_for(30.0, checks, concurrency=3, jitter=0.0)
    assert journal.max_in_flight == 3
    assert all(r.ok for _, r in results)  # waiting for a slot is not a failure
    assert scheduler.stats.lag_count >= len(results)


def test_phases_spread_over_the_interval() -> None:
    """200 checks with one interval start spread across it, not all at once (seeded, so exact)."""
    journal = Journal()
    checks = [make_check(journal, f"c{i}", interval=10.0, timeout=1.0) for i in range(200)]
    run_for(10.0 * 1.1, checks, jitter=0.1, seed=7)
    firsts = [journal.starts[c.id][0] for c in checks]
    buckets = [sum(1 for t in firsts if k <= t < k + 1) for k in range(10)]
    # uniform phases: 20 expected per 1s bucket; 20 +/- 4.5 sigma (binomial sd = 4.2) is [1, 39]
    assert all(1 <= b <= 39 for b in buckets), buckets
    assert min(firsts) >= 0 and max(firsts) < 11.0


def test_rounds_jitter_around_fixed_slots_without_drift() -> None:
    journal = Journal()
    check = make_check(journal, "one", interval=2.0, timeout=1.0, seconds=0.3)
    run_for(2.0 * 500, [check], jitter=0.1, seed=3)
    starts = journal.starts["one"]
    assert len(starts) >= 499
    gaps = {round(b - a, 6) for a, b in zip(starts, starts[1:], strict=False)}
    assert len(gaps) > 100  # jittered, not a metronome
    # each start is within +/-10% of interval from its slot phase + k * interval: no accumulated drift
    phase = starts[0]
    offsets = [(t - phase) - round((t - phase) / 2.0) * 2.0 for t in starts]
    assert max(abs(o) for o in offsets) <= 2 * 0.1 * 2.0 + 1e-9


def test_stop_cancels_rounds_in_flight() -> None:
    journal = Journal()
    hung = make_check(journal, "hung", interval=100.0, timeout=90.0, seconds=float("inf"))
    _, results = run_for(150.0, [hung], jitter=0.0)
    assert all(r.reason == "timed out after 90s" for _, r in results)  # rounds the timeout cut
    # one round more was started than finished: the one in flight at stop, cancelled, not awaited
    assert len(journal.starts["hung"]) == len(results) + 1
    assert len(journal.cancelled) == len(results) + 1


def test_run_all_once_returns_every_result_in_check_order() -> None:
    """probe-once: rounds end in any order, results come back in the checks' order, each once."""
    journal = Journal()
    checks = [make_check(journal, f"c{i}", interval=60.0, timeout=10.0, seconds=float(5 - i)) for i in range(5)]
    loop = VirtualClockLoop()
    try:
        results = loop.run_until_complete(Scheduler(checks, lambda c, r: None).run_all_once())
    finally:
        loop.close()
    assert [c.id for c, _ in results] == [c.id for c in checks]
    assert all(r.ok for _, r in results)
    assert [journal.ends[c.id] for c in checks] == [[5.0], [4.0], [3.0], [2.0], [1.0]]


def test_run_all_once_raises_a_round_cancelled_from_inside_and_cancels_the_rest() -> None:
    """A round cancelled from inside (its engine closed under it) ends probe-once, as gather did,
    rather than leaving it waiting for a result that never comes; the hung round is cancelled."""
    journal = Journal()

    async def cancelled(cfg: SleepConfig, ctx: ProbeContext) -> ProbeResult:
        await asyncio.sleep(1.0)
        raise asyncio.CancelledError

    spec = ProbeSpec(kind="sleep", config=SleepConfig, run=cancelled)
    checks = [make_check(journal, "hung", interval=60.0, timeout=30.0, seconds=float("inf")),
              Check(id="cut", spec=spec, config=SleepConfig(name="cut"), interval=60.0, timeout=10.0)]
    loop = VirtualClockLoop()
    try:
        with pytest.raises(asyncio.CancelledError):
            loop.run_until_complete(Scheduler(checks, lambda c, r: None).run_all_once())
        loop.run_until_complete(asyncio.sleep(0))  # let the cancelled round run its handlers
    finally:
        loop.close()
    assert journal.cancelled == ["hung"]


# ---------------------------------------------------------------- a real agent process and SIGTERM


def _agent() -> list[str]:
    script = Path(sys.executable).with_name("commune-agent")
    return [str(script)] if script.exists() else [sys.executable, "-m", "commune_agent.cli"]


def test_a_checks_repr_names_it_and_leaves_its_config_out() -> None:
    """Short by design: asyncio.run's SIGINT restore (Python 3.11) reprs the main task's result, which in
    probe-once is every (check, result); the generated repr spelled out each spec and config."""
    check = make_check(Journal(), "link/fiber/sleep/secret-host.example", 60.0, 10.0, seconds=1.5)
    assert repr(check) == "Check('link/fiber/sleep/secret-host.example', probe='sleep')"
    assert "seconds" not in repr([(check, ProbeResult(ok=True))])


def test_sigterm_stops_a_running_agent_cleanly(tmp_path: Path) -> None:
    """A round waiting on a silent DNS server is in flight when SIGTERM comes: the agent must
    cancel it (not wait for its timeout, which would log its failure), exit 0 and log 'stopped'."""
    import socket

    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    port = free_tcp_port()
    config = {
        "site": {"id": "sigterm-test", "province": "ha-noi", "commune": "Xã Thử"},
        "agent": {"listen": f"127.0.0.1:{port}", "state_dir": str(tmp_path / "state")},
        "host": {"enabled": False},
        "links": [{"name": "lo", "targets": [
            {"probe": "icmp", "host": "127.0.0.1", "count": 1, "interval": "1s", "timeout": "900ms",
             "echo_timeout": "500ms"},
            {"probe": "dns", "name": "silent", "server": "127.0.0.1", "port": silent.getsockname()[1],
             "query": "portal.commune.test", "interval": "6s", "timeout": "5s"}]}],
    }
    path = tmp_path / "agent.yaml"
    path.write_text(json.dumps(config))
    log = tmp_path / "agent.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([*_agent(), "run", "-c", str(path), "--no-push"], stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        def ready() -> bool:
            status, body = http_get(f"http://127.0.0.1:{port}/metrics", timeout=1)
            return status == 200 and b'commune_probe_success{check="link/lo/icmp/127.0.0.1"' in body

        wait_until(ready, timeout=30, interval=0.1, what="the first round on /metrics",
                   abort=lambda: f"agent exited {proc.returncode}: {log.read_text()}" if proc.poll() is not None else None)
        silent.settimeout(60)
        silent.recv(512)  # the DNS round has sent its query: it is in flight now
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)  # a deadline against a hang, not a speed measurement
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        silent.close()
    text = log.read_text()
    assert code == 0, text
    assert text.rstrip().endswith("INFO commune_agent stopped"), text
    assert "link/lo/dns/silent" not in text  # cancelled in flight: it never completed, nor failed
    assert "check link/lo/icmp" not in text  # and the loopback ICMP check never failed meanwhile
    assert "Traceback" not in text
