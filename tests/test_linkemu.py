"""Prove the userspace link emulator does what the other network tests rely on.

Statistical assertions use tolerances of about four standard deviations of
the estimator for the sample size used, so a correct emulator fails them
with probability well under 1e-3, and the RNG is seeded on top of that.
"""

from __future__ import annotations

import json
import math
import random
import statistics
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import pytest

from testsupport.linkemu import ImpairedLink, LinkError, impaired_link, list_namespaces, netns
from testsupport.linkemu import emulator as emu
from testsupport.linkemu.ping import REPLY_LINE, parse_ping, ping, ping_argv


@pytest.fixture
def root_netns() -> None:
    """Skip (or fail under CI=true) where namespaces cannot be built."""
    netns.require_root_netns("ping")


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def binomial_tolerance(n: int, p: float, sigmas: float = 4.0) -> float:
    """``sigmas`` standard deviations of a binomial count."""
    return sigmas * math.sqrt(n * p * (1 - p))


def inversions(seqs: list[int]) -> int:
    """How many adjacent pairs arrived out of order."""
    return sum(1 for a, b in pairwise(seqs) if b < a)


# --------------------------------------------------------------------------
# (1) delay
# --------------------------------------------------------------------------


def test_fixed_delay_gives_twice_the_delay_as_rtt(root_netns: None) -> None:
    """20 ms each way, no jitter: every RTT is 40 ms plus a little processing."""
    with impaired_link(delay_ms=20) as link:
        result = ping(link, count=20, interval=0.05)
    assert result.received == 20
    assert min(result.rtts_ms) >= 40.0, "a packet left before its delay"
    assert result.avg_ms is not None and result.avg_ms < 41.5, result
    assert statistics.median(result.rtts_ms) < 41.0, result


def test_ipv6_crosses_the_link_too(root_netns: None) -> None:
    """The fd00:198:18:X::/64 addresses get the same delay."""
    with impaired_link(delay_ms=5) as link:
        assert link.far_ip6
        argv = ping_argv(link.far_ip6, count=5, interval=0.05)
        result = parse_ping(link.run_near(argv, capture_output=True, text=True, timeout=15).stdout)
    assert result.received == 5
    assert 10.0 <= min(result.rtts_ms) and statistics.median(result.rtts_ms) < 11.0, result


# --------------------------------------------------------------------------
# (2) loss
# --------------------------------------------------------------------------


def test_loss_each_way_compounds_over_the_round_trip(root_netns: None) -> None:
    """20 % each way loses 1 - 0.8**2 = 36 % of echoes, within 4 sigma of binomial."""
    n, per_way = 400, 0.2
    with impaired_link(delay_ms=1, loss=per_way, seed=1234, ipv6=False) as link:
        result = ping(link, count=n, interval=0.01)
        stats = link.stats()
    expected = 1 - (1 - per_way) ** 2
    assert result.transmitted == n
    assert abs(result.lost - n * expected) <= binomial_tolerance(n, expected), result
    for direction in emu.DIRECTIONS:
        seen = stats[direction]["received"]
        dropped = stats[direction]["dropped_loss"]
        assert abs(dropped - seen * per_way) <= binomial_tolerance(seen, per_way), stats


# --------------------------------------------------------------------------
# (3) jitter
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("distribution", "jitter_ms", "one_way_sd", "kurtosis"),
    [
        # U(-j, j): sd j/sqrt(3); the sum of two (the RTT) is triangular, kurtosis 2.4.
        ("uniform", 10.0, 10.0 / math.sqrt(3), 2.4),
        # N(0, j): sd j; the RTT is normal, kurtosis 3.
        ("normal", 4.0, 4.0, 3.0),
    ],
)
def test_jitter_spread_matches_the_distribution(
    root_netns: None, distribution: str, jitter_ms: float, one_way_sd: float, kurtosis: float
) -> None:
    """RTT sd = sqrt(2) * one-way sd; tolerance is 4 sd of the sample sd.

    The 30 ms ping interval exceeds any gap jitter could close, so FIFO
    holding never kicks in and does not distort the distribution.
    """
    n, delay = 200, 30.0
    with impaired_link(
        delay_ms=delay, jitter_ms=jitter_ms, seed=7, distribution=distribution, ipv6=False
    ) as link:
        result = ping(link, count=n, interval=0.03)
        held = link.stats()["near_to_far"]["held_for_order"]
    assert result.received == n
    expected_sd = math.sqrt(2) * one_way_sd
    relative_tolerance = 4 * math.sqrt((kurtosis - 1) / (4 * n))
    measured_sd = statistics.stdev(result.rtts_ms)
    assert abs(measured_sd / expected_sd - 1) <= relative_tolerance, (measured_sd, expected_sd)
    mean_tolerance = 4 * expected_sd / math.sqrt(n) + 0.5  # + processing time
    assert abs(statistics.fmean(result.rtts_ms) - 2 * delay) <= mean_tolerance
    assert held == 0


# --------------------------------------------------------------------------
# (4) live reconfiguration
# --------------------------------------------------------------------------


def rtts_switching_delay(
    link: ImpairedLink, proc: subprocess.Popen[str], after: int, new_delay_ms: float
) -> list[float]:
    """Collect a running ping's RTTs, changing the delay after ``after`` replies."""
    assert proc.stdout is not None
    rtts: list[float] = []
    for line in proc.stdout:  # bounded: ping -c/-W ends the stream
        match = REPLY_LINE.search(line)
        if match:
            rtts.append(float(match.group(2)))
        if match and len(rtts) == after:
            config = link.set(delay_ms=new_delay_ms)
            assert config["far_to_near"]["delay_ms"] == new_delay_ms
    return rtts


def test_live_reconfiguration_changes_rtt_mid_run(root_netns: None) -> None:
    """Change the delay while one ping runs; then make the link asymmetric."""
    with impaired_link(delay_ms=5) as link:
        proc = link.popen_near(
            ping_argv(link.far_ip, count=30, interval=0.05), stdout=subprocess.PIPE, text=True
        )
        try:
            rtts = rtts_switching_delay(link, proc, after=10, new_delay_ms=30)
        finally:
            netns.stop_process(proc)
        link.set(delay_ms=50, direction="far_to_near")
        asymmetric = ping(link, count=5, interval=0.05)
    assert len(rtts) == 30, rtts
    assert 10.0 <= statistics.median(rtts[:10]) < 11.5, rtts
    assert 60.0 <= statistics.median(rtts[-10:]) < 61.5, rtts
    assert 80.0 <= statistics.median(asymmetric.rtts_ms) < 81.5, asymmetric


def test_control_channel_rejects_bad_requests(root_netns: None) -> None:
    """Invalid settings are refused and leave the configuration unchanged."""
    with impaired_link(delay_ms=5) as link:
        for bad in (
            {"loss": 1.5},
            {"delay_ms": -1},
            {"colour": "red"},
            {"delay_ms": 1, "direction": "sideways"},
        ):
            with pytest.raises(LinkError):
                link.request(bad)
        config = link.request({})["config"]
    assert config["near_to_far"]["delay_ms"] == 5 and config["near_to_far"]["loss"] == 0


# --------------------------------------------------------------------------
# ordering and timing accuracy
# --------------------------------------------------------------------------

_RECEIVER = """
import json, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 9999)); s.settimeout(3.0)
print("ready", flush=True)
seqs = []
try:
    while len(seqs) < int(sys.argv[2]):
        seqs.append(int(s.recv(64)))
except socket.timeout:
    pass
print(json.dumps(seqs), flush=True)
"""

_SENDER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[2])):
    s.sendto(str(i).encode(), (sys.argv[1], 9999))
"""


def udp_burst_order(link: ImpairedLink, count: int) -> list[int]:
    """Send ``count`` numbered datagrams back to back; return the arrival order."""
    receiver = link.popen_far(
        [sys.executable, "-c", _RECEIVER, link.far_ip, str(count)], stdout=subprocess.PIPE
    )
    try:
        assert receiver.stdout is not None
        assert netns.read_line(receiver.stdout.fileno(), timeout=10) == b"ready\n"
        link.run_near(
            [sys.executable, "-c", _SENDER, link.far_ip, str(count)], check=True, timeout=10
        )
        return json.loads(netns.read_line(receiver.stdout.fileno(), timeout=10))
    finally:
        netns.stop_process(receiver)


@pytest.mark.parametrize("reorder", [False, True])
def test_fifo_by_default_reorder_on_request(root_netns: None, reorder: bool) -> None:
    """Jitter much larger than the packet gap: FIFO keeps order, --reorder shuffles."""
    count = 200
    with impaired_link(delay_ms=20, jitter_ms=10, seed=3, reorder=reorder, ipv6=False) as link:
        seqs = udp_burst_order(link, count)
        held = link.stats()["near_to_far"]["held_for_order"]
    assert sorted(seqs) == list(range(count))
    if reorder:
        assert inversions(seqs) > 10 and held == 0
    else:
        assert inversions(seqs) == 0 and held > 0


def test_every_departure_is_scheduled_and_its_lateness_recorded_at_400_packets_per_second(
        root_netns: None) -> None:
    """200 echoes/s each way (400 departures/s): none lost, each departure's lateness recorded, the mean
    RTT the emulated delay's. How late departures are depends on the machine's load: measured by
    benchmarks/linkemu_lateness.py, not asserted here."""
    with impaired_link(delay_ms=10, jitter_ms=2, seed=5, ipv6=False) as link:
        link.stats(reset=True)
        result = ping(link, count=600, interval=0.005)
        lateness = link.stats()["lateness"]
    assert result.received == 600
    assert lateness["count"] >= 1200 and 0 <= lateness["p50_us"] <= lateness["p99_us"], lateness
    assert result.avg_ms is not None and abs(result.avg_ms - 20.0) < 0.5, result


# --------------------------------------------------------------------------
# (5) teardown
# --------------------------------------------------------------------------


def test_teardown_removes_everything_even_when_the_body_fails(root_netns: None) -> None:
    """Namespaces, emulator, control socket and temp dir all go, exit status 0."""
    with pytest.raises(RuntimeError, match="boom"):
        with impaired_link(delay_ms=1) as link:
            assert {link.ns_near, link.ns_far} <= set(list_namespaces())
            assert link.ns_near.startswith("cmtest-") and link.ns_far.startswith("cmtest-")
            raise RuntimeError("boom")
    assert not {link.ns_near, link.ns_far} & set(list_namespaces())
    assert link.process is not None and link.process.poll() is not None
    assert link.exit_code == 0, netns.log_tail(link.log_path)
    assert not Path(link.control_path).parent.exists()


def test_failed_setup_leaves_no_namespace(
    root_netns: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An emulator that refuses its arguments still gets its namespaces deleted."""
    created: list[str] = []
    original = netns.namespace_pair_names

    def recording() -> tuple[str, str]:
        names = original()
        created.extend(names)
        return names

    monkeypatch.setattr(netns, "namespace_pair_names", recording)
    with pytest.raises(LinkError, match="exited with 2"):
        with impaired_link(loss=2.0):
            pytest.fail("set-up should have failed")  # pragma: no cover
    assert len(created) == 2
    assert not set(created) & set(list_namespaces())


def test_emulator_stops_by_itself_after_max_seconds(root_netns: None) -> None:
    """The --max-seconds bound ends the process without anyone signalling it."""
    with impaired_link(max_seconds=1.0) as link:
        assert link.process is not None
        started = time.monotonic()
        status = link.process.wait(timeout=10)
    assert status == 0 and time.monotonic() - started < 5


# --------------------------------------------------------------------------
# emulator core, no root needed
# --------------------------------------------------------------------------


def test_fifo_admission_never_schedules_before_the_previous_packet() -> None:
    """The FIFO rule holds for any jitter, and --reorder lifts it."""
    for reorder in (False, True):
        imp = emu.Impairment(delay_ms=10, jitter_ms=9, reorder=reorder)
        direction = emu.Direction("near_to_far", -1, -1, imp, random.Random(1), limit=10**6)
        dues = [direction.admit(now=i * 0.001) for i in range(2000)]
        ordered = all(b >= a for a, b in pairwise(dues))  # type: ignore[operator]
        assert ordered is not reorder


def test_impairment_validation() -> None:
    """Nonsense settings are refused where they enter: the dataclass."""
    for bad in (
        {"loss": 1.01},
        {"delay_ms": -0.1},
        {"jitter_ms": float("nan")},
        {"distribution": "pareto"},
        {"delay_ms": True},
    ):
        with pytest.raises(ValueError):
            emu.Impairment(**bad)  # type: ignore[arg-type]


def test_require_root_netns_fails_instead_of_skipping_under_ci(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With prerequisites missing, CI=true turns the skip into a failure."""
    monkeypatch.setattr(netns, "missing_netns_prerequisites", lambda *t: ["not running as root"])
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="not running as root"):
        netns.require_root_netns()
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        netns.require_root_netns()
