"""Measurement accuracy over a real impaired link, and link binding over two real paths.

The agent's ICMP probe runs INSIDE the near namespace of ``testsupport.linkemu``'s
emulated link (``commune-agent probe-once --json``), while ``fping`` measures
the same link from the same namespace at the same time. What the agent reports
must agree with what the emulator imposes, with what fping saw, and with the
emulator's own packet counters.

Tolerances are 4 standard deviations of each estimator (loss: binomial; mean
and jitter: simulated from the imposed distributions), so a correct agent
fails one of these assertions with a probability of order 1e-4. The emulator
is seeded; the interleaving of the agent's and fping's packets is not, which
is exactly why the bounds are statistical rather than exact.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from testsupport.linkemu import ImpairedLink, impaired_link, require_root_netns
from testsupport.linkemu.netns import ip, netns_exec_argv
from testsupport.peers._base import require_binary, wait_until

DELAY_MS, JITTER_MS, LOSS_EACH_WAY = 30.0, 5.0, 0.05
ECHOES, SPACING_MS = 100, 20
OVERHEAD_MS = 0.5  # the emulator's scheduling lateness plus two namespace stacks (linkemu README: ~0.1 ms)
# one echo may wait a scheduler quantum between its send timestamp and sendto() on a loaded 2-core
# machine: a bound on the single largest RTT allows for that; averages barely feel it (4 ms / 90)
STALL_MS = 10.0
SIGMAS = 4.0


def _agent() -> str:
    script = Path(sys.executable).with_name("commune-agent")
    return str(script) if script.exists() else f"{sys.executable} -m commune_agent.cli"


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="accuracy-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _write_config(workdir: Path, links: list[dict[str, Any]]) -> Path:
    config = {"site": {"id": "accuracy", "province": "ha-noi", "commune": "Xã Thử"},
              "agent": {"state_dir": str(workdir / "state")}, "host": {"enabled": False}, "links": links}
    path = workdir / "agent.yaml"
    path.write_text(json.dumps(config, ensure_ascii=False))
    return path


def _icmp_target(host: str, name: str, count: int = ECHOES) -> dict[str, Any]:
    return {"probe": "icmp", "name": name, "host": host, "count": count, "packet_interval": f"{SPACING_MS}ms",
            "echo_timeout": "1s", "interval": "10s", "timeout": "5s"}


# ---------------------------------------------------------------- what the imposed link should give


@dataclass(frozen=True)
class Expected:
    """RTT statistics implied by the impairment, and the spread of the agent's estimators."""

    rtt_ms: float
    rtt_sd_ms: float
    loss: float
    jitter_ms: float
    jitter_sd_ms: float


def expected_for(delay_ms: float, jitter_ms: float, loss_each_way: float, echoes: int) -> Expected:
    """Uniform jitter U(d-j, d+j) on each way, drawn independently (reorder=True): the RTT is the
    sum of two, so its sd is sqrt(2) * j/sqrt(3). The agent's jitter (mean |RTT[i+1] - RTT[i]|
    over received echoes) has no simple closed form with loss, so it is simulated: 4000 rounds
    of the same estimator on the same distribution, seeded."""
    rng = random.Random(20250701)
    loss = 1 - (1 - loss_each_way) ** 2

    def one_way() -> float:
        return rng.uniform(delay_ms - jitter_ms, delay_ms + jitter_ms)

    estimates = []
    for _ in range(4000):
        rtts = [one_way() + one_way() for _ in range(echoes) if rng.random() >= loss]
        estimates.append(sum(abs(b - a) for a, b in zip(rtts, rtts[1:], strict=False)) / (len(rtts) - 1))
    mean = sum(estimates) / len(estimates)
    sd = math.sqrt(sum((e - mean) ** 2 for e in estimates) / (len(estimates) - 1))
    return Expected(2 * delay_ms, math.sqrt(2) * jitter_ms / math.sqrt(3), loss, mean, sd)


# ---------------------------------------------------------------- fping


@dataclass
class Fping:
    rtts_ms: list[float | None]

    @property
    def received(self) -> list[float]:
        return [r for r in self.rtts_ms if r is not None]

    @property
    def loss(self) -> float:
        return 1 - len(self.received) / len(self.rtts_ms)

    @property
    def avg_ms(self) -> float:
        return sum(self.received) / len(self.received)

    @property
    def jitter_ms(self) -> float:
        got = self.received
        return sum(abs(b - a) for a, b in zip(got, got[1:], strict=False)) / (len(got) - 1)


def parse_fping(stderr: str, host: str) -> Fping:
    """``fping -C N -q`` prints ``host : 60.2 - 59.8 ...`` on stderr, ``-`` for a lost echo."""
    line = next((ln for ln in stderr.splitlines() if ln.startswith(f"{host} :")), None)
    assert line is not None, stderr
    return Fping([None if tok == "-" else float(tok) for tok in line.split(":", 1)[1].split()])


# ---------------------------------------------------------------- the accuracy proof


def test_icmp_agrees_with_the_emulator_and_with_fping(workdir: Path) -> None:
    require_root_netns()
    fping = require_binary("fping")
    expected = expected_for(DELAY_MS, JITTER_MS, LOSS_EACH_WAY, ECHOES)
    with impaired_link(delay_ms=DELAY_MS, jitter_ms=JITTER_MS, loss=LOSS_EACH_WAY, seed=11, reorder=True,
                       ipv6=False) as link:
        config = _write_config(workdir, [{"name": "emulated", "targets": [_icmp_target(link.far_ip, "far")]}])
        link.stats(reset=True)
        agent = link.popen_near([*_agent().split(), "probe-once", "--json", "-c", str(config)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # the same link, the same namespace, the same moment; -p is the per-echo period, -t the reply timeout
        other = link.popen_near([fping, "-C", str(ECHOES), "-p", str(SPACING_MS), "-t", "1000", "-q", link.far_ip],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        agent_out, agent_err = agent.communicate(timeout=60)
        _, fping_err = other.communicate(timeout=60)
        counters = link.stats()
    check = json.loads(agent_out)["checks"][0]
    assert check["ok"], check["reason"] + agent_err
    values = check["values"]
    measured = parse_fping(fping_err, link.far_ip)
    sent, received = values["icmp_packets_sent"], values["icmp_packets_received"]

    # exact bookkeeping: every echo either side sent crossed the emulator, every reply it passed was counted
    assert sent == len(measured.rtts_ms) == ECHOES
    assert counters["near_to_far"]["received"] == 2 * ECHOES
    assert received + len(measured.received) == counters["far_to_near"]["forwarded"]

    # loss: binomial around the imposed round-trip loss, and against fping's
    binomial_sd = math.sqrt(expected.loss * (1 - expected.loss) / ECHOES)
    assert abs(values["icmp_loss_ratio"] - expected.loss) <= SIGMAS * binomial_sd, values
    assert abs(values["icmp_loss_ratio"] - measured.loss) <= SIGMAS * math.sqrt(2) * binomial_sd

    # RTT: 2 x delay within the spread of a mean of `received` RTTs, plus fixed overhead; no echo
    # faster than the link allows, none slower than its worst case
    rtt = {s: values[f'icmp_rtt_seconds{{stat="{s}"}}'] * 1000 for s in ("min", "avg", "max", "stddev")}
    mean_sd = expected.rtt_sd_ms / math.sqrt(received)
    assert abs(rtt["avg"] - expected.rtt_ms) <= SIGMAS * mean_sd + OVERHEAD_MS, rtt
    both_sd = expected.rtt_sd_ms * math.sqrt(1 / received + 1 / len(measured.received))
    assert abs(rtt["avg"] - measured.avg_ms) <= SIGMAS * both_sd + OVERHEAD_MS, (rtt, measured.avg_ms)
    assert 2 * (DELAY_MS - JITTER_MS) <= rtt["min"] and rtt["max"] <= 2 * (DELAY_MS + JITTER_MS) + STALL_MS
    # the sample sd of a triangular RTT (kurtosis 2.4) has relative sd sqrt((2.4 - 1) / (4 n))
    assert abs(rtt["stddev"] / expected.rtt_sd_ms - 1) <= SIGMAS * math.sqrt(1.4 / (4 * received)), rtt

    # jitter (RFC 3550's per-packet delay variation, unsmoothed): against the simulated estimator
    jitter = values["icmp_jitter_seconds"] * 1000
    assert abs(jitter - expected.jitter_ms) <= SIGMAS * expected.jitter_sd_ms, (jitter, expected)
    assert abs(jitter - measured.jitter_ms) <= SIGMAS * math.sqrt(2) * expected.jitter_sd_ms, (jitter, measured)


def test_no_impairment_means_no_loss_and_sub_millisecond_rtt(workdir: Path) -> None:
    """The control: the same path without impairment, over IPv4 and IPv6."""
    require_root_netns()
    with impaired_link(seed=3) as link:
        assert link.far_ip6
        config = _write_config(workdir, [{"name": "clean", "targets": [
            _icmp_target(link.far_ip, "v4", 20), _icmp_target(link.far_ip6, "v6", 20)]}])
        proc = link.run_near([*_agent().split(), "probe-once", "--json", "-c", str(config)], capture_output=True,
                             text=True, timeout=60)
    for check in json.loads(proc.stdout)["checks"]:
        assert check["ok"], check["reason"]
        assert check["values"]["icmp_loss_ratio"] == 0.0
        assert check["values"]['icmp_rtt_seconds{stat="avg"}'] < 0.002


# ---------------------------------------------------------------- link binding over two real paths


BACKUP_DELAY_MS = 40.0
TARGET = "198.19.250.1"  # on the far side's loopback, reachable over both links


@pytest.fixture
def two_paths() -> Iterator[tuple[ImpairedLink, dict[str, str]]]:
    """One far site reachable two ways from the near namespace:

    * fiber: a veth pair, no delay; the main routing table sends TARGET this way;
    * lte: the emulated link, 40 ms each way; used only by a probe bound to it, by interface
      (SO_BINDTODEVICE) or by source address (with the policy-routing rule a multi-homed site
      box needs anyway: ``ip rule add from <lte address> lookup 100``).
    """
    require_root_netns()
    with impaired_link(delay_ms=BACKUP_DELAY_MS, seed=5, ipv6=False) as link:
        subnet = link.near_ip.split(".")[2]
        fiber_near, fiber_far = f"198.19.{subnet}.1", f"198.19.{subnet}.2"
        ip("-n", link.ns_near, "link", "add", "fiber0", "type", "veth", "peer", "name", "fiber1",
           "netns", link.ns_far)
        ip("-n", link.ns_near, "addr", "add", f"{fiber_near}/30", "dev", "fiber0")
        ip("-n", link.ns_far, "addr", "add", f"{fiber_far}/30", "dev", "fiber1")
        ip("-n", link.ns_near, "link", "set", "fiber0", "up")
        ip("-n", link.ns_far, "link", "set", "fiber1", "up")
        ip("-n", link.ns_far, "addr", "add", f"{TARGET}/32", "dev", "lo")
        ip("-n", link.ns_near, "route", "add", f"{TARGET}/32", "via", fiber_far, "dev", "fiber0", "metric", "100")
        ip("-n", link.ns_near, "route", "add", f"{TARGET}/32", "via", link.far_ip, "dev", "emu0", "metric", "200")
        ip("-n", link.ns_near, "route", "add", f"{TARGET}/32", "via", link.far_ip, "dev", "emu0", "table", "100")
        ip("-n", link.ns_near, "rule", "add", "from", link.near_ip, "lookup", "100")
        yield link, {"fiber_near": fiber_near}


def test_a_bound_probe_measures_its_own_link(two_paths: tuple[ImpairedLink, dict[str, str]],
                                             workdir: Path) -> None:
    """ICMP and TCP, bound by interface and by source address, each see their own link's delay."""
    link, _ = two_paths
    server = link.popen_far([sys.executable, "-c", (
        "import socket, time\n"
        f"s = socket.create_server(('{TARGET}', 7443))\n"
        "time.sleep(120)\n")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: ":7443" in link.run_far(["ss", "-ltnH"], capture_output=True, text=True).stdout,
                   timeout=20, interval=0.05, what="the far TCP listener")
        targets = [_icmp_target(TARGET, "dc", 10), {"probe": "tcp", "name": "dc", "host": TARGET, "port": 7443}]
        config = _write_config(workdir, [
            {"name": "fiber", "role": "primary", "targets": targets},
            {"name": "lte-by-interface", "role": "backup", "interface": "emu0", "targets": targets},
            {"name": "lte-by-source", "role": "backup", "source_address": link.near_ip, "targets": targets},
        ])
        proc = subprocess.run(netns_exec_argv(link.ns_near, [*_agent().split(), "probe-once", "--json", "-c",
                                                             str(config)]),
                              capture_output=True, text=True, timeout=60)
    finally:
        server.kill()
        server.wait(10)
    checks = {c["check"]: c for c in json.loads(proc.stdout)["checks"]}
    assert all(c["ok"] for c in checks.values()), {k: c["reason"] for k, c in checks.items()}
    round_trip = 2 * BACKUP_DELAY_MS / 1000
    for name in ("fiber", "lte-by-interface", "lte-by-source"):
        icmp = checks[f"link/{name}/icmp/dc"]["values"]
        tcp = checks[f"link/{name}/tcp/dc"]["values"]["tcp_connect_seconds"]
        rtts = [icmp[f'icmp_rtt_seconds{{stat="{s}"}}'] for s in ("min", "max")]
        # the two paths differ by 80 ms; allowances of tens of ms absorb a loaded machine's scheduling
        if name == "fiber":  # the veth: no delay at all
            assert max(rtts) < round_trip / 4 and tcp < round_trip / 4, (name, rtts, tcp)
        else:  # the emulated link: 80 ms round trip, no jitter imposed; never less
            assert round_trip <= min(rtts) and max(rtts) <= round_trip + STALL_MS / 1000, (name, rtts)
            assert round_trip <= tcp <= round_trip * 1.25, (name, tcp)  # SYN out, SYN-ACK back


